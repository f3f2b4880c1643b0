"""Job ledger, stats and dead letters on real Redis with real workers (issue 5, acceptance 1 and 4)."""

from __future__ import annotations

import time

import pytest

import tests.apps.control  # noqa: F401  declares the test topics in this (publisher) process
from eventbus import publish_event, publish_many
from eventbus.control import ControlPlane, JobState
from eventbus.delivery import delivery_id
from tests.conftest import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = "tests.apps.control"


def all_dead_letters(cp: ControlPlane, **kw):
    letters, cursor = [], None
    while True:
        page = cp.dead_letters(limit=30, cursor=cursor, **kw)
        letters += page.items
        if page.next_cursor is None:
            return letters
        cursor = page.next_cursor


def test_stats_and_dead_letters_after_100_events_with_one_always_failing_subscriber(bus, settings, start_worker):
    # Given a worker with three subscribers of ctl.happened, one of which always fails (max_retries=2)
    worker = start_worker(APP)
    cp = ControlPlane(bus, settings)
    # When 100 events are published
    events = publish_many([("ctl.happened", {"n": i}) for i in range(100)])

    def settled() -> bool:
        s = cp.stats()
        failed = sum(t.failed for t in s.topics)  # the ledger's writes trail the broker's by up to ~25 ms
        return s.queue("ctl").completed >= 200 and s.queue("events").completed >= 100 and failed >= 100

    wait_for(settled, 120, worker)
    # Then the stats show 200 completed deliveries, 100 completed fan-outs and 100 dead letters
    stats = cp.stats()
    assert (stats.queue("ctl").completed, stats.queue("ctl").dead) == (200, 0)
    assert (stats.queue("ctl_dead").completed, stats.queue("ctl_dead").dead) == (0, 100)
    assert stats.queue("events").completed == 100
    assert stats.queue("ctl").processed_last_minute == 200
    (topic,) = [t for t in stats.topics if t.topic == "ctl.happened"]
    assert (topic.published, topic.deliveries, topic.failed) == (100, 200, 100)
    # And each dead letter shows the final attempt's traceback and max_retries + 1 attempts
    letters = all_dead_letters(cp, queue="ctl_dead")
    assert sorted(d.event_id for d in letters) == sorted(e.id for e in events)
    for letter in letters:
        assert letter.subscription == "broken"
        assert letter.attempts == 3
        assert f"broken cannot handle {letter.event_id}" in (letter.traceback or "")
        assert letter.error == f"RuntimeError: broken cannot handle {letter.event_id}"
        assert letter.dead_at_ms >= letter.enqueued_at_ms
    # And the same letters are listed per subscription, shown one by one, and their jobs are dead
    assert len(all_dead_letters(cp, subscription="broken")) == 100
    assert all_dead_letters(cp, subscription="ok_a") == []
    one = cp.get_dead_letter(letters[0].job_id)
    assert one.kwargs["event"]["id"] == letters[0].event_id and "Traceback" in (one.traceback or "")
    job = cp.get_job(letters[0].job_id)
    assert (job.state, job.attempts, job.subscription) == (JobState.DEAD, 3, "broken")
    assert job.traceback and "broken cannot handle" in job.traceback


def test_a_job_looked_up_by_id_moves_through_waiting_active_retrying_completed(bus, settings, start_worker):
    # Given a worker, and the flaky queue paused so the new job is seen waiting
    worker = start_worker(APP)
    cp = ControlPlane(bus, settings)
    wait_for(cp.workers, 30, worker)  # booted: queues and subscriptions registered
    cp.pause("flaky")
    event = publish_event("ctl.flaky", {"x": 1})
    job_id = delivery_id(event.id, "flaky_once")

    def state() -> JobState | None:
        try:
            return cp.get_job(job_id).state
        except Exception:
            return None

    wait_for(lambda: state() == JobState.WAITING, 30, worker)
    assert cp.get_job(job_id).payload["kwargs"]["subscription"] == "flaky_once"
    # When the queue resumes and the job fails once, then succeeds
    cp.resume("flaky")
    seen = [JobState.WAITING]
    deadline = time.monotonic() + 30
    while seen[-1] != JobState.COMPLETED and time.monotonic() < deadline:
        current = state()
        if current is not None and current != seen[-1]:
            seen.append(current)
        time.sleep(0.01)
    # Then lookups by id saw it move waiting -> active -> retrying -> (waiting -> active ->) completed
    expected = iter([JobState.WAITING, JobState.ACTIVE, JobState.RETRYING, JobState.COMPLETED])
    want = next(expected)
    for s in seen:
        if s == want:
            want = next(expected, None)
    assert want is None, seen
    job = cp.get_job(job_id)
    assert job.attempts == 2 and job.error == "RuntimeError: first attempt of flaky_once fails"
    assert job.started_at_ms and job.finished_at_ms and job.finished_at_ms >= job.started_at_ms
    assert [h.state for h in job.history][-3:] == [JobState.WAITING, JobState.ACTIVE, JobState.COMPLETED]
    assert cp.list_jobs("flaky", "completed").items[0].id == job_id
