"""Scheduled work and queue limits, the same on every broker: list and cancel, rate limits, caps."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import timedelta

import dramatiq
from dramatiq.middleware import SkipMessage

from eventbus import cancel, publish_event, publish_many, scheduled
from eventbus.delivery import EVENTS_QUEUE
from tests.apps import contract as app
from tests.conftest import wait_for


def test_scheduled_events_are_listed_soonest_first_and_a_cancelled_one_never_runs(contract_bus):
    contract_bus.start()
    # Given two events due in 1 s and one due in an hour
    keep = publish_event("contract.happened", {"n": "keep"}, delay=timedelta(seconds=1))
    drop = publish_event("contract.happened", {"n": "drop"}, delay=timedelta(seconds=1))
    later = publish_event("contract.happened", {"n": "later"}, delay=timedelta(hours=1))
    # When they are listed
    page = scheduled(limit=10)
    # Then all three are there, soonest first, with what they will run
    assert page.total == 3 and page.next_cursor is None
    assert {i.message_id for i in page.items[:2]} == {keep.id, drop.id}
    assert page.items[2].message_id == later.id
    assert all(i.queue == EVENTS_QUEUE and i.topic == "contract.happened" for i in page.items)
    assert page.items[0].due_at.timestamp() <= page.items[2].due_at.timestamp() - 3000
    # When one of the soon ones is cancelled, twice
    assert cancel(drop.id) is True
    assert cancel(drop.id) is False
    # Then the other runs once due, the cancelled one never does, and only the later one stays scheduled
    wait_for(lambda: len(app.calls_of("c_third")) >= 1, 30)
    time.sleep(1.0)
    assert {c.event_id for c in app.CALLS} == {keep.id}
    assert [i.message_id for i in scheduled().items] == [later.id]
    assert cancel(keep.id) is False  # already ran


def test_paging_through_scheduled_events(contract_bus):
    events = publish_many([("contract.happened", {"n": i}) for i in range(7)], delay=timedelta(hours=1))
    first = scheduled(limit=5)
    second = scheduled(limit=5, cursor=first.next_cursor or 0)
    assert first.total == 7 and first.next_cursor == 5 and second.next_cursor is None
    assert {i.message_id for i in first.items + second.items} == {e.id for e in events}


def test_the_cli_lists_and_cancels_scheduled_events(contract_bus, capsys, monkeypatch):
    from eventbus.cli import main

    first, second = publish_many(
        [("contract.happened", {"n": 1}), ("contract.happened", {"n": 2})], delay=timedelta(hours=1)
    )
    monkeypatch.setenv("EVENTBUS_BROKER_URL", contract_bus.settings.broker_url)
    monkeypatch.setenv("EVENTBUS_NAMESPACE", contract_bus.settings.namespace)
    assert main(["cancel", first.id]) == 0
    assert main(["cancel", first.id]) == 1
    assert main(["scheduled", "--json"]) == 0
    out = capsys.readouterr().out
    listed = json.loads(out[out.index("{") :])
    assert [item["id"] for item in listed["items"]] == [second.id]


def test_a_rate_limited_queue_spreads_its_jobs_over_time_without_failed_attempts(contract_bus):
    # Given queue c_limited limited to 10 jobs a second, and a worker of 8 threads
    contract_bus.start(threads=8)
    # When 20 jobs are queued at once
    events = publish_many([("contract.limited", {"n": i}) for i in range(20)])
    wait_for(lambda: len(app.calls_of("c_limited")) >= 20, 60)
    # Then they started about 100 ms apart (19 gaps: at least 1.7 s from first to last)
    starts = sorted(c.at for c in app.calls_of("c_limited"))
    assert starts[-1] - starts[0] >= 1.7, starts[-1] - starts[0]
    # and no second held a burst (starts a loaded machine delayed can bunch up a little, not 20 at once)
    assert max(sum(1 for s in starts if a <= s < a + 1.0) for a in starts) <= 13
    # And each ran once, on its first attempt: being limited is not a failure
    assert sorted(c.event_id for c in app.calls_of("c_limited")) == sorted(e.id for e in events)
    assert app.RETRIES == [0] * 20
    assert contract_bus.dead_letters("c_limited") == []


def test_a_concurrency_cap_holds_with_more_threads_than_slots(contract_bus):
    # Given queue c_capped capped at 2 running jobs, and a worker of 8 threads
    contract_bus.start(threads=8)
    # When 12 jobs of 150 ms are queued at once
    events = publish_many([("contract.capped", {"n": i}) for i in range(12)])
    wait_for(lambda: len(app.calls_of("c_capped")) >= 12, 60)
    time.sleep(0.3)
    # Then never more than 2 ran at once (and 2 did), each ran once, none failed
    assert app.RUNNING["max"] == 2
    assert sorted(c.event_id for c in app.calls_of("c_capped")) == sorted(e.id for e in events)
    assert contract_bus.dead_letters("c_capped") == []


def test_a_cap_holds_for_jobs_that_run_longer_than_the_heartbeat_timeout(contract_bus):
    from eventbus.middleware.housekeeping import Housekeeping
    from eventbus.middleware.limits import QueueLimits

    # Given queue c_capped capped at 2, and slot leases that expire 0.6 s after their last renewal
    quick = replace(contract_bus.settings, heartbeat_timeout_s=0.6, heartbeat_interval_s=0.1)
    for middleware in contract_bus.broker.middleware:
        if isinstance(middleware, (QueueLimits, Housekeeping)):
            middleware.settings = quick
    contract_bus.start(threads=8)
    # When three jobs of 1.5 s are queued at once
    publish_many([("contract.capped", {"n": i, "sleep_ms": 1500}) for i in range(3)])
    wait_for(lambda: len(app.calls_of("c_capped")) >= 3, 30)
    # Then the running jobs' leases were renewed: never more than 2 ran at once
    assert app.RUNNING["max"] == 2


def test_a_freed_cap_slot_goes_to_the_most_urgent_job_waiting(contract_bus):
    from eventbus.middleware.limits import QueueLimits

    broker = contract_bus.broker
    middleware = next(m for m in broker.middleware if isinstance(m, QueueLimits))
    # Given queue c_capped's two slots held, four LOW jobs waiting for one, then a CRITICAL job
    assert broker.limits.acquire("c_capped", 2, "held-1", 10_000) and broker.limits.acquire(
        "c_capped", 2, "held-2", 10_000
    )
    took: list[str] = []
    done = threading.Event()

    def run(name: str, priority: str) -> None:
        message = dramatiq.MessageProxy(
            dramatiq.Message(queue_name="c_capped", actor_name="x", args=(), kwargs={}, options={"priority": priority})
        )
        try:
            middleware.before_process_message(broker, message)  # waits for a slot (at most 1 s)
        except SkipMessage:  # waited too long: deferred to the schedule
            return
        took.append(name)
        done.wait(10)
        middleware.after_process_message(broker, message)

    threads = [threading.Thread(target=run, args=(f"low-{i}", "low")) for i in range(4)]
    threads.append(threading.Thread(target=run, args=("critical", "critical")))
    for thread in threads:
        thread.start()
        time.sleep(0.03)
    time.sleep(0.1)
    # When one slot is freed
    broker.limits.release("c_capped", "held-1")
    wait_for(lambda: took, 5)
    time.sleep(0.1)
    # Then the CRITICAL job has it, though every LOW one waited longer (before, the first to look won)
    assert took == ["critical"]
    broker.limits.release("c_capped", "held-2")
    done.set()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
