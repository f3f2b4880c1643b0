"""The job ledger of the memory broker: the same writes and reads as ``SQLiteLedger``, in dicts.

Each write is applied only if its sequence number is not older than the stored one (a late
"waiting" never overwrites "active"); terminal records expire as the retention settings say.
"""

from __future__ import annotations

import collections
import copy
import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eventbus.clock import now_ms
from eventbus.job_record import JobRecord
from eventbus.ledger import Completion, JobState, LedgerWrite, history_entry, make_full
from eventbus.retention import BUCKET_MS, Retention

_HISTORY_CHARS = 1500


@dataclass(slots=True)
class _Record:
    queue: str
    state: str
    seq: int
    updated_at: int
    expires_at: int | None
    fields: dict[str, str]
    history: str


class MemoryLedger:
    """Job records, published events and the counters the control plane reads, in this process."""

    def __init__(self, lock: threading.RLock, retention: Retention) -> None:
        self.lock = lock
        self._retain(retention)
        self._records: dict[str, _Record] = {}
        self._events: dict[str, tuple[str, int]] = {}  # event id -> (JSON, expires at)
        self.known_queues: set[str] = set()
        self.topic_stats: collections.Counter[tuple[str, str]] = collections.Counter()
        self.processed: collections.Counter[tuple[str, int]] = collections.Counter()  # (queue, 5 s bucket)

    def _retain(self, retention: Retention) -> None:
        self.retention = retention
        keep_completed, keep_failed, completed_ms, failed_ms, dead_ms, event_ms = retention.args()
        self._keep = {JobState.COMPLETED.value: keep_completed, JobState.FAILED.value: keep_failed}
        self._age_ms = {JobState.COMPLETED.value: completed_ms, JobState.FAILED.value: failed_ms,
                        JobState.DEAD.value: dead_ms}  # fmt: skip
        self._event_ms = event_ms

    def with_retention(self, retention: Retention) -> MemoryLedger:
        """The same records and counters (shared, never rebound), written with ``retention``: the
        Ledger middleware's settings decide retention, as on the other brokers."""
        view = copy.copy(self)
        view._retain(retention)
        return view

    def apply(self, ops: Sequence[LedgerWrite], done: Sequence[Completion] = ()) -> int:
        """Apply writes in order, then completions, at once; returns how many were newer than the stored records."""
        applied = 0
        now = now_ms()
        kept: set[tuple[str, str]] = set()
        with self.lock:
            for op in [*ops, *(_completed(c) for c in done)]:
                if self._apply_one(op, now):
                    applied += 1
                    if op.state in self._keep:
                        kept.add((op.queue, op.state))
            for queue, state in kept:
                self._keep_newest(queue, state, self._keep[state])
        return applied

    def _apply_one(self, op: LedgerWrite, now: int) -> bool:
        if op.event_json is not None and op.event_id is not None:
            stored = self._events.get(op.event_id)
            if stored is None or stored[1] <= now:
                self._events[op.event_id] = (op.event_json, now + self._event_ms)
        job_id, state, t, seq = op.job_id, op.state, op.at_ms, op.seq
        entry = op.history or history_entry(state, t)
        record = self._live(job_id, now)
        if record is None:
            if op.existing:
                return False
            op = make_full(op)  # a compact write's job has no record yet: create it whole
        elif not op.force and seq < record.seq:
            return False
        history = f"{record.history},{entry}" if record is not None else entry
        if len(history) > _HISTORY_CHARS:
            cut = history.find(",", len(history) - _HISTORY_CHARS - 1)
            history = history[cut + 1 :] if cut >= 0 else history
        fields = dict(record.fields) if record is not None else {}
        fields.update(op.fields)
        store_seq = max(seq, record.seq) if op.force and record is not None else seq
        age = self._age_ms.get(state)
        self._records[job_id] = _Record(
            op.queue, state, store_seq, t, None if age is None else now + age, fields, history
        )
        if record is None:
            self.known_queues.add(op.queue)
            if op.kind == "fanout":
                self.topic_stats[(op.topic, "published")] += 1
        if record is None or record.state != state:
            self._finished(op.queue, op.kind, op.topic, state, t)
        return True

    def _finished(self, queue: str, kind: str, topic: str, state: str, t: int) -> None:
        if state in ("completed", "dead"):
            self.processed[(queue, t // BUCKET_MS)] += 1
            if kind == "delivery":
                self.topic_stats[(topic, "deliveries" if state == "completed" else "failed")] += 1

    def _live(self, job_id: str, now: int) -> _Record | None:
        record = self._records.get(job_id)
        if record is not None and record.expires_at is not None and record.expires_at <= now:
            del self._records[job_id]
            return None
        return record

    def _keep_newest(self, queue: str, state: str, keep: int) -> int:
        ids = [(r.updated_at, i) for i, r in self._records.items() if r.queue == queue and r.state == state]
        if len(ids) <= keep:
            return 0
        for _, job_id in sorted(ids)[: len(ids) - keep]:
            del self._records[job_id]
        return len(ids) - keep

    def get(self, job_ids: Iterable[str]) -> list[JobRecord | None]:
        """The records of ``job_ids`` (None where there is none)."""
        now = now_ms()
        out: list[JobRecord | None] = []
        with self.lock:
            for job_id in job_ids:
                r = self._live(job_id, now)
                if r is None:
                    out.append(None)
                    continue
                d = {**r.fields, "id": job_id, "state": r.state, "updated_at": str(r.updated_at), "history": r.history}
                out.append(JobRecord.from_fields(d))
        return out

    def job_ids(self, queue: str, state: JobState, top: float, start: int, num: int) -> list[tuple[str, float]]:
        """(job id, time it entered ``state``) of ``queue``, newest first, at or below ``top``, from ``start``."""
        now = now_ms()
        with self.lock:
            found = [
                (float(r.updated_at), job_id)
                for job_id, r in self._records.items()
                if r.queue == queue and r.state == state.value and r.updated_at <= top
                and (r.expires_at is None or r.expires_at > now)
            ]  # fmt: skip
        found.sort(reverse=True)
        return [(job_id, at) for at, job_id in found[start : start + num]]

    def state_counts(self, now: int) -> collections.Counter[tuple[str, str]]:
        """(queue, state) -> how many live records."""
        with self.lock:
            return collections.Counter(
                (r.queue, r.state) for r in self._records.values() if r.expires_at is None or r.expires_at > now
            )

    def delete_job(self, job_id: str, queue: str) -> None:
        """Delete one record."""
        with self.lock:
            self._records.pop(job_id, None)

    def trim(self, queue: str, state: JobState, *, older_than_ms: int | None = None, keep: int | None = None) -> int:
        """Remove records of ``queue`` in ``state`` older than the cutoff (epoch ms) or beyond the newest ``keep``."""
        with self.lock:
            if older_than_ms is None:
                return self._keep_newest(queue, state.value, keep or 0)
            now = now_ms()
            for event_id in [i for i, (_, at) in self._events.items() if at <= now]:
                del self._events[event_id]
            for job_id in [i for i, r in self._records.items() if r.queue == queue]:
                self._live(job_id, now)  # the upkeep's pass: drop what expired by itself too
            gone = [i for i, r in self._records.items()
                    if r.queue == queue and r.state == state.value and r.updated_at <= older_than_ms]  # fmt: skip
            for job_id in gone:
                del self._records[job_id]
            return len(gone)

    def queues(self) -> set[str]:
        """Every queue a job or a process used."""
        with self.lock:
            return set(self.known_queues)

    def register_queues(self, queues: Iterable[str]) -> None:
        with self.lock:
            self.known_queues.update(queues)

    def event(self, event_id: str) -> dict[str, Any] | None:
        """A stored published event, or None once past its retention."""
        with self.lock:
            stored = self._events.get(event_id)
        return dict(json.loads(stored[0])) if stored is not None and stored[1] > now_ms() else None


def _completed(c: Completion) -> LedgerWrite:
    """A completion's write; a fan-out's keeps its event for replay (as its active write would have)."""
    op = c.write()
    event = c.message.kwargs.get("event") if isinstance(c.message.kwargs, dict) else None
    if op.kind == "fanout" and isinstance(event, dict) and "id" in event:
        op.keep_event(event)
    return op
