"""One control plane, every store: stats, job states, dead letters, requeue, pause/resume, clean, health.

The same tests run on ``memory``, ``sqlite`` and ``redis`` (the contract fixture).
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from eventbus import publish_event, publish_many
from eventbus.clock import now_ms
from eventbus.control import ControlPlane, DeadLetterFilter, HealthStatus, JobState
from eventbus.deadletter import DeadReason
from eventbus.delivery import EVENTS_QUEUE, FANOUT_ACTOR, build_message, delivery_id
from eventbus.errors import InvalidJobState, JobNotFound, QueueNotFound
from eventbus.ledger import Completion, transition
from eventbus.middleware.ledger import Ledger
from eventbus.middleware.upkeep import Upkeep
from tests.apps import contract_control as app
from tests.conftest import wait_for
from tests.contract.invariants import assert_invariants


@pytest.fixture
def cp(contract_bus):
    app.reset()
    yield ControlPlane(contract_bus.broker, contract_bus.settings)
    app.reset()


def dead_deliveries(cp: ControlPlane, n: int) -> list[str]:
    """Publish n cc.happened events; returns the ids of the n cc_broken deliveries once all are dead."""
    events = publish_many([("cc.happened", {"n": i}) for i in range(n)])
    wait_for(lambda: sum(t.failed for t in cp.stats().topics) >= n, 60)
    wait_for(lambda: cp.stats().queue("cc_ok").completed >= n, 30)
    wait_for(lambda: cp.stats().queue("cc_dead").dead >= n, 30)  # the nack and the ledger write land apart
    assert_invariants(cp)
    return [delivery_id(e.id, "cc_broken") for e in events]


def test_stats_dead_letters_and_a_requeue_that_runs_each_letter_once(contract_bus, cp):
    # Given a worker, and 10 events reaching one good and one always failing subscriber (max_retries=2)
    contract_bus.start()
    ids = dead_deliveries(cp, 10)
    # Then stats count 10 completed deliveries, 10 dead letters, 10 completed fan-outs
    stats = cp.stats()
    assert (stats.queue("cc_ok").completed, stats.queue("cc_ok").dead) == (10, 0)
    assert (stats.queue("cc_dead").completed, stats.queue("cc_dead").dead) == (0, 10)
    assert stats.queue(EVENTS_QUEUE).completed >= 10
    assert stats.queue("cc_ok").processed_last_minute == 10
    (topic,) = [t for t in stats.topics if t.topic == "cc.happened"]
    assert (topic.published, topic.deliveries, topic.failed) == (10, 10, 10)
    # And each dead letter carries the final attempt's traceback and max_retries + 1 attempts
    letters = cp.dead_letters(queue="cc_dead", limit=100).items
    assert sorted(d.job_id for d in letters) == sorted(ids)
    for letter in letters:
        assert letter.subscription == "cc_broken" and letter.attempts == 3 and letter.reason == DeadReason.FAILED
        assert f"cc_broken cannot handle {letter.event_id}" in (letter.traceback or "")
        assert letter.error == f"RuntimeError: cc_broken cannot handle {letter.event_id}"
    assert [d.job_id for d in cp.dead_letters(subscription="cc_broken", limit=100).items] == [d.job_id for d in letters]
    one = cp.get_dead_letter(ids[0])
    assert one.kwargs["subscription"] == "cc_broken" and "Traceback" in (one.traceback or "")
    job = cp.get_job(ids[0])
    assert (job.state, job.attempts, job.subscription) == (JobState.DEAD, 3, "cc_broken")
    assert job.payload is not None and job.payload["kwargs"]["subscription"] == "cc_broken"
    assert {j.id for j in cp.list_jobs("cc_dead", "dead", limit=100).items} == set(ids)
    # When the subscriber is fixed and every dead letter is requeued
    app.FIXED.set()
    result = cp.requeue_dead_letters(everything=True)
    assert sorted(result.requeued) == sorted(ids)
    # Then each runs exactly once more and completes
    wait_for(lambda: cp.stats().queue("cc_dead").completed == 10, 30)
    time.sleep(0.3)  # room for a duplicate to show up
    fixed = {k: n for k, n in app.CALLS.items() if k.startswith("cc_fixed|")}
    assert fixed == {f"cc_fixed|{d.event_id}": 1 for d in letters}
    assert cp.stats().queue("cc_dead").dead == 0
    job = cp.get_job(ids[0])
    assert (job.state, job.requeues, job.attempts) == (JobState.COMPLETED, 1, 1)
    # And a second requeue finds nothing to do
    assert cp.requeue_dead_letters(everything=True).requeued == []
    # And every invariant holds
    assert_invariants(cp)


def test_a_job_moves_waiting_active_retrying_completed(contract_bus, cp):
    # Given a worker and the cc_flaky queue paused, so the new job is seen waiting
    contract_bus.start()
    cp.pause("cc_flaky")
    event = publish_event("cc.flaky", {"x": 1})
    job_id = delivery_id(event.id, "cc_flaky")

    def state() -> JobState | None:
        try:
            return cp.get_job(job_id).state
        except Exception:
            return None

    wait_for(lambda: state() == JobState.WAITING, 30)
    assert cp.get_job(job_id).payload["kwargs"]["subscription"] == "cc_flaky"
    # When the queue resumes; the first attempt fails, the second succeeds
    cp.resume("cc_flaky")
    seen = [JobState.WAITING]
    deadline = time.monotonic() + 30
    while seen[-1] != JobState.COMPLETED and time.monotonic() < deadline:
        current = state()
        if current is not None and current != seen[-1]:
            seen.append(current)
        time.sleep(0.01)
    # Then lookups saw waiting -> active -> retrying -> ... -> completed
    expected = iter([JobState.WAITING, JobState.ACTIVE, JobState.RETRYING, JobState.COMPLETED])
    want = next(expected)
    for s in seen:
        if s == want:
            want = next(expected, None)
    assert want is None, seen
    job = cp.get_job(job_id)
    assert job.attempts == 2 and job.error == "RuntimeError: first attempt of cc_flaky fails"
    assert job.started_at_ms and job.finished_at_ms and job.finished_at_ms >= job.started_at_ms
    assert [h.state for h in job.history][-2:] == [JobState.ACTIVE, JobState.COMPLETED]
    assert cp.list_jobs("cc_flaky", "completed").items[0].id == job_id
    # And every invariant holds
    assert_invariants(cp)


def test_pause_holds_jobs_waiting_and_resume_runs_them(contract_bus, cp):
    # Given a worker and queue cc_ok paused
    contract_bus.start()
    cp.pause("cc_ok")
    assert cp.paused() == ["cc_ok"] and cp.stats().queue("cc_ok").paused
    # When 5 events are published
    publish_many([("cc.happened", {"n": i}) for i in range(5)])
    # Then their cc_ok deliveries wait
    wait_for(lambda: cp.stats().queue("cc_ok").waiting == 5, 30)
    time.sleep(0.3)
    assert not any(k.startswith("cc_ok|") for k in app.CALLS)
    # And after resume they all run once
    cp.resume("cc_ok")
    wait_for(lambda: cp.stats().queue("cc_ok").completed == 5, 30)
    stats = cp.stats().queue("cc_ok")
    assert (stats.waiting, stats.paused, cp.paused()) == (0, False, [])
    with pytest.raises(QueueNotFound):
        cp.pause("no_such_queue")
    # And every invariant holds
    assert_invariants(cp)


def test_pause_stops_new_starts_within_250_ms_even_of_fetched_jobs(contract_bus, cp):
    # Given 4 worker threads working through 40 jobs of 300 ms (so some wait fetched ahead of the threads)
    contract_bus.start(threads=4)
    events = publish_many([("cc.slow", {"n": i, "sleep_ms": 300}) for i in range(40)])
    wait_for(lambda: len(app.STARTS) >= 6, 30)
    # When the queue is paused
    cp.pause("cc_slow")
    paused_at = time.time()
    time.sleep(1.0)
    # Then no job starts later than 250 ms after the pause
    late = [t - paused_at for t in list(app.STARTS) if t > paused_at + 0.25]
    assert late == [], f"{len(late)} jobs started after the pause"
    assert len(app.STARTS) < 40
    # And after resume every job runs exactly once
    cp.resume("cc_slow")
    wait_for(lambda: sum(1 for k in app.CALLS if k.startswith("cc_slow|")) == 40, 60)
    time.sleep(0.3)
    assert {k: n for k, n in app.CALLS.items() if k.startswith("cc_slow|")} == {f"cc_slow|{e.id}": 1 for e in events}
    assert len(app.STARTS) == 40
    # And every invariant holds
    assert_invariants(cp)


def test_clean_purge_and_a_late_waiting_write(contract_bus, cp):
    # Given 6 completed deliveries on cc_ok and 6 dead ones on cc_dead
    contract_bus.start()
    ids = dead_deliveries(cp, 6)
    # When cc_ok is cleaned down to the newest 2, then everything older than 0 s
    assert cp.clean("cc_ok", keep_last=2) == 4
    assert len(cp.list_jobs("cc_ok", "completed").items) == 2
    assert cp.clean("cc_ok", older_than_s=0) == 2
    assert cp.stats().queue("cc_ok").completed == 0
    # And one dead letter is purged: its record stays as failed history
    assert cp.purge_dead_letters([ids[0]]) == 1
    assert cp.get_job(ids[0]).state == JobState.FAILED
    assert cp.stats().queue("cc_dead").failed == 1
    assert cp.purge_dead_letters(match=DeadLetterFilter(queue="cc_dead"), everything=True) == 5
    assert cp.dead_letters().items == []
    # And a late "waiting" write never overwrites "active"
    message = build_message(EVENTS_QUEUE, FANOUT_ACTOR, {"event": {"id": "E1", "topic": "t"}}, {"topic": "t"}, "E1")
    cp.store.apply([transition(message, JobState.ACTIVE, 1, worker="w:1")])
    assert cp.store.apply([transition(message, JobState.WAITING, 1)]) == 0
    record = cp.get_job("E1")
    assert record.state == JobState.ACTIVE and record.worker == "w:1"
    assert "E1" not in [j.id for j in cp.list_jobs(EVENTS_QUEUE, "waiting").items]
    assert cp.store.apply([transition(message.copy(options={"retries": 1}), JobState.WAITING, 2)]) == 1
    # And every invariant holds
    assert_invariants(cp)


def test_a_compact_write_creates_a_whole_record_and_keeps_the_fixed_fields_of_one(cp):
    # Given a worker's compact writes (no fixed fields), one for a job with no record yet
    options = {"topic": "t", "priority": "high", "subscription": "s1", "event_id": "E2"}
    fresh = build_message("q1", "user.job", {}, options, "J1")
    known = build_message("q1", "user.job", {}, options, "J2")
    assert cp.store.apply([transition(known, JobState.WAITING, 1, at_ms=1_000)]) == 1
    # When both are applied
    writes = [transition(m, JobState.ACTIVE, 1, at_ms=2_000, compact=True, worker="w:1") for m in (fresh, known)]
    assert all("actor" not in op.fields for op in writes)
    assert cp.store.apply(writes) == 2
    # Then each record is whole: the missing one was written in full, the other kept its fields
    for job_id in ("J1", "J2"):
        record = cp.get_job(job_id)
        assert (record.state, record.worker, record.actor) == (JobState.ACTIVE, "w:1", "user.job")
        assert (record.priority, record.subscription, record.event_id, record.queue) == ("high", "s1", "E2", "q1")
    assert (cp.get_job("J1").enqueued_at_ms, cp.get_job("J2").enqueued_at_ms) == (
        fresh.message_timestamp, known.message_timestamp)  # fmt: skip
    assert [h.state for h in cp.get_job("J2").history] == [JobState.WAITING, JobState.ACTIVE]
    # And a completion written twice (a redelivered job) counts once
    done = Completion(known, 1, None, now_ms(), "w:1")
    assert cp.store.apply([], [done]) == 1
    cp.store.apply([], [done])
    assert (cp.stats().queue("q1").completed, cp.stats().queue("q1").processed_last_minute) == (1, 1)
    assert [h.state for h in cp.get_job("J2").history][:3] == [JobState.WAITING, JobState.ACTIVE, JobState.COMPLETED]
    # And a job that completes before any record of it exists gets a whole one, its start folded in
    late = build_message("q1", "user.job", {}, options, "J3")
    assert cp.store.apply([], [Completion(late, 1, 5_000, now_ms(), "w:2")]) == 1
    record = cp.get_job("J3")
    assert (record.state, record.actor, record.priority, record.worker) == (
        JobState.COMPLETED,
        "user.job",
        "high",
        "w:2",
    )
    assert [h.state for h in record.history] == [JobState.ACTIVE, JobState.COMPLETED] and record.started_at_ms == 5_000
    # And every invariant holds
    assert_invariants(cp)


def test_health_sees_the_broker_the_thresholds_and_live_workers(contract_bus, cp):
    # Given no worker yet: degraded, because nobody works
    report = cp.health()
    assert report.status == HealthStatus.DEGRADED and report.checks[0].name == "broker" and report.checks[0].ok
    assert any("no live worker" in r for r in report.reasons)
    # When a worker runs and 3 deliveries are dead
    contract_bus.start()
    wait_for(cp.workers, 30)
    dead_deliveries(cp, 3)
    # Then health is healthy under the threshold and degraded over it
    assert cp.health(max_failed=3).status in (HealthStatus.HEALTHY, HealthStatus.DEGRADED)
    assert [c.ok for c in cp.health(max_failed=3).checks if c.name in ("failed", "waiting", "workers")] == [True] * 3
    report = cp.health(max_failed=2)
    assert report.status == HealthStatus.DEGRADED
    assert any(r.startswith("3 failed jobs in dead letters (threshold 2): cc_dead 3") for r in report.reasons)
    # And every invariant holds
    assert_invariants(cp)


def test_replay_remove_and_retry_one_job(contract_bus, cp):
    # Given a worker, and an event that reached both subscribers (cc_broken fixed)
    app.FIXED.set()
    contract_bus.start()
    event = publish_event("cc.happened", {"n": 1})
    wait_for(lambda: app.CALLS[f"cc_ok|{event.id}"] == 1 and app.CALLS[f"cc_fixed|{event.id}"] == 1, 30)
    wait_for(lambda: event.id in [j.id for j in cp.list_jobs(EVENTS_QUEUE, "completed", limit=100).items], 10)
    # When it is replayed to cc_ok only
    replayed = cp.replay(event.id, "cc_ok")
    # Then cc_ok runs once more, as a new job, and cc_broken does not
    wait_for(lambda: app.CALLS[f"cc_ok|{event.id}"] == 2, 30)
    wait_for(lambda: cp.get_job(replayed.job_id).state == JobState.COMPLETED, 10)
    assert replayed.job_id != delivery_id(event.id, "cc_ok") and app.CALLS[f"cc_fixed|{event.id}"] == 1
    # When a waiting job of a paused queue is removed
    cp.pause("cc_ok")
    events = publish_many([("cc.happened", {"n": i}) for i in range(3)])
    ids = [delivery_id(e.id, "cc_ok") for e in events]
    wait_for(lambda: len(cp.list_jobs("cc_ok", "waiting").items) == 3, 30)
    assert cp.remove_job(ids[1]).state == JobState.WAITING
    cp.resume("cc_ok")
    # Then the others run and it never does
    wait_for(lambda: app.CALLS[f"cc_ok|{events[0].id}"] == 1 and app.CALLS[f"cc_ok|{events[2].id}"] == 1, 30)
    time.sleep(0.3)
    assert app.CALLS[f"cc_ok|{events[1].id}"] == 0
    with pytest.raises(JobNotFound):
        cp.get_job(ids[1])
    # And a dead job retried by id runs again and completes
    app.FIXED.clear()
    dead = dead_deliveries(cp, 1)[0]
    app.FIXED.set()
    assert cp.retry_job(dead).id == dead
    wait_for(lambda: cp.get_job(dead).state == JobState.COMPLETED, 30)
    with pytest.raises(InvalidJobState):
        cp.retry_job(dead)
    # And every invariant holds
    assert_invariants(cp)


def test_scheduled_events_count_as_delayed_until_they_are_due(contract_bus, cp):
    from datetime import timedelta

    # Given three events scheduled an hour ahead and one due now (no worker running)
    publish_many([("cc.happened", {"n": i}) for i in range(3)], delay=timedelta(hours=1))
    publish_event("cc.happened", {"n": 3})
    # Then stats count them as delayed, apart from the one waiting
    stats = cp.stats().queue(EVENTS_QUEUE)
    assert (stats.delayed, stats.waiting) == (3, 1)
    # And every invariant holds
    assert_invariants(cp)


def test_workers_enforce_retention_on_a_schedule(contract_bus, cp):
    # Given a worker whose dead letters live 1 s and that keeps 3 completed records per queue
    settings = replace(contract_bus.settings, dead_letter_ttl_s=1, housekeeping_interval_s=0.5, keep_completed=3)
    broker = contract_bus.broker
    for middleware in broker.middleware:
        if isinstance(middleware, (Ledger, Upkeep)):
            middleware.settings = settings
    broker.stores = type(broker.stores)(broker, settings)  # what the ledger keeps is its store's retention
    cp = ControlPlane(broker, settings)
    contract_bus.start()
    events = publish_many([("cc.happened", {"n": i}) for i in range(4)])
    # When the deliveries to cc_broken die and nothing else happens
    wait_for(lambda: sum(t.failed for t in cp.stats().topics) >= 4, 60)
    # Then the worker purges their dead letters within a few seconds; the records stay as failed
    wait_for(lambda: cp.stats().queue("cc_dead").dead == 0, 10)
    # (the purge takes the dead letters, then marks their records failed: wait for the second step)
    wait_for(lambda: cp.get_job(delivery_id(events[0].id, "cc_broken")).state == JobState.FAILED, 5)
    # And only the newest 3 completed records of cc_ok are kept
    wait_for(lambda: cp.stats().queue("cc_ok").completed == 3, 10)
    assert len(cp.list_jobs("cc_ok", "completed").items) == 3
    # And every invariant holds
    assert_invariants(cp)


def test_a_running_job_shows_its_payload(contract_bus, cp):
    # Given a worker running a job of 1.5 s
    contract_bus.start()
    event = publish_event("cc.slow", {"n": 1, "sleep_ms": 1500})
    job_id = delivery_id(event.id, "cc_slow")
    wait_for(lambda: job_id in [j.id for j in cp.list_jobs("cc_slow", "active").items], 30)
    # When it is looked up while it runs
    job = cp.get_job(job_id)
    # Then it is active and shows what it runs
    assert job.state == JobState.ACTIVE and job.payload is not None
    assert job.payload["kwargs"]["subscription"] == "cc_slow"
    wait_for(lambda: cp.get_job(job_id).state == JobState.COMPLETED, 30)
