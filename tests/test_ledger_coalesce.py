"""Ledger writes of one job within a flush become one write carrying their history."""

from __future__ import annotations

from dataclasses import replace

from eventbus.job_record import JobRecord
from eventbus.ledger import JobState, LedgerWrite, coalesce, sequence


def write(job: str, state: JobState, t: int, attempt: int = 1, **fields: str) -> LedgerWrite:
    return LedgerWrite(
        job_id=job,
        queue="default",
        state=state,
        seq=sequence(0, attempt, state),
        at_ms=t,
        kind="delivery",
        topic="t",
        fields={"id": job, **fields},
    )


def test_a_job_enqueued_started_and_finished_in_one_flush_is_one_write():
    ops = [
        write("a", JobState.WAITING, 1),
        write("b", JobState.WAITING, 2),
        write("a", JobState.ACTIVE, 3, started_at_ms="3"),
        write("a", JobState.COMPLETED, 4, finished_at_ms="4"),
    ]
    folded = coalesce(ops)
    assert [op.job_id for op in folded] == ["a", "b"]
    a = folded[0]
    assert a.state is JobState.COMPLETED and a.at_ms == 4 and a.history == "w@1,a@3,c@4"
    assert a.fields == {"id": "a", "started_at_ms": "3", "finished_at_ms": "4"}
    assert folded[1] == ops[1]


def test_writes_that_arrive_out_of_order_fold_in_sequence_order():
    late_waiting = write("a", JobState.WAITING, 1)
    folded = coalesce([write("a", JobState.ACTIVE, 3), late_waiting])
    assert folded[0].state is JobState.ACTIVE and folded[0].history == "w@1,a@3"


def test_control_plane_writes_are_never_folded():
    forced = replace(write("a", JobState.FAILED, 9), force=True, existing=True)
    ops = [write("a", JobState.DEAD, 5), forced]
    assert coalesce(ops) == ops


def test_the_event_kept_for_replay_survives_folding():
    active = replace(write("e", JobState.ACTIVE, 1), kind="fanout", event_json='{"id":"e"}', event_id="e")
    folded = coalesce([active, write("e", JobState.COMPLETED, 2)])
    assert folded[0].event_json == '{"id":"e"}' and folded[0].event_id == "e"
    assert folded[0].state is JobState.COMPLETED


def test_a_history_written_with_whole_state_names_still_reads():
    record = JobRecord.from_fields({"id": "j", "history": "waiting@1,active@2,c@3"})
    assert [(h.state, h.at_ms) for h in record.history] == [
        (JobState.WAITING, 1),
        (JobState.ACTIVE, 2),
        (JobState.COMPLETED, 3),
    ]
