"""The job ledger in the SQLite broker's file: the same writes and reads as the Redis ledger, as SQL.

The same records as :mod:`eventbus.brokers.redis.ledger`. A batch of writes is one ``BEGIN IMMEDIATE``
transaction; each write is applied only if its sequence number is not older than the stored one (a
late "waiting" never overwrites "active").
Tables: see :mod:`eventbus.brokers.sqlite.control_tables`.
"""

from __future__ import annotations

import collections
import json
import random
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from eventbus.brokers.sqlite import control_tables as schema
from eventbus.brokers.sqlite.store import SQLiteStore
from eventbus.clock import now_ms
from eventbus.job_record import JobRecord
from eventbus.ledger import Completion, JobState, LedgerWrite, canonical_queue, history_entry, job_kind, make_full
from eventbus.retention import BUCKET_MS, Retention

_HISTORY_CHARS = 1500
_FAR = 2**62  # "no upper bound" for a score


class SQLiteLedger:
    """Reads and writes the ledger kept in one SQLite file."""

    def __init__(self, store: SQLiteStore, namespace: str, retention: Retention) -> None:
        self.store = store
        self.namespace = namespace
        self.retention = retention
        store.ensure_schema(schema.COMPONENT, schema.MIGRATIONS)
        keep_completed, keep_failed, completed_ms, failed_ms, dead_ms, event_ms = retention.args()
        self._keep = {JobState.COMPLETED.value: keep_completed, JobState.FAILED.value: keep_failed}
        self._age_ms = {JobState.COMPLETED.value: completed_ms, JobState.FAILED.value: failed_ms,
                        JobState.DEAD.value: dead_ms}  # fmt: skip
        self._event_ms = event_ms

    def apply(self, ops: Sequence[LedgerWrite], done: Sequence[Completion] = ()) -> int:
        """Apply writes in order, then completions, in one transaction; returns how many were newer than
        the stored records."""
        if not ops and not done:
            return 0
        applied = 0
        now = now_ms()
        kept: set[tuple[str, str]] = set()
        counts = _Counts()
        completed = JobState.COMPLETED.value
        with self.store.transaction() as conn:
            for op in ops:
                if self._apply_one(conn, op, now, counts):
                    applied += 1
                    if op.state in self._keep:
                        kept.add((op.queue, op.state))
            for c in done:
                queue = self._complete(conn, c, now, counts)
                if queue is None:  # not a live record in an earlier state: the general path decides
                    queue = canonical_queue(c.message.queue_name)
                    if not self._apply_one(conn, c.write(), now, counts):
                        continue
                applied += 1
                kept.add((queue, completed))
            counts.write(conn, now)
            for queue, state in kept:
                _keep_newest(conn, queue, state, self._keep[state])
            if random.random() < 0.02:
                conn.execute("DELETE FROM ctl_processed WHERE bucket < ?", (now // BUCKET_MS - 20,))
        return applied

    def _apply_one(self, conn: sqlite3.Connection, op: LedgerWrite, now: int, counts: _Counts) -> bool:
        if op.event_json is not None:
            conn.execute(
                "INSERT INTO ctl_events (id, data, expires_at) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "data = excluded.data, expires_at = excluded.expires_at WHERE ctl_events.expires_at <= ?",
                (op.event_id, op.event_json, now + self._event_ms, now),
            )
        if op.message is not None and self._apply_compact(conn, op, now, counts):
            return True
        job_id, state, t, seq = op.job_id, op.state, op.at_ms, op.seq
        row = conn.execute(
            "SELECT seq, state, queue, history, fields, expires_at FROM ctl_jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is not None and row[5] is not None and row[5] <= now:  # expired: as if it were gone
            conn.execute("DELETE FROM ctl_jobs WHERE id = ?", (job_id,))
            row = None
        if row is None:
            if op.existing:
                return False
            op = make_full(op)  # a compact write's job has no record yet: create it whole
        elif not op.force and seq < row[0]:
            return False
        store_seq = max(seq, row[0]) if op.force and row is not None else seq
        entry = op.history or history_entry(state, t)
        history = f"{row[3]},{entry}" if row is not None else entry
        if len(history) > _HISTORY_CHARS:
            cut = history.find(",", len(history) - _HISTORY_CHARS - 1)
            history = history[cut + 1 :] if cut >= 0 else history
        # A record's fields are strings only, so orjson reads them exactly, and faster than json.
        fields = orjson.loads(row[4]) if row is not None else {}
        fields.update(op.fields)
        age = self._age_ms.get(state)
        conn.execute(
            "INSERT INTO ctl_jobs (id, queue, state, seq, updated_at, expires_at, fields, history) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET queue = excluded.queue, "
            "state = excluded.state, seq = excluded.seq, updated_at = excluded.updated_at, "
            "expires_at = excluded.expires_at, fields = excluded.fields, history = excluded.history",
            (job_id, op.queue, state, store_seq, t, None if age is None else now + age,
             orjson.dumps(fields).decode(), history),
        )  # fmt: skip
        if row is None:
            counts.queues.add(op.queue)
            if op.kind == "fanout":
                counts.topics[(op.topic, "published")] += 1
        if row is None or row[1] != state:
            counts.finished(op.queue, op.kind, op.topic, state, t)
        return True

    def _apply_compact(self, conn: sqlite3.Connection, op: LedgerWrite, now: int, counts: _Counts) -> bool:
        """A worker's write to a live record it moves on: one UPDATE, its fields merged by SQLite.

        False (nothing written) when the general path must decide: no record, a newer one, one
        already in this state (a duplicate delivery), or a history that needs trimming.
        """
        state, t = op.state, op.at_ms
        if not self._update(conn, op.job_id, state, op.seq, t, op.history or history_entry(state, t),
                            orjson.dumps(op.fields), now):  # fmt: skip
            return False
        counts.finished(op.queue, op.kind, op.topic, state, t)
        return True

    def _complete(self, conn: sqlite3.Connection, c: Completion, now: int, counts: _Counts) -> str | None:
        """:meth:`_apply_compact` of ``c.write()``, applied straight from :meth:`Completion.changes` (most
        writes are these); returns the job's queue, or None when nothing was written."""
        message, t = c.message, c.finished_ms
        seq, f, entry = c.changes()
        if not self._update(conn, message.message_id, "completed", seq, t, entry, orjson.dumps(f), now):
            return None
        queue = canonical_queue(message.queue_name)
        counts.finished(queue, job_kind(message.actor_name), message.options.get("topic") or "", "completed", t)
        return queue

    def _update(self, conn: sqlite3.Connection, job_id: str, state: str, seq: int, t: int, entry: str,
                fields: bytes, now: int) -> bool:  # fmt: skip
        age = self._age_ms.get(state)
        cursor = conn.execute(
            "UPDATE ctl_jobs SET state = ?, seq = ?, updated_at = ?, expires_at = ?, "
            "history = history || ',' || ?, fields = json_patch(fields, ?) "
            "WHERE id = ? AND seq <= ? AND state != ? AND length(history) < ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (state, seq, t, None if age is None else now + age, entry, fields.decode(), job_id, seq, state,
             _HISTORY_CHARS - 100, now),
        )  # fmt: skip
        return cursor.rowcount == 1

    def get(self, job_ids: Iterable[str]) -> list[JobRecord | None]:
        """The records of ``job_ids`` (None where there is none), in one query per 500."""
        ids = list(job_ids)
        found: dict[str, JobRecord] = {}
        now = now_ms()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = self.store.execute(
                f"SELECT id, state, updated_at, fields, history FROM ctl_jobs WHERE id IN ({_marks(chunk)}) "
                "AND (expires_at IS NULL OR expires_at > ?)",
                [*chunk, now],
            )
            for job_id, state, updated_at, fields, history in rows:
                d = json.loads(fields)
                d.update(id=job_id, state=state, updated_at=str(updated_at), history=history)
                found[job_id] = JobRecord.from_fields(d)
        return [found.get(job_id) for job_id in ids]

    def job_ids(self, queue: str, state: JobState, top: float, start: int, num: int) -> list[tuple[str, float]]:
        """(job id, time it entered ``state``) of ``queue``, newest first, at or below ``top``, from ``start``."""
        rows = self.store.execute(
            f"SELECT id, updated_at FROM ctl_jobs WHERE queue = :queue AND state = :state AND updated_at <= :top "
            f"AND {schema.LIVE} ORDER BY updated_at DESC, id DESC LIMIT :num OFFSET :start",
            {"queue": queue, "state": state.value, "top": min(top, _FAR), "now": now_ms(), "num": num,
             "start": start},
        )  # fmt: skip
        return [(row[0], float(row[1])) for row in rows]

    def delete_job(self, job_id: str, queue: str) -> None:
        """Delete one record."""
        self.store.execute("DELETE FROM ctl_jobs WHERE id = ?", (job_id,))

    def trim(self, queue: str, state: JobState, *, older_than_ms: int | None = None, keep: int | None = None) -> int:
        """Remove records of ``queue`` in ``state`` older than the cutoff (epoch ms) or beyond the newest ``keep``."""
        with self.store.transaction() as conn:
            if older_than_ms is not None:  # the upkeep's pass: drop what expired by itself too
                now = now_ms()
                conn.execute("DELETE FROM ctl_jobs WHERE queue = ? AND expires_at <= ?", (queue, now))
                conn.execute(
                    "DELETE FROM ctl_events WHERE id IN (SELECT id FROM ctl_events WHERE expires_at <= ? LIMIT 1000)",
                    (now,),
                )
                return conn.execute(
                    "DELETE FROM ctl_jobs WHERE queue = ? AND state = ? AND updated_at <= ?",
                    (queue, state.value, older_than_ms),
                ).rowcount
            return _keep_newest(conn, queue, state.value, keep or 0)

    def queues(self) -> set[str]:
        """Every queue a job or a process used on this file."""
        return {row[0] for row in self.store.execute("SELECT queue FROM queues")}

    def register_queues(self, queues: Iterable[str]) -> None:
        now = now_ms()
        with self.store.transaction() as conn:
            rows = [(queue, now) for queue in queues]
            conn.executemany("INSERT OR IGNORE INTO queues (queue, declared_at) VALUES (?, ?)", rows)

    def event(self, event_id: str) -> dict[str, Any] | None:
        """A stored published event, or None once past its retention."""
        rows = self.store.execute("SELECT data FROM ctl_events WHERE id = ? AND expires_at > ?", (event_id, now_ms()))
        return dict(json.loads(rows[0][0])) if rows else None


class _Counts:
    """What one batch adds to the queue list and the counters, written once per batch."""

    def __init__(self) -> None:
        self.queues: set[str] = set()
        self.topics: collections.Counter[tuple[str, str]] = collections.Counter()
        self.processed: collections.Counter[tuple[str, int]] = collections.Counter()

    def finished(self, queue: str, kind: str, topic: str, state: str, t: int) -> None:
        """Count a job of ``queue`` that entered ``state`` at ``t`` (only completed and dead count)."""
        if state in ("completed", "dead"):
            self.processed[(queue, t // BUCKET_MS)] += 1
            if kind == "delivery":
                self.topics[(topic, "deliveries" if state == "completed" else "failed")] += 1

    def write(self, conn: sqlite3.Connection, now: int) -> None:
        conn.executemany(
            "INSERT OR IGNORE INTO queues (queue, declared_at) VALUES (?, ?)", [(q, now) for q in self.queues]
        )
        conn.executemany(
            "INSERT INTO ctl_topic_stats (topic, name, n) VALUES (?, ?, ?) "
            "ON CONFLICT(topic, name) DO UPDATE SET n = n + excluded.n",
            [(topic, name, n) for (topic, name), n in self.topics.items()],
        )
        conn.executemany(
            "INSERT INTO ctl_processed (queue, bucket, n) VALUES (?, ?, ?) "
            "ON CONFLICT(queue, bucket) DO UPDATE SET n = n + excluded.n",
            [(queue, bucket, n) for (queue, bucket), n in self.processed.items()],
        )


def _keep_newest(conn: sqlite3.Connection, queue: str, state: str, keep: int) -> int:
    """Delete the oldest records of (queue, state) beyond the newest ``keep``; returns how many."""
    n = int(conn.execute("SELECT COUNT(*) FROM ctl_jobs WHERE queue = ? AND state = ?", (queue, state)).fetchone()[0])
    if n <= keep:
        return 0
    return conn.execute(
        "DELETE FROM ctl_jobs WHERE id IN (SELECT id FROM ctl_jobs WHERE queue = ? AND state = ? "
        "ORDER BY updated_at, id LIMIT ?)",
        (queue, state, n - keep),
    ).rowcount


def _marks(items: Sequence[object]) -> str:
    return ",".join("?" * len(items))
