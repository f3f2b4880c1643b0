"""eventbus.testing.TestBus: what users need to test their own subscribers."""

from __future__ import annotations

import threading
from datetime import timedelta

from eventbus import Event, Priority, declare_topic, publish_event, publish_many, subscribe
from eventbus.control import JobState
from eventbus.delivery import delivery_id
from eventbus.subscriber import get_subscription, pattern_matches
from eventbus.testing import TestBus

declare_topic("library.book_borrowed")
declare_topic("library.book_returned")
declare_topic("library.book_lost")
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


found = threading.Event()


@subscribe("library.book_lost", name="library.search", max_retries=1)
def search(event: Event) -> None:
    if not found.is_set():
        raise LookupError(f"{event.payload['title']} is nowhere")
    seen.append(("search", event.payload["title"]))


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


def test_the_control_plane_lists_jobs_reads_a_dead_letter_and_requeues_it():
    seen.clear()
    found.clear()
    with TestBus() as bus:
        # Given a subscriber that fails both its attempts
        event = publish_event("library.book_lost", {"title": "Emma"})
        bus.join()
        job_id = delivery_id(event.id, "library.search")
        # Then its job is listed dead, and its dead letter says why
        letter = bus.control.get_dead_letter(job_id)
        assert (letter.subscription, letter.error, letter.attempts) == (
            "library.search",
            "LookupError: Emma is nowhere",
            2,
        )
        assert [job.id for job in bus.control.list_jobs(letter.queue, JobState.DEAD).items] == [job_id]
        assert bus.control.stats().queue(letter.queue).dead == 1
        # When the subscriber is fixed and the dead letter requeued
        found.set()
        assert bus.control.requeue_dead_letters([job_id]).requeued == [job_id]
        bus.join()
        # Then it ran once more and completed, and no dead letter is left
        job = bus.control.get_job(job_id)
        assert (job.state, job.requeues, job.attempts) == (JobState.COMPLETED, 1, 1)
        # (only this test's topic: another test module's schedule may tick in this process too)
        assert [d for d in bus.control.dead_letters().items if d.topic == "library.book_lost"] == []
    assert ("search", "Emma") in seen
