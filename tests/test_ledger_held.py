"""A job's active write waits for its next write or the next flush: a short job costs one write,
a long one still shows active within one flush (on real Redis)."""

from __future__ import annotations

import dramatiq
import pytest

from eventbus.ledger import JobState, coalesce, follow, transition
from eventbus.ledger_redis import RedisLedger, Retention
from eventbus.middleware.ledger import LedgerWriter

pytestmark = pytest.mark.redis


@pytest.fixture
def ledger(redis_client, namespace, settings) -> RedisLedger:
    return RedisLedger(redis_client, namespace, Retention.from_settings(settings))


def message() -> dramatiq.Message:
    return dramatiq.Message(queue_name="default", actor_name="user.job", args=(), kwargs={}, options={})


def test_a_running_jobs_held_active_write_goes_out_with_the_next_flush(ledger):
    writer = LedgerWriter(ledger, interval_s=60)
    job = message()
    writer.hold(transition(job, JobState.ACTIVE, 1, at_ms=1_000, started_at_ms=1_000, worker="w"))
    assert writer.flush() == 1
    [record] = ledger.get([job.message_id])
    assert record is not None and record.state is JobState.ACTIVE
    assert writer.release(job.message_id) is None  # sent: a later write stands on its own


def test_a_job_finished_before_the_flush_is_one_write_with_both_in_its_history(ledger):
    writer = LedgerWriter(ledger, interval_s=60)
    job = message()
    writer.hold(transition(job, JobState.ACTIVE, 1, at_ms=1_000, started_at_ms=1_000, worker="w"))
    held = writer.release(job.message_id)
    assert held is not None
    writer.add(follow(held, JobState.COMPLETED, 1_005, finished_at_ms=1_005))
    assert writer.flush() == 1
    [record] = ledger.get([job.message_id])
    assert record is not None and record.state is JobState.COMPLETED
    assert [(h.state, h.at_ms) for h in record.history] == [(JobState.ACTIVE, 1_000), (JobState.COMPLETED, 1_005)]


def test_another_write_of_the_job_sends_its_held_active_write_first(ledger):
    writer = LedgerWriter(ledger, interval_s=60)
    job = message()
    writer.hold(transition(job, JobState.ACTIVE, 1, at_ms=1_000, started_at_ms=1_000, worker="w"))
    writer.add(transition(job, JobState.DEAD, 1, at_ms=1_010, error="boom"))
    assert writer.flush() == 2
    [record] = ledger.get([job.message_id])
    assert record is not None and record.state is JobState.DEAD
    assert [h.state for h in record.history] == [JobState.ACTIVE, JobState.DEAD]


def test_follow_builds_what_coalesce_makes_of_the_two_writes():
    job = message()
    active = transition(job, JobState.ACTIVE, 1, at_ms=1_000, started_at_ms=1_000, worker="w")
    completed = transition(job, JobState.COMPLETED, 1, at_ms=1_005, finished_at_ms=1_005)
    assert follow(active, JobState.COMPLETED, 1_005, finished_at_ms=1_005) == coalesce([active, completed])[0]
