"""A job's active write waits for its next write or the next flush: a short job costs one write,
a long one still shows active within one flush (on real Redis). A worker's writes are compact."""

from __future__ import annotations

import functools

import dramatiq
import pytest

from eventbus.brokers.redis.ledger import RedisLedger
from eventbus.ledger import Completion, JobState, coalesce, transition
from eventbus.ledger_writer import LedgerWriter
from eventbus.retention import Retention

pytestmark = pytest.mark.redis


@pytest.fixture
def ledger(redis_client, namespace, settings) -> RedisLedger:
    return RedisLedger(redis_client, namespace, Retention.from_settings(settings))


def message() -> dramatiq.Message:
    return dramatiq.Message(queue_name="default", actor_name="user.job", args=(), kwargs={}, options={})


def active(job: dramatiq.Message):
    return functools.partial(
        transition, job, JobState.ACTIVE, 1, at_ms=1_000, compact=True, started_at_ms=1_000, worker="w"
    )


def test_a_running_jobs_held_active_write_goes_out_with_the_next_flush(ledger):
    writer = LedgerWriter(ledger, interval_s=60)
    job = message()
    writer.hold(job.message_id, active(job))
    assert writer.flush() == 1
    [record] = ledger.get([job.message_id])
    assert record is not None and record.state is JobState.ACTIVE
    assert writer.release(job.message_id) is None  # sent: a later write stands on its own


def test_a_job_finished_before_the_flush_is_one_write_with_both_in_its_history(ledger):
    writer = LedgerWriter(ledger, interval_s=60)
    job = message()
    writer.hold(job.message_id, active(job))
    assert writer.release(job.message_id) is not None
    completed = transition(job, JobState.COMPLETED, 1, at_ms=1_005, compact=True, started_at_ms=1_000,
                           finished_at_ms=1_005, worker="w")  # fmt: skip
    completed.history = "a@1000,c@1005"
    writer.add(completed)
    assert writer.flush() == 1
    [record] = ledger.get([job.message_id])
    assert record is not None and record.state is JobState.COMPLETED
    assert [(h.state, h.at_ms) for h in record.history] == [(JobState.ACTIVE, 1_000), (JobState.COMPLETED, 1_005)]


def test_another_write_of_the_job_sends_its_held_active_write_first(ledger):
    writer = LedgerWriter(ledger, interval_s=60)
    job = message()
    writer.hold(job.message_id, active(job))
    writer.add(transition(job, JobState.DEAD, 1, at_ms=1_010, error="boom"))
    assert writer.flush() == 2
    [record] = ledger.get([job.message_id])
    assert record is not None and record.state is JobState.DEAD
    assert [h.state for h in record.history] == [JobState.ACTIVE, JobState.DEAD]


def test_a_fold_with_a_full_write_is_full_and_one_of_compact_writes_stays_compact():
    job = message()
    waiting = transition(job, JobState.WAITING, 1, at_ms=990)
    started = active(job)()
    assert "actor" not in started.fields and started.compact
    [folded] = coalesce([waiting, started])
    assert not folded.compact and folded.message is None and folded.fields["actor"] == "user.job"
    done = transition(job, JobState.COMPLETED, 1, at_ms=1_005, compact=True, finished_at_ms=1_005)
    [folded] = coalesce([started, done])
    assert folded.compact and folded.history == "a@1000,c@1005"


def test_a_flushed_active_write_lands_before_the_same_jobs_completion_in_one_batch(ledger):
    # Given a job with a record, and a batch where its active write comes after a chunk of others
    job = message()
    assert ledger.apply([transition(job, JobState.WAITING, 1, at_ms=900)]) == 1
    others = [transition(message(), JobState.WAITING, 1, at_ms=950) for _ in range(120)]
    # When the batch carries its active write (sent by a flush while it ran) and its completion
    ledger.apply([*others, active(job)()], [Completion(job, 1, None, 1_005, "w")])
    # Then the completion extends the record: the active write was not outranked and dropped
    [record] = ledger.get([job.message_id])
    assert record is not None and record.state is JobState.COMPLETED
    assert (record.started_at_ms, record.worker, record.finished_at_ms) == (1_000, "w", 1_005)
    assert [h.state for h in record.history] == [JobState.WAITING, JobState.ACTIVE, JobState.COMPLETED]
