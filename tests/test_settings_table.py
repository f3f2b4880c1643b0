"""The settings table: every Settings field documented, every variable in it read, the page generated from it."""

from __future__ import annotations

import dataclasses
import importlib.util
import re

import pytest

from eventbus import queues
from eventbus.settings import Settings
from eventbus.settings_table import QUEUE_VARIABLES, SETTINGS, type_of
from tests.conftest import ROOT

FIELDS = [f.name for f in dataclasses.fields(Settings)]
PAGE = ROOT / "docs" / "configuration.md"

# A valid value for each variable that is not simply "a value of the field's type".
SAMPLES = {
    "EVENTBUS_BROKER_URL": "memory://",
    "REDIS_URL": "redis://example:6390/2",
    "REDIS_PORT": "6390",
    "REDIS_DB": "3",
    "EVENTBUS_SQLITE_PATH": "elsewhere.db",
    "EVENTBUS_WEBHOOK_SECRET_SHOP": "s3cret",
    "EXPORTS_QUEUE_CONCURRENCY": "2",
    "EXPORTS_QUEUE_RATE_LIMIT": "5/s",
    "EXPORTS_QUEUE_ATTEMPTS": "4",
    "EXPORTS_QUEUE_RETRY_DELAY": "250",
}


def load_generator():
    spec = importlib.util.spec_from_file_location("config_docs", ROOT / "scripts" / "config_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sample(name: str, variable: str) -> str:
    if variable in SAMPLES:
        return SAMPLES[variable]
    kind, default = type_of(name), getattr(Settings(), name)
    if kind == "bool":
        return "0" if default else "1"
    return {"int": "7", "float": "7.5", "bool | None": "1", "tuple[str, ...]": "app.one,app.two"}.get(kind, "sample")


def variables() -> list[tuple[str, str]]:
    """(field, variable) for every variable in the table, patterns expanded to a concrete name."""
    found = []
    for name, doc in SETTINGS.items():
        for variable in doc.env:
            if variable == "<NAME>_QUEUE_*":
                found += [(name, f"EXPORTS_QUEUE_{suffix}") for suffix in QUEUE_VARIABLES]
            else:
                found.append((name, variable.replace("<SOURCE>", "SHOP")))
    return found


def test_every_settings_field_has_an_entry_and_nothing_else_does():
    assert sorted(SETTINGS) == sorted(FIELDS), "add the new Settings field to eventbus/settings_table.py"


def test_every_settings_field_appears_in_docs_configuration():
    page = PAGE.read_text()
    missing = [name for name in FIELDS if f"`{name}`" not in page]
    assert missing == [], f"{missing} missing from docs/configuration.md; run scripts/gen_config_docs"


def test_docs_configuration_is_what_the_generator_writes():
    expected = load_generator().render()
    assert PAGE.read_text() == expected, "docs/configuration.md is stale; run scripts/gen_config_docs"


def test_the_generator_check_mode_reports_a_stale_page(tmp_path, capsys):
    generator = load_generator()
    generator.PAGE = tmp_path / "configuration.md"
    generator.PAGE.write_text("# Configuration\n\nhand-written\n")
    assert generator.main(["--check"]) == 1
    assert "run scripts/gen_config_docs" in capsys.readouterr().err
    assert generator.main([]) == 0 and generator.main(["--check"]) == 0


@pytest.mark.parametrize(("name", "variable"), variables(), ids=lambda v: v)
def test_every_variable_in_the_table_is_read_by_from_env(name, variable):
    # Given only this variable set, to a valid value
    env = {variable: sample(name, variable)}
    # Then the field it documents differs from the default (a typo in the table would leave it alone)
    assert getattr(Settings.from_env(env), name) != getattr(Settings.from_env({}), name), f"{variable} -> {name}"


def test_the_table_names_every_per_queue_variable_that_queues_reads():
    suffixes = re.search(r"\((CONCURRENCY[A-Z_|]*)\)", queues._ENV.pattern)
    assert suffixes is not None
    assert sorted(suffixes.group(1).split("|")) == sorted(QUEUE_VARIABLES)
