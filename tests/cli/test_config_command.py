"""``eventbus config`` as a real subprocess: every setting with its value and source, secrets hidden."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from eventbus.settings import Settings
from tests.conftest import ROOT

SECRETS = {
    "SMTP_PASS": "smtp-s3cret",
    "EVENTBUS_ADMIN_TOKEN": "admin-s3cret",
    "NOTIFY_WEBHOOK_SECRET": "notify-s3cret",
    "EVENTBUS_WEBHOOK_SECRET_SHOP": "shop-s3cret",
    "EVENTBUS_WEBHOOK_SECRET_GIT_HUB": "github-s3cret",
    "REDIS_URL": "redis://:redis-s3cret@cache.internal:6379/0",
    "NOTIFY_WEBHOOK_URL": "https://hooks:url-s3cret@hooks.example/notify",
}


def eventbus_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``eventbus [args] config`` in an environment holding nothing but ``env`` (and what Python needs)."""
    clean = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "EVENTBUS_DEFAULT_SUBSCRIBERS": "0"}
    return subprocess.run(
        [sys.executable, "-m", "eventbus", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=60,
    )


def as_json(env: dict[str, str], *options: str) -> dict[str, dict]:
    done = eventbus_config(*options, "config", "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def rows(stdout: str) -> dict[str, tuple[str, str]]:
    """The text table as {variable: (value, source)}: columns are separated by two spaces or more."""
    lines = stdout.splitlines()
    assert lines[0].split() == ["SETTING", "VALUE", "SOURCE"]
    table = {}
    for line in lines[1:]:
        name, value, source = [cell for cell in line.split("  ") if cell.strip()]
        table[name.strip()] = (value.strip(), source.strip())
    return table


@pytest.mark.parametrize("output", ["text", "json"])
def test_no_secret_value_is_printed(output):
    # Given every kind of secret set in the environment
    # When the configuration is printed
    args = ["config", "--json"] if output == "json" else ["config"]
    done = eventbus_config(*args, env=SECRETS)
    # Then it succeeds and no secret shows, while URLs keep everything but their password
    assert done.returncode == 0, done.stderr
    assert "s3cret" not in done.stdout
    assert "redis://:***@cache.internal:6379/0" in done.stdout
    assert "https://hooks:***@hooks.example/notify" in done.stdout


def test_each_secret_is_shown_as_stars_and_webhook_sources_are_listed():
    config = as_json(SECRETS)
    for name in ("smtp_pass", "admin_token", "notify_webhook_secret"):
        assert config[name]["value"] == "***", name
        assert config[name]["source"] == "environment"
    assert config["webhook_secrets"]["value"] == {"GIT_HUB": "***", "SHOP": "***"}
    assert config["webhook_secrets"]["set_by"] == ["EVENTBUS_WEBHOOK_SECRET_GIT_HUB", "EVENTBUS_WEBHOOK_SECRET_SHOP"]
    # An unset secret is shown empty, not as stars
    assert as_json({})["smtp_pass"]["value"] == ""


@pytest.mark.parametrize(
    ("env", "shown", "source"),
    [
        (
            {"EVENTBUS_BROKER_URL": "redis://admin:hunter2@db.internal:6380/1"},
            "redis://admin:***@db.internal:6380/1",
            "environment",
        ),
        (
            {"REDIS_URL": "redis://:hunter2@db.internal:6379/0"},
            "redis://:***@db.internal:6379/0",
            "environment (REDIS_URL)",
        ),
        (
            {"REDIS_HOST": "db.internal", "REDIS_PASSWORD": "hunter2"},
            "redis://:***@db.internal:6379/0",
            "environment (REDIS_HOST, REDIS_PASSWORD)",
        ),
        (
            {"REDIS_URL": "redis://db.internal:6379/0?password=hunter2"},
            "redis://db.internal:6379/0?password=***",
            "environment (REDIS_URL)",
        ),
        (
            {"EVENTBUS_SQLITE_PATH": "/var/lib/app/bus.db"},
            "sqlite:////var/lib/app/bus.db",
            "environment (EVENTBUS_SQLITE_PATH)",
        ),
        ({}, "sqlite:///.eventbus/eventbus.db", "default"),
    ],
)
def test_the_broker_url_hides_its_password_and_names_the_variables_it_came_from(env, shown, source):
    done = eventbus_config("config", env=env)
    assert done.returncode == 0, done.stderr
    assert rows(done.stdout)["EVENTBUS_BROKER_URL"] == (shown, source)
    assert "hunter2" not in done.stdout


def test_the_source_column_says_default_environment_or_which_alias():
    # Given a primary variable, three aliases, a seed name, a queue variable and a command-line option
    env = {
        "EVENTBUS_PUBLISH_TIMEOUT_S": "5",
        "SMTP_PASSWORD": "x-secret-x",
        "FRONTEND_URL": "https://app.example",
        "QUEUE_REMOVE_ON_COMPLETE": "100",
        "EMAIL_QUEUE_RATE_LIMIT": "2/s",
    }
    done = eventbus_config("--namespace", "shop", "config", env=env)
    assert done.returncode == 0, done.stderr
    table = rows(done.stdout)
    # Then each row names its source
    assert table["EVENTBUS_PUBLISH_TIMEOUT_S"] == ("5", "environment")
    assert table["EVENTBUS_DEDUP_WINDOW_S"] == ("86400", "default")
    assert table["SMTP_PASS"] == ("***", "environment (SMTP_PASSWORD)")
    assert table["APP_URL"] == ("https://app.example", "environment (FRONTEND_URL)")
    assert table["EVENTBUS_KEEP_COMPLETED"] == ("100", "environment (QUEUE_REMOVE_ON_COMPLETE)")
    assert table["EMAIL_QUEUE_*"][1] == "environment (EMAIL_QUEUE_RATE_LIMIT)"
    assert "rate_limit=2/1s" in table["EMAIL_QUEUE_*"][0]
    assert table["XP_QUEUE_*"][1] == "default"
    assert table["EVENTBUS_NAMESPACE"] == ("shop", "option (--namespace)")
    assert table["max_backoff_ms"] == ("3600000", "default")  # no variable: its field name


def test_json_has_one_entry_per_setting_with_stable_keys():
    env = {"EVENTBUS_KEEP_COMPLETED": "20", "QUEUE_REMOVE_ON_COMPLETE": "100", "EXPORTS_QUEUE_CONCURRENCY": "2"}
    first = eventbus_config("config", "--json", env=env)
    config = json.loads(first.stdout)
    # One entry per Settings field, in field order, with queues expanded to one entry per queue
    fields = [f.name for f in dataclasses.fields(Settings)]
    queue_names = ["email", "exports", "notifications", "webhooks", "xp"]
    at = fields.index("queues")
    expected = fields[:at] + [f"queues.{q}" for q in queue_names] + fields[at + 1 :]
    assert list(config) == expected
    assert all(list(entry) == ["variable", "value", "source", "set_by"] for entry in config.values())
    # The eventbus name wins over the seed name, and the JSON says so
    assert config["keep_completed"] == {
        "variable": "EVENTBUS_KEEP_COMPLETED", "value": 20, "source": "environment", "set_by": ["EVENTBUS_KEEP_COMPLETED"]
    }  # fmt: skip
    assert config["queues.exports"]["value"] == {
        "concurrency": 2,
        "rate_limit": None,
        "attempts": 6,
        "retry_delay_ms": 1000,
    }
    assert config["queues.exports"]["variable"] == "EXPORTS_QUEUE_*"
    assert config["publish_timeout_s"] == {
        "variable": "EVENTBUS_PUBLISH_TIMEOUT_S", "value": 2.0, "source": "default", "set_by": []
    }  # fmt: skip
    # and the same environment prints the same bytes
    assert eventbus_config("config", "--json", env=env).stdout == first.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EVENTBUS_PUBLISH_TIMEOUT_S": "abc"}, "EVENTBUS_PUBLISH_TIMEOUT_S='abc' is not a number"),
        ({"QUEUE_REMOVE_ON_FAIL": "-3"}, "QUEUE_REMOVE_ON_FAIL='-3' is negative"),
        ({"EMAIL_QUEUE_RATE_LIMIT": "fast"}, "EMAIL_QUEUE_RATE_LIMIT='fast' is not a rate"),
        ({"SMTP_TLS": "maybe"}, "SMTP_TLS='maybe' is not a flag"),
    ],
)
def test_a_bad_value_exits_2_with_one_line_naming_the_variable(env, message):
    done = eventbus_config("config", env=env)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
