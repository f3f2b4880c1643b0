"""On Redis a finished job's ledger write goes with its ack, in the same script call (real Redis)."""

from __future__ import annotations

import pytest

from eventbus.delivery import build_message
from eventbus.ledger import Completion, JobState, now_ms
from eventbus.middleware.ledger import ledger_writer

pytestmark = pytest.mark.redis


def enqueued(bus, job_id: str):
    """A message enqueued on ``queue`` and taken into this worker's hands, its waiting record written."""
    message = bus.enqueue(build_message("acks_q", "user.job", {}, {}, job_id))
    ledger_writer(bus).flush()
    rid = message.options["redis_message_id"]
    bus.client.sadd(bus.key(f"__acks__.{bus.broker_id}.acks_q"), rid)  # as a fetch does
    return message, rid


def test_a_completion_is_written_by_its_ack(bus):
    message, rid = enqueued(bus, "A1")
    bus.completions.append(Completion(message, 1, 1_000, now_ms(), "w:1"))
    bus._send_writes([], [("acks_q", rid)])
    assert not bus.client.hexists(bus.key("acks_q.msgs"), rid)  # acked
    record = ledger_writer(bus).store.get(["A1"])[0]
    assert (record.state, record.worker, record.started_at_ms) == (JobState.COMPLETED, "w:1", 1_000)
    assert [h.state for h in record.history] == [JobState.WAITING, JobState.ACTIVE, JobState.COMPLETED]


def test_the_ack_holds_when_the_ledger_part_fails_and_the_completion_is_written_in_full(bus):
    # Given a job whose record the ledger's part of the ack script cannot read (a corrupt sequence)
    message, rid = enqueued(bus, "A2")
    bus.client.hset(bus.key("job", "A2"), "seq", "not a number")
    bus.completions.append(Completion(message, 1, None, now_ms(), "w:1"))
    # When its ack goes out
    bus._send_writes([], [("acks_q", rid)])
    # Then the ack is written all the same, and the ledger writes the completion in full itself
    assert not bus.client.hexists(bus.key("acks_q.msgs"), rid)
    ledger_writer(bus).flush()
    record = ledger_writer(bus).store.get(["A2"])[0]
    assert (record.state, record.actor, record.queue) == (JobState.COMPLETED, "user.job", "acks_q")
