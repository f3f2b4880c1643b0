"""Priority values: the four names, ``urgent``, and the numbers 1-20 other queue systems use."""

from __future__ import annotations

import pytest

from eventbus import Event, Priority, declare_topic, publish_event, subscribe
from eventbus.control import JobState
from eventbus.errors import ConfigError
from eventbus.testing import TestBus

declare_topic("ranking.recomputed")


@subscribe("ranking.recomputed", name="ranking.notify", queue="ranking")
def notify(event: Event) -> None:
    pass


@pytest.mark.parametrize(
    ("value", "level"),
    [
        (1, Priority.CRITICAL),
        ("1", Priority.CRITICAL),
        (2, Priority.HIGH),
        (4, Priority.HIGH),
        (" 3 ", Priority.HIGH),
        (5, Priority.NORMAL),
        ("10", Priority.NORMAL),
        (11, Priority.LOW),
        (20, Priority.LOW),
        ("urgent", Priority.CRITICAL),
        ("URGENT", Priority.CRITICAL),
        ("Urgent", Priority.CRITICAL),
        ("High", Priority.HIGH),
        (Priority.LOW, Priority.LOW),
    ],
)
def test_numbers_and_urgent_map_to_the_four_levels(value, level):
    assert Priority.parse(value, Priority.NORMAL) is level


@pytest.mark.parametrize("value", [0, "0", 21, "21", -1, "-1", True, False, 3.0, "3.5", "", "soon", "²"])
def test_anything_else_raises_naming_the_accepted_forms(value):
    with pytest.raises(ConfigError) as caught:
        Priority.parse(value, Priority.NORMAL)  # type: ignore[arg-type]
    message = str(caught.value)
    assert repr(value) in message
    assert "critical, high, normal, low" in message and "urgent" in message and "1-20" in message


@pytest.mark.parametrize(("value", "level"), [(3, "high"), ("urgent", "critical"), ("15", "low")])
def test_a_publish_with_a_number_or_urgent_delivers_at_that_level(value, level):
    # Given an in-memory bus with one subscriber on queue "ranking"
    with TestBus() as bus:
        # When an event is published with priority=3 / "urgent" / "15"
        publish_event("ranking.recomputed", {}, priority=value)
        bus.join()
        # Then its delivery ran at the mapped level
        jobs = bus.control.list_jobs("ranking", JobState.COMPLETED).items
    assert [job.priority for job in jobs] == [level]


def test_a_bad_priority_fails_the_publish_and_nothing_is_written():
    with TestBus() as bus:
        with pytest.raises(ConfigError, match="unknown priority 0"):
            publish_event("ranking.recomputed", {}, priority=0)
        bus.join()
    assert bus.published == []
