"""The job ledger's model: one record per job id, the states it moves through, and the writes that move it.

A job id is the Dramatiq ``message_id``: stable across retries (a delivery's is uuid5(event id,
subscription), a fan-out's is the event id). Each write carries a sequence number
``requeues * 1e6 + attempt * 10 + rank`` and is applied only if it is not older than the stored one,
so a late "waiting" from a slow publisher never overwrites "active" from a fast worker.
"""

from __future__ import annotations

import enum
import os
import socket
from dataclasses import dataclass, replace
from typing import Any

import dramatiq

from eventbus import encoder
from eventbus.clock import now_ms
from eventbus.delivery import DELIVER_ACTOR, FANOUT_ACTOR


class JobState(enum.StrEnum):
    """Where a job is; terminal states are completed, failed, dead and cancelled."""

    WAITING = "waiting"  # in its queue, ready to run
    DELAYED = "delayed"  # enqueued with a delay, not due yet
    ACTIVE = "active"  # a worker runs it
    RETRYING = "retrying"  # an attempt failed; the next one is scheduled (next_attempt_at_ms)
    COMPLETED = "completed"
    DEAD = "dead"  # out of attempts, kept in the dead letters (requeue it, or purge it)
    FAILED = "failed"  # out of attempts, and its dead letter was purged: history only
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True once nothing more will happen to the job by itself."""
        return self in (JobState.COMPLETED, JobState.DEAD, JobState.FAILED, JobState.CANCELLED)


# Phase rank inside one attempt: a write of a lower (attempt, rank) never replaces a higher one.
_RANK = {
    JobState.DELAYED: 0,
    JobState.WAITING: 1,
    JobState.ACTIVE: 2,
    JobState.RETRYING: 3,
    JobState.COMPLETED: 3,
    JobState.DEAD: 3,
    JobState.FAILED: 4,
    JobState.CANCELLED: 4,
}


# A record's history is ``<code>@<epoch ms>`` entries, oldest first, joined by commas. One letter per
# state keeps a finished job's history (``w@...,a@...,c@...``, 47 bytes) under Redis's 64-byte limit
# for compact hashes: past it the record becomes a hash table, which takes several times the memory
# and the Redis time to write and to delete. Records written with whole state names still read.
HISTORY_CODES: dict[str, str] = {  # keyed by JobState, which hashes as its value
    JobState.WAITING: "w",
    JobState.DELAYED: "d",
    JobState.ACTIVE: "a",
    JobState.RETRYING: "r",
    JobState.COMPLETED: "c",
    JobState.DEAD: "x",
    JobState.FAILED: "f",
    JobState.CANCELLED: "k",
}


def history_entry(state: str, at_ms: int | str) -> str:
    """One history entry: ``state`` (a JobState or its value) entered at ``at_ms``."""
    return f"{HISTORY_CODES[state]}@{at_ms}"


def sequence(requeues: int, attempt: int, state: JobState) -> int:
    """The ordering key of a write (see the module docstring)."""
    return requeues * 1_000_000 + attempt * 10 + _RANK[state]


_KINDS = {FANOUT_ACTOR: "fanout", DELIVER_ACTOR: "delivery"}


def job_kind(actor_name: str) -> str:
    """'fanout', 'delivery' or 'job' (any other actor)."""
    return _KINDS.get(actor_name, "job")


def canonical_queue(queue_name: str) -> str:
    """``email.DQ`` -> ``email``: a job belongs to its queue, wherever it waits."""
    return queue_name.removesuffix(".DQ")


def worker_name() -> str:
    """``host:pid`` of this process, as shown in records and heartbeats."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(slots=True)  # not frozen: one is built per transition, and a frozen one costs several times as much
class LedgerWrite:
    """One ledger write: job ``job_id`` entered ``state`` at ``at_ms``, with ``fields`` to set on its record.

    Built by :func:`transition` (or :func:`forced_transition` for the control plane). A store applies it
    only if ``seq`` is not older than the stored sequence, unless ``force`` is set.
    """

    job_id: str
    queue: str  # canonical (no ``.DQ``)
    state: JobState
    seq: int  # see :func:`sequence`
    at_ms: int
    kind: str  # 'fanout', 'delivery' or 'job'
    topic: str  # "" for a job with none
    fields: dict[str, str]  # record fields to set
    message: dramatiq.Message[Any] | None = None  # a compact write's message (for :func:`make_full`); None if full
    history: str | None = None  # its history entries, when not just ``state`` at ``at_ms`` (a folded write)
    event_json: str | None = None  # a fan-out's event, kept for replay under ``event_id``
    event_id: str | None = None
    force: bool = False  # applied whatever the stored sequence (the control plane's writes)
    existing: bool = False  # applied only to a record that exists (none is created)

    @property
    def compact(self) -> bool:
        """True when the write leaves out the job's fixed fields (see :func:`transition`)."""
        return self.message is not None

    def keep_event(self, event: dict[str, Any]) -> None:
        """Keep the published ``event`` for replay with this write."""
        self.event_json = encoder.dumps(event).decode()
        self.event_id = str(event["id"])


def transition(
    message: dramatiq.Message[Any],
    state: JobState,
    attempt: int,
    *,
    at_ms: int | None = None,
    compact: bool = False,
    **fields: str | int | None,
) -> LedgerWrite:
    """One ledger write for ``message`` entering ``state``: the job's fields plus ``fields`` (None ones left out).

    A full write carries the job's fixed fields too (:func:`fixed_fields`), so whichever write arrives
    first creates a complete record. A ``compact`` one (a worker's ``active`` and ``completed``, whose
    record its enqueue wrote) carries only what changes, and the message: a store that finds no
    record makes the write full (:func:`make_full`) instead of creating half a record.
    """
    # Built straight into strings: this runs for every transition, publishers included.
    options = message.options
    requeues = int(options.get("requeues", 0))
    kind = _KINDS.get(message.actor_name, "job")
    queue = message.queue_name.removesuffix(".DQ")
    f = {} if compact else fixed_fields(message, kind, queue)
    f["requeues"] = str(requeues)
    f["attempts"] = str(attempt)
    redis_id = options.get("redis_message_id")
    if redis_id is not None:
        f["redis_message_id"] = str(redis_id)
    for name, value in fields.items():
        if value is not None:
            f[name] = str(value)
    op = LedgerWrite(
        message.message_id,
        queue,
        state,
        requeues * 1_000_000 + attempt * 10 + _RANK[state],  # sequence(), inlined: this runs per transition
        at_ms or now_ms(),
        kind,
        options.get("topic") or "",
        f,
        message if compact else None,
    )
    # The event is kept for replay once a worker takes its fan-out (not at publish: that is the hot path).
    if kind == "fanout" and state is JobState.ACTIVE:
        event = message.kwargs.get("event") if isinstance(message.kwargs, dict) else None
        if isinstance(event, dict) and "id" in event:
            op.keep_event(event)
    return op


def forced_transition(job_id: str, queue: str, state: JobState, at_ms: int) -> LedgerWrite:
    """The control plane's write: the existing record of ``job_id`` enters ``state``, whatever its
    sequence (a job with no record gets none)."""
    return LedgerWrite(job_id, queue, state, 0, at_ms, "job", "", {}, force=True, existing=True)


def fixed_fields(message: dramatiq.Message[Any], kind: str, queue: str) -> dict[str, str]:
    """The fields a job keeps for its whole life (what a compact write leaves out)."""
    f = {
        "id": message.message_id,
        "queue": queue,
        "actor": message.actor_name,
        "kind": kind,
        "enqueued_at_ms": str(message.message_timestamp),
    }
    options = message.options
    for name in ("subscription", "event_id", "topic", "priority", "max_retries"):
        value = options.get(name)
        if value is not None:
            f[name] = str(value)
    return f


def make_full(op: LedgerWrite) -> LedgerWrite:
    """The full form of a compact write (for a store that holds no record of its job yet)."""
    message = op.message
    if message is None:
        return op
    full = replace(op, message=None)
    full.fields = {**fixed_fields(message, op.kind, op.queue), **op.fields}
    return full


def fanout_record(message: dramatiq.Message[Any], now_ms: int, worker: str) -> LedgerWrite:
    """The write for an event fanned out by its events consumer: completed, the event kept for replay."""
    attempt = int(message.options.get("retries", 0)) + 1
    op = transition(
        message, JobState.COMPLETED, attempt, at_ms=now_ms, started_at_ms=now_ms, finished_at_ms=now_ms, worker=worker
    )
    op.keep_event(message.kwargs["event"])
    return op


@dataclass(slots=True)  # not frozen: one is built per finished job, and a frozen one costs 4x to build
class Completion:
    """A job a worker finished: its ``completed`` write, built only when the ledger flushes.

    Most ledger writes are these. On Redis they go with the jobs' acks as flat script arguments
    (:meth:`flat`, see ``eventbus.brokers.redis.broker``); :meth:`write` is the compact write they stand for.
    """

    message: dramatiq.Message[Any]
    attempt: int
    started_ms: int | None  # set while its active write was never sent: one write carries both
    finished_ms: int
    worker: str

    @property
    def job_id(self) -> str:
        return self.message.message_id

    def changes(self) -> tuple[int, dict[str, str], str]:
        """What the write changes: its sequence number, the fields it sets and its history entries
        (the active one folded in when ``started_ms`` is set). A store may apply these straight."""
        options = self.message.options
        requeues = int(options.get("requeues", 0))
        at, started = self.finished_ms, self.started_ms
        f = {"requeues": str(requeues), "attempts": str(self.attempt)}
        if (redis_id := options.get("redis_message_id")) is not None:
            f["redis_message_id"] = str(redis_id)
        f["finished_at_ms"] = str(at)
        entry = history_entry(JobState.COMPLETED, at)
        if started is not None:
            f["started_at_ms"], f["worker"] = str(started), self.worker
            entry = f"{history_entry(JobState.ACTIVE, started)},{entry}"
        return sequence(requeues, self.attempt, JobState.COMPLETED), f, entry

    def write(self) -> LedgerWrite:
        """The compact write: completed, with the active one folded in when ``started_ms`` is set."""
        message = self.message
        seq, f, entry = self.changes()
        kind = _KINDS.get(message.actor_name, "job")
        queue = message.queue_name.removesuffix(".DQ")
        topic = message.options.get("topic") or ""
        return LedgerWrite(
            message.message_id, queue, JobState.COMPLETED, seq, self.finished_ms, kind, topic, f, message, entry
        )

    def flat(self) -> tuple[str, ...]:
        """id, sequence, finished ms, started ms (or ""), attempts, requeues, redis message id (or ""), worker."""
        options = self.message.options
        requeues = int(options.get("requeues", 0))
        started = "" if self.started_ms is None else str(self.started_ms)
        return (self.message.message_id, str(sequence(requeues, self.attempt, JobState.COMPLETED)),
                str(self.finished_ms), started, str(self.attempt), str(requeues),
                str(options.get("redis_message_id") or ""), self.worker)  # fmt: skip


def coalesce(ops: list[LedgerWrite]) -> list[LedgerWrite]:
    """Fold each job's writes in one batch into one write, in sequence order, with their whole history.

    A job enqueued, started and finished within one flush then costs one write instead of three.
    Jobs with a control-plane write (``force``, ``existing``) in the batch are left as they are.
    """
    if len({op.job_id for op in ops}) == len(ops):
        return list(ops)  # one write per job: nothing to fold
    flagged = {op.job_id for op in ops if op.force or op.existing}
    groups: dict[str, list[LedgerWrite]] = {}
    out: list[LedgerWrite | str] = []
    for op in ops:
        job_id = op.job_id
        if job_id in flagged:
            out.append(op)
        elif job_id in groups:
            groups[job_id].append(op)
        else:
            groups[job_id] = [op]
            out.append(job_id)
    return [_fold(groups[item]) if isinstance(item, str) else item for item in out]


def _fold(writes: list[LedgerWrite]) -> LedgerWrite:
    if len(writes) == 1:
        return writes[0]
    writes = sorted(writes, key=lambda op: op.seq)
    last = writes[-1]
    # A new write, not the last one changed: a failed flush queues the writes it was given again.
    op = LedgerWrite(
        last.job_id,
        last.queue,
        last.state,
        last.seq,
        last.at_ms,
        last.kind,
        last.topic,
        {k: v for w in writes for k, v in w.fields.items()},
        # Compact only if all are: a full write among them lets the fold create the record.
        last.message if all(w.message is not None for w in writes) else None,
        ",".join(w.history or history_entry(w.state, w.at_ms) for w in writes),
        last.event_json,
        last.event_id,
    )
    for w in writes:
        if w.event_json is not None:
            op.event_json, op.event_id = w.event_json, w.event_id
    return op
