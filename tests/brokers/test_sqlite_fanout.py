"""Fan-out inside the SQLite events consumer, and group-committed start marks and acks, on real files and workers."""

from __future__ import annotations

from collections import Counter

import pytest

import tests.apps.sqlite_recording as rec
from eventbus import publish_event, publish_many
from eventbus.brokers.sqlite.broker import SQLiteBroker
from eventbus.delivery import EVENTS_QUEUE, FANOUT_ACTOR, build_message
from tests.conftest import wait_for

pytestmark = [pytest.mark.slow]

APP = "tests.apps.sqlite_events"


def calls(bus: SQLiteBroker) -> Counter[str]:
    bus.store.ensure_schema("test_calls", rec.SCHEMA)
    return Counter(
        f"{sub}|{event_id}" for sub, event_id in bus.store.execute("SELECT subscription, event_id FROM test_calls")
    )


def test_an_event_message_no_fanout_can_read_is_dead_lettered_and_its_batch_goes_on(sqlite_bus, start_sqlite_worker):
    # Given, in one batch, an event message without a topic, a good event and another actor's message
    sqlite_bus.enqueue(build_message(EVENTS_QUEUE, FANOUT_ACTOR, {"event": {"id": "no-topic"}}, {}, "no-topic"))
    event = publish_event("sq.happened", {"n": 1})
    sqlite_bus.enqueue(build_message(EVENTS_QUEUE, "sq.on_events", {"n": 7}, {}, "plain-7"))
    # When a worker fans the batch out
    worker = start_sqlite_worker(APP)
    wait_for(lambda: sum(calls(sqlite_bus).values()) >= 3, 30, worker)
    # Then the good event reached both subscribers and the plain actor ran, each once
    assert calls(sqlite_bus) == {f"sq_first|{event.id}": 1, f"sq_second|{event.id}": 1, "on_events|7": 1}
    # and the unreadable one is a dead letter of the events queue naming what is missing
    [dead] = sqlite_bus.dead_letters(EVENTS_QUEUE)
    assert dead.message_id == "no-topic" and "KeyError: 'topic'" in dead.options["error"]
    assert dead.options["error_type"] == "KeyError" and "Traceback" in dead.options["traceback"]
    assert sqlite_bus.queue_size(EVENTS_QUEUE) == 0
    # And the fan-out ran in the consumer: no start mark, no delivery of the dead one
    assert "no-topic" not in str(calls(sqlite_bus))


def test_events_held_by_a_fan_out_that_crashed_come_back_when_the_lease_ends_and_fan_out_once(sqlite_bus, sqlite_url):
    # Given a process that fetched a batch of events and died before its fan-out transaction
    events = publish_many([("sq.happened", {"n": i}) for i in range(5)])
    crashed = SQLiteBroker.from_url(sqlite_url)
    held = crashed.consume(EVENTS_QUEUE, prefetch=10, timeout=10)
    held._fetch()  # type: ignore[attr-defined]  # leased to the crashed process, as in its last moment
    assert len(held.cache) == 5  # type: ignore[attr-defined]
    # When a live worker's events consumer polls the queue
    live = sqlite_bus.consume(EVENTS_QUEUE, prefetch=10, timeout=100)
    # Then nothing is fanned out while the crashed process's lease (2 s) holds
    assert next(live) is None and sqlite_bus.queue_size("default") == 0
    # and once it ends, each event is fanned out into one delivery per subscription and removed
    wait_for(lambda: next(live) is None and sqlite_bus.queue_size(EVENTS_QUEUE) == 0, 10)
    assert sqlite_bus.queue_size("default") == 5 and sqlite_bus.queue_size("sq_second") == 5
    # And running the fan-out of an event again (a copy of its message) enqueues nothing new
    sqlite_bus.enqueue(build_message(EVENTS_QUEUE, FANOUT_ACTOR, {"event": events[0].to_dict()}, {}, events[0].id))
    wait_for(lambda: next(live) is None and sqlite_bus.queue_size(EVENTS_QUEUE) == 0, 10)
    assert sqlite_bus.queue_size("default") == 5 and sqlite_bus.queue_size("sq_second") == 5
    live.close()
    crashed.close()
