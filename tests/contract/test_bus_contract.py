"""One behaviour, every broker: fan-out, retries and dead letters, delays, priority, pause, once-only."""

from __future__ import annotations

import time
from datetime import timedelta

from eventbus import Priority, publish_event
from eventbus.deadletter import DeadReason
from eventbus.delivery import EVENTS_QUEUE, FANOUT_ACTOR, build_message, delivery_message
from eventbus.event import Event
from eventbus.subscriber import get_subscription
from tests.apps import contract as app
from tests.conftest import wait_for


def test_an_event_fans_out_to_every_subscription_once(contract_bus):
    # Given three subscriptions of contract.happened, on two queues
    contract_bus.start()
    # When 20 events are published
    events = [publish_event("contract.happened", {"n": i}) for i in range(20)]
    # Then each subscription ran once per event
    wait_for(lambda: sum(app.counts().values()) >= 60, 60)
    time.sleep(0.3)  # nothing more arrives
    expected = {f"{s}|{e.id}" for e in events for s in ("c_first", "c_second", "c_third")}
    assert app.counts() == dict.fromkeys(expected, 1)


def test_a_failing_subscriber_is_retried_then_dead_lettered_with_its_final_attempt(contract_bus):
    # Given a subscriber that always fails, with max_retries=2, next to one that works
    contract_bus.start()
    # When an event reaches both
    event = publish_event("contract.flaky", {"n": 1})
    # Then the failing one ran 3 times and its dead letter carries the final attempt's details
    wait_for(lambda: len(contract_bus.dead_letters("c_flaky")) == 1, 60)
    assert app.counts()[f"c_fails|{event.id}"] == 3
    # (c_third is on another queue: nothing orders its one run before c_fails's last)
    wait_for(lambda: app.counts()[f"c_third|{event.id}"] >= 1, 30)
    assert app.counts()[f"c_third|{event.id}"] == 1
    [dead] = contract_bus.dead_letters("c_flaky")
    assert dead.options["subscription"] == "c_fails" and dead.options["event_id"] == event.id
    assert dead.options["retries"] == 3
    assert f"c_fails broke on {event.id}" in dead.options["traceback"]
    assert dead.options["error"] == f"RuntimeError: c_fails broke on {event.id}"
    assert dead.options["error_type"] == "RuntimeError" and dead.options["dead_at"] > 0
    # And it says why it is dead and how many times it ran, on every backend
    assert (dead.options["reason"], dead.options["attempts"]) == (DeadReason.FAILED, 3)


def test_a_delayed_event_runs_once_it_is_due_and_not_before(contract_bus):
    contract_bus.start()
    # When an event is published with a 1 s delay
    published_at = time.time()
    event = publish_event("contract.happened", {"n": 1}, delay=timedelta(seconds=1))
    # Then nothing runs in the first half second
    time.sleep(0.5)
    assert app.counts() == {}
    # And every subscription runs once it is due
    wait_for(lambda: sum(app.counts().values()) >= 3, 30)
    assert all(c.at >= published_at + 1.0 for c in app.CALLS)
    assert app.counts()[f"c_first|{event.id}"] == 1


def test_higher_priority_overtakes_a_backlog(contract_bus):
    # Given a backlog of deliveries of mixed priority enqueued while no worker runs
    sub = get_subscription("c_ordered")
    assert sub is not None
    levels = [Priority.LOW] * 10 + [Priority.NORMAL] * 5 + [Priority.HIGH] * 3 + [Priority.CRITICAL] * 2
    levels = levels[::2] + levels[1::2]  # interleave the levels
    messages = []
    for i, level in enumerate(levels):
        event = Event(topic="contract.ordered", payload={"n": i, "level": level.value}, id=f"ordered-{i}")
        messages.append(delivery_message(event.to_dict(), sub, level.value, contract_bus.settings))
    contract_bus.broker.enqueue_many(messages)
    # When one worker thread drains it
    contract_bus.start(threads=1)
    wait_for(lambda: len(app.calls_of("c_ordered")) == len(levels), 60)
    # Then it ran critical, high, normal, low, first come first served within a level
    ran = [(c.payload["level"], c.payload["n"]) for c in app.calls_of("c_ordered")]
    assert ran == sorted(ran, key=lambda r: (Priority(r[0]).rank, r[1]))


def test_a_paused_queue_is_not_fetched_and_resumes_without_loss(contract_bus):
    # Given queue c_second paused while the worker runs
    contract_bus.pause("c_second")
    contract_bus.start()
    # When events are published
    events = [publish_event("contract.happened", {"n": i}) for i in range(10)]
    # Then the other subscriptions run, c_second does not
    wait_for(lambda: len(app.calls_of("c_first")) == 10 and len(app.calls_of("c_third")) == 10, 60)
    time.sleep(0.5)
    assert app.calls_of("c_second") == []
    # And after resume every delivery of c_second runs once
    contract_bus.resume("c_second")
    wait_for(lambda: len(app.calls_of("c_second")) == 10, 60)
    time.sleep(0.2)
    assert sorted(c.event_id for c in app.calls_of("c_second")) == sorted(e.id for e in events)


def test_publishing_the_same_event_id_twice_runs_it_once(contract_bus):
    contract_bus.start()
    publish_event("contract.happened", {"n": 1}, event_id="order-42")
    publish_event("contract.happened", {"n": 1}, event_id="order-42")
    publish_event("contract.happened", {"n": 2}, event_id="order-43")  # a later event proves the bus moved on
    wait_for(lambda: sum(app.counts().values()) >= 6, 30)
    time.sleep(0.3)
    assert app.counts() == {f"{s}|{e}": 1 for s in ("c_first", "c_second", "c_third") for e in ("order-42", "order-43")}


def test_running_a_fan_out_twice_gives_one_delivery_per_subscription(contract_bus):
    # Given an event whose fan-out message is enqueued a second time (as after a crash before its ack)
    event = publish_event("contract.happened", {"n": 1})
    again = build_message(EVENTS_QUEUE, FANOUT_ACTOR, {"event": event.to_dict(), "priority": None}, {}, event.id)
    contract_bus.broker.enqueue(again)
    # When a worker runs both fan-outs
    contract_bus.start()
    wait_for(lambda: sum(app.counts().values()) >= 3, 30)
    publish_event("contract.happened", {"n": 2})
    wait_for(lambda: sum(app.counts().values()) >= 6, 30)
    time.sleep(0.3)
    # Then each subscription got one delivery of the first event
    assert {k: v for k, v in app.counts().items() if k.endswith(event.id)} == {
        f"c_first|{event.id}": 1,
        f"c_second|{event.id}": 1,
        f"c_third|{event.id}": 1,
    }
