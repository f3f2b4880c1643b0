"""eventbus.testing.TestBus: what users need to test their own subscribers."""

from __future__ import annotations

from datetime import timedelta

from eventbus import Event, Priority, declare_topic, publish_event, publish_many, subscribe
from eventbus.subscriber import get_subscription, pattern_matches
from eventbus.testing import TestBus

declare_topic("library.book_borrowed")
declare_topic("library.book_returned")
seen: list[tuple[str, str]] = []


@subscribe("library.book_borrowed", name="library.notify_owner", priority=Priority.HIGH)
def notify_owner(event: Event) -> None:
    seen.append(("notify_owner", event.payload["title"]))


@subscribe("library.*", name="library.audit", queue="audit")
def audit(event: Event) -> None:
    seen.append(("audit", event.topic))


@subscribe("library.book_returned", name="library.broken", max_retries=2)
def broken(event: Event) -> None:
    raise ValueError("shelf is full")


def test_join_drains_fanout_and_deliveries_and_records_published_events():
    seen.clear()
    with TestBus() as bus:
        event = publish_event("library.book_borrowed", {"title": "Dune"})
        bus.join()
    assert bus.published == [event]
    assert sorted(seen) == [("audit", "library.book_borrowed"), ("notify_owner", "Dune")]


def test_a_failing_subscriber_ends_in_dead_letters_after_its_retries():
    seen.clear()
    with TestBus() as bus:
        event = publish_event("library.book_returned", {"title": "Emma"})
        bus.join()
    assert [(d.subscription, d.event.id, d.error) for d in bus.dead_letters] == [
        ("library.broken", event.id, "ValueError: shelf is full")
    ]
    assert seen == [("audit", "library.book_returned")]


def test_same_event_id_twice_publishes_once_and_delays_are_honoured():
    seen.clear()
    with TestBus() as bus:
        first = publish_event("library.book_borrowed", {"title": "Ulysses"}, event_id="loan-1")
        again = publish_event("library.book_borrowed", {"title": "Ulysses"}, event_id="loan-1")
        publish_event("library.book_borrowed", {"title": "Later"}, delay=timedelta(milliseconds=50))
        publish_many([("library.book_borrowed", {"title": "Bulk"})])
        bus.join()
    assert first.id == again.id == "loan-1"
    assert [e.id for e in bus.published].count("loan-1") == 1  # the repeat published nothing
    assert sorted(t for who, t in seen if who == "notify_owner") == ["Bulk", "Later", "Ulysses"]


def test_wildcard_patterns():
    assert pattern_matches("model.*", "model.rank_changed")
    assert pattern_matches("model.*", "model.rank.changed")
    assert not pattern_matches("model.*", "models.rank_changed")
    assert not pattern_matches("model.*", "model")
    assert pattern_matches("*", "anything.at_all")
    assert get_subscription("library.audit") is not None
