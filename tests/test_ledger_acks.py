"""On Redis a finished job's ledger write goes with its ack, in the same script call (real Redis)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from eventbus.clock import now_ms
from eventbus.delivery import build_message
from eventbus.ledger import Completion, JobState, forced_transition, transition

pytestmark = pytest.mark.redis


def enqueued(bus, job_id: str):
    """A message enqueued on ``queue`` and taken into this worker's hands, its waiting record written."""
    message = bus.enqueue(build_message("acks_q", "user.job", {}, {}, job_id))
    bus.stores.ledger.flush()
    rid = message.options["redis_message_id"]
    bus.client.sadd(bus.key(f"__acks__.{bus.broker_id}.acks_q"), rid)  # as a fetch does
    return message, rid


def test_a_completion_is_written_by_its_ack(bus):
    message, rid = enqueued(bus, "A1")
    bus.completions.append(Completion(message, 1, 1_000, now_ms(), "w:1"))
    bus._send_writes([], [("acks_q", rid)])
    assert not bus.client.hexists(bus.key("acks_q.msgs"), rid)  # acked
    record = bus.stores.ledger.store.get(["A1"])[0]
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
    bus.stores.ledger.flush()
    record = bus.stores.ledger.store.get(["A2"])[0]
    assert (record.state, record.actor, record.queue) == (JobState.COMPLETED, "user.job", "acks_q")


def test_a_finished_record_stays_a_compact_hash(bus):
    # Given a job enqueued, started and finished, its completion written with its ack
    message, rid = enqueued(bus, "A3")
    bus.completions.append(Completion(message, 1, now_ms() - 5, now_ms(), "w:1"))
    bus._send_writes([], [("acks_q", rid)])
    # Then its record is still a listpack (whole state names in the history made it a hash table:
    # several times the memory, and the Redis time to write and to delete it)
    assert bus.client.object("encoding", bus.key("job", "A3")) == b"listpack"
    record = bus.stores.ledger.store.get(["A3"])[0]
    assert [h.state for h in record.history] == [JobState.WAITING, JobState.ACTIVE, JobState.COMPLETED]


def test_a_job_moved_twice_in_one_call_is_only_in_its_last_state_set(bus):
    # Given a job's writes that are not folded into one (control-plane writes) in one apply call
    message = bus.enqueue(build_message("acks_q", "user.job", {}, {}, "A4"))
    store = bus.stores.ledger.store
    ops = [transition(message, state, 1) for state in (JobState.WAITING, JobState.ACTIVE, JobState.COMPLETED)]
    for op in ops:
        op.force = True
    store.apply(ops)
    # Then its record sits in the completed set only: the sets change once per call, not per write
    for state, members in (("waiting", 0), ("active", 0), ("completed", 1)):
        assert (bus.client.zscore(bus.key("jobs", "acks_q", state), "A4") is not None) == bool(members)
    assert store.get(["A4"])[0].state is JobState.COMPLETED


def test_keep_n_trims_a_whole_call_of_completions_at_once(bus):
    # Given a broker whose stores keep 3 completed records per queue (the ack script trims by the
    # stores' retention), and ten jobs finished in one group commit
    bus.stores = type(bus.stores)(bus, replace(bus.stores.settings, keep_completed=3))
    acks = []
    for i in range(10):
        message, rid = enqueued(bus, f"T{i}")
        bus.completions.append(Completion(message, 1, None, now_ms() + i, "w:1"))
        acks.append(("acks_q", rid))
    bus._send_writes([], acks)
    # Then the newest three are kept, and the records of the others are gone
    kept = [m.decode() for m in bus.client.zrange(bus.key("jobs", "acks_q", "completed"), 0, -1)]
    assert kept == ["T7", "T8", "T9"]
    assert [bus.client.exists(bus.key("job", f"T{i}")) for i in range(10)] == [0] * 7 + [1] * 3


def test_a_dead_jobs_record_loses_its_ttl_once_it_is_failed_history(bus):
    # Given a dead job's record, which expires with its dead letter
    message = bus.enqueue(build_message("acks_q", "user.job", {}, {}, "D1"))
    store = bus.stores.ledger.store
    store.apply([transition(message, JobState.DEAD, 1)])
    assert bus.client.pttl(bus.key("job", "D1")) > 0
    # When its dead letter is purged and the record becomes failed history
    store.apply([forced_transition("D1", "acks_q", JobState.FAILED, now_ms())])
    # Then the record keeps no TTL: Upkeep trims failed records by their own age (and keep-N here)
    assert bus.client.pttl(bus.key("job", "D1")) == -1
    assert store.get(["D1"])[0].state is JobState.FAILED


def test_an_active_write_that_lands_after_its_completion_still_records_the_start(bus):
    # Given a job whose active write the flusher took just before the job finished, and whose
    # completion (sent with its ack, another connection) reached Redis first
    message, rid = enqueued(bus, "A6")
    started = now_ms() + 1
    active = transition(message, JobState.ACTIVE, 1, at_ms=started, compact=True, started_at_ms=started, worker="w:1")
    bus.completions.append(Completion(message, 1, None, started + 3, "w:1"))
    bus._send_writes([], [("acks_q", rid)])
    # When the active write lands, late (and once more, as a retried flush would send it)
    store = bus.stores.ledger.store
    store.apply([replace(active)])
    store.apply([replace(active)])
    # Then the record stays completed and tells when and where the job started, in time order
    record = store.get(["A6"])[0]
    assert (record.state, record.started_at_ms, record.worker) == (JobState.COMPLETED, started, "w:1")
    assert [h.state for h in record.history] == [JobState.WAITING, JobState.ACTIVE, JobState.COMPLETED]
    assert bus.client.zscore(bus.key("jobs", "acks_q", "completed"), "A6") is not None
