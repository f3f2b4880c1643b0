"""The effective configuration's redaction, for every face that shows it (CLI, HTTP, control plane)."""

from __future__ import annotations

import pytest

from eventbus.settings import Settings
from eventbus.settings_report import Source, describe, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:secret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:pass@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://user:p@ss@host:6379/0", "redis://user:***@host:6379/0"),
        ("rediss://token@host:6380/0", "rediss://***@host:6380/0"),
        ("redis://host:6379/0?password=secret&db=1", "redis://host:6379/0?password=***&db=1"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("sqlite:///.eventbus/eventbus.db", "sqlite:///.eventbus/eventbus.db"),
        ("https://example.test/path@v2", "https://example.test/path@v2"),
        ("memory://", "memory://"),
    ],
)
def test_a_url_keeps_everything_but_its_credentials(url, shown):
    assert redact_url(url) == shown


def test_describe_hides_secrets_and_keeps_the_settings_untouched():
    env = {"SMTP_PASS": "pw", "EVENTBUS_WEBHOOK_SECRET_SHOP": "s", "EVENTBUS_BROKER_URL": "redis://:pw@h:1/0"}
    settings = Settings.from_env(env)
    rows = {row.name: row for row in describe(settings, env)}
    assert rows["smtp_pass"].value == "***"
    assert rows["webhook_secrets"].value == {"SHOP": "***"}
    assert rows["broker_url"].value == "redis://:***@h:1/0"
    assert rows["broker_url"].source is Source.ENVIRONMENT and rows["broker_url"].source_label == "environment"
    assert settings.smtp_pass == "pw"


def test_an_option_overrides_the_source():
    rows = {row.name: row for row in describe(Settings(), {}, options={"namespace": "--namespace"})}
    assert rows["namespace"].source_label == "option (--namespace)"
    assert rows["default_queue"].source_label == "default"
