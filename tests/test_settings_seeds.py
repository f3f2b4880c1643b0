"""The names the seed projects already have in their .env files are read too; the eventbus names win."""

from __future__ import annotations

import pytest

from eventbus.errors import ConfigError
from eventbus.settings import Settings


@pytest.mark.parametrize(
    ("field", "primary", "alias"),
    [("keep_completed", "EVENTBUS_KEEP_COMPLETED", "QUEUE_REMOVE_ON_COMPLETE"),
     ("keep_failed", "EVENTBUS_KEEP_FAILED", "QUEUE_REMOVE_ON_FAIL")],
)  # fmt: skip
def test_the_seed_names_for_retention_count_and_the_eventbus_name_wins(field, primary, alias):
    assert getattr(Settings.from_env({alias: "100"}), field) == 100
    assert getattr(Settings.from_env({alias: "100", primary: "20"}), field) == 20
    assert getattr(Settings.from_env({alias: "", primary: "20"}), field) == 20
    assert getattr(Settings.from_env({alias: "100", primary: ""}), field) == 100


def test_a_bad_seed_retention_count_names_the_seed_variable():
    with pytest.raises(ConfigError, match="QUEUE_REMOVE_ON_FAIL='all' is not a number"):
        Settings.from_env({"QUEUE_REMOVE_ON_FAIL": "all"})
