"""End to end on real Redis with real worker processes (issue 2, acceptance 1-4)."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest

import tests.apps.recording  # noqa: F401  declares the test topics in this (publisher) process
from eventbus import publish_event, publish_many
from eventbus.delivery import EVENTS_QUEUE, FANOUT_ACTOR, build_message
from tests.conftest import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = "tests.apps.recording"


def calls(redis_client: Any, ns: str) -> Counter[str]:
    raw = redis_client.hgetall(f"{ns}:test:calls")
    return Counter({k.decode(): int(v) for k, v in raw.items()})


def test_a_thousand_events_reach_each_of_three_subscribers_exactly_once(bus, start_worker, redis_client, namespace):
    # Given a worker process with three subscribers of test.happened
    worker = start_worker(APP)
    # When another process publishes 1,000 events
    events = [publish_event("test.happened", {"n": i}) for i in range(1000)]
    # Then there are exactly 3,000 subscriber calls, one per (event, subscriber)
    wait_for(lambda: sum(calls(redis_client, namespace).values()) >= 3000, 120, worker)
    seen = calls(redis_client, namespace)
    expected = {f"{name}|{e.id}" for e in events for name in ("first", "second", "third")}
    assert set(seen) == expected
    assert set(seen.values()) == {1}


def test_a_failing_subscriber_is_retried_with_growing_delays_then_dead_lettered(
    bus, start_worker, redis_client, namespace
):
    worker = start_worker(APP)
    events = [publish_event("test.flaky", {"n": i}) for i in range(5)]
    dead_key = f"{namespace}:default.XQ"
    wait_for(lambda: redis_client.zcard(dead_key) >= 5, 60, worker)
    seen = calls(redis_client, namespace)
    for event in events:
        # max_retries=3 -> 4 attempts, with growing gaps between them
        assert seen[f"always_fails|{event.id}"] == 4
        times = [float(t) for t in redis_client.lrange(f"{namespace}:test:times:always_fails|{event.id}", 0, -1)]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps[0] >= 0.09 and gaps[-1] > gaps[0]
        # the other subscribers of the same event ran once each
        assert seen[f"fine|{event.id}"] == 1
        assert seen[f"third|{event.id}"] == 1
    # the dead letter carries the final attempt's details
    import dramatiq

    raw = redis_client.hvals(f"{namespace}:default.XQ.msgs")
    dead = [dramatiq.Message.decode(r) for r in raw]
    assert {m.options["subscription"] for m in dead} == {"always_fails"}
    assert all(m.options["retries"] == 4 and "always_fails broke" in m.options["traceback"] for m in dead)


def test_sigterm_mid_stream_loses_nothing(bus, start_worker, redis_client, namespace):
    # Given a worker busy on slow deliveries
    worker = start_worker(APP, threads=4)
    events = [publish_event("test.happened", {"n": i, "sleep_ms": 20}) for i in range(200)]
    wait_for(lambda: sum(calls(redis_client, namespace).values()) >= 60, 60, worker)
    # When it is stopped with SIGTERM in the middle of the stream
    assert worker.terminate() == 0
    done_at_stop = sum(calls(redis_client, namespace).values())
    assert done_at_stop < 600
    # Then a restarted worker runs every remaining delivery, none twice
    worker = start_worker(APP, threads=4)
    wait_for(lambda: sum(calls(redis_client, namespace).values()) >= 600, 120, worker)
    seen = calls(redis_client, namespace)
    assert set(seen) == {f"{n}|{e.id}" for e in events for n in ("first", "second", "third")}
    assert set(seen.values()) == {1}


def test_running_the_fanout_of_one_event_twice_gives_one_delivery_per_subscription(
    bus, start_worker, redis_client, namespace
):
    # Given an event whose fan-out message is delivered twice (as after a crash before its ack)
    event = publish_event("test.happened", {"n": 1})
    again = build_message(EVENTS_QUEUE, FANOUT_ACTOR, {"event": event.to_dict(), "priority": None}, {}, event.id)
    bus.enqueue(again)
    # When a worker runs both
    worker = start_worker(APP)
    wait_for(lambda: redis_client.llen(f"{namespace}:events") == 0, 30, worker)
    wait_for(lambda: sum(calls(redis_client, namespace).values()) >= 3, 30, worker)
    publish_many([("test.happened", {"n": 2})])  # a later event proves the queue kept moving
    wait_for(lambda: sum(calls(redis_client, namespace).values()) >= 6, 30, worker)
    # Then each subscription got one delivery of the first event
    seen = calls(redis_client, namespace)
    assert {k: v for k, v in seen.items() if k.endswith(event.id)} == {
        f"first|{event.id}": 1,
        f"second|{event.id}": 1,
        f"third|{event.id}": 1,
    }


def test_an_event_message_no_fanout_can_read_is_dead_lettered_and_its_batch_goes_on(
    bus, start_worker, redis_client, namespace
):
    # Given, in one batch, an event message without a topic, a good event and another actor's message
    broken = build_message(EVENTS_QUEUE, FANOUT_ACTOR, {"event": {"id": "no-topic"}}, {}, "no-topic")
    bus.enqueue(broken)
    event = publish_event("test.happened", {"n": 1})
    bus.enqueue(build_message(EVENTS_QUEUE, "test.on_events", {"n": 7}, {}, "plain-7"))
    # When a worker fans the batch out
    worker = start_worker(APP)
    wait_for(lambda: sum(calls(redis_client, namespace).values()) >= 4, 30, worker)
    # Then the good event reached its three subscribers and the plain actor ran, each once
    seen = calls(redis_client, namespace)
    assert seen == {f"first|{event.id}": 1, f"second|{event.id}": 1, f"third|{event.id}": 1, "on_events|7": 1}
    # and the unreadable one is a dead letter of the events queue naming what is missing
    import dramatiq

    wait_for(lambda: redis_client.zcard(f"{namespace}:events.XQ") == 1, 10, worker)
    dead = dramatiq.Message.decode(redis_client.hvals(f"{namespace}:events.XQ.msgs")[0])
    assert dead.message_id == "no-topic" and "KeyError: 'topic'" in dead.options["error"]
    assert redis_client.hlen(f"{namespace}:events.msgs") == 0


def test_the_same_event_id_twice_publishes_once(bus, redis_client, namespace):
    first = publish_event("test.happened", {"n": 1}, event_id="order-17")
    second = publish_event("test.happened", {"n": 1}, event_id="order-17")
    publish_event("test.happened", {"n": 2}, event_id="order-18")
    assert first.id == second.id == "order-17"
    assert redis_client.llen(f"{namespace}:events") == 2
    assert redis_client.hlen(f"{namespace}:events.msgs") == 2


def test_acks_and_start_marks_are_all_written_while_the_worker_idles(bus, start_worker, redis_client, namespace):
    # Given a worker whose acks and start marks are group-committed (eventbus.brokers.group_commit)
    worker = start_worker(APP)
    publish_many([("test.happened", {"n": i}) for i in range(300)])
    wait_for(lambda: sum(calls(redis_client, namespace).values()) >= 900, 120, worker)

    def unacked() -> int:
        keys = [
            *redis_client.scan_iter(f"{namespace}:__acks__.*"),
            *redis_client.scan_iter(f"{namespace}:__started__.*"),
        ]
        return sum(redis_client.scard(k) for k in keys)

    # Then, with no further job to carry them, the last acks and marks still reach Redis promptly
    wait_for(lambda: unacked() == 0, 5, worker)
    assert worker.terminate() == 0
    assert unacked() == 0
    assert set(calls(redis_client, namespace).values()) == {1}
