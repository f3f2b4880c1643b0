"""The control plane's store on the SQLite broker: the ledger's tables plus the broker's own.

Waiting and delayed counts, payloads, dead letters and the paused set are read from the broker's
tables (``messages``, ``dead_letters``, ``paused``, ``queues``); a dead letter's broker id is its
row id. Taking dead letters is one transaction, so two operators never requeue the same one twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.common import current_millis

from eventbus.brokers.sqlite.ledger import SQLiteLedger
from eventbus.clock import now_ms
from eventbus.delivery import EVENTS_QUEUE
from eventbus.job_record import JobRecord
from eventbus.ledger import JobState
from eventbus.priority import Priority
from eventbus.reports import HealthCheck, QueueDepth, QueueStats, Stats, WorkerInfo, stats_of
from eventbus.retention import BUCKET_MS, Retention
from eventbus.settings import Settings
from eventbus.stores import DeadRow

if TYPE_CHECKING:
    from eventbus.brokers.sqlite.broker import SQLiteBroker

PROBE_TIMEOUT_S = 1.0
_FAR = 2**62


class SQLiteControlStore(SQLiteLedger):
    """The control plane's reads and writes in one SQLite broker file."""

    def __init__(self, broker: SQLiteBroker, settings: Settings) -> None:
        super().__init__(broker.store, broker.namespace, Retention.from_settings(settings))
        self.broker = broker

    # -- messages -----------------------------------------------------------------------------

    def message_data(self, record: JobRecord) -> bytes | None:
        table = "dead_letters" if record.state == JobState.DEAD else "messages"
        if record.state not in (JobState.WAITING, JobState.ACTIVE, JobState.DELAYED, JobState.RETRYING, JobState.DEAD):
            return None
        rows = self.store.execute(
            f"SELECT data FROM {table} WHERE message_id = ? AND queue = ? ORDER BY id DESC LIMIT 1",
            (record.id, record.queue),
        )
        return bytes(rows[0][0]) if rows else None

    def waiting_event_data(self, job_id: str) -> bytes | None:
        rows = self.store.execute(
            "SELECT data FROM messages WHERE message_id = ? AND queue = ? LIMIT 1", (job_id, EVENTS_QUEUE)
        )
        return bytes(rows[0][0]) if rows else None

    def remove_waiting(self, record: JobRecord) -> bool | None:
        with self.store.transaction() as conn:
            removed = conn.execute(
                "DELETE FROM messages WHERE message_id = ? AND queue = ? AND lease_owner IS NULL",
                (record.id, record.queue),
            ).rowcount
        return removed > 0

    # -- stats, pause -------------------------------------------------------------------------

    def stats(self, local_queues: Sequence[str]) -> Stats:
        at = now_ms()
        conn = self.store.connection()
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN")  # one read snapshot for every count (a reader never waits in WAL mode)
        try:
            names = {row[0] for row in conn.execute("SELECT queue FROM queues")} | set(local_queues)
            counts: dict[str, dict[str, int]] = {q: {} for q in names}

            def add(sql: str, params: Any, *columns: str) -> None:
                for queue, *values in conn.execute(sql, params):
                    row = counts.setdefault(queue, {})
                    for column, value in zip(columns, values):
                        row[column] = row.get(column, 0) + int(value or 0)

            add(
                "SELECT queue, SUM(lease_owner IS NULL AND eta <= ?), SUM(lease_owner IS NULL AND eta > ?) "
                "FROM messages GROUP BY queue",
                (at, at),
                "waiting",
                "delayed",
            )
            add(
                "SELECT queue, SUM(state = 'active'), SUM(state = 'completed'), SUM(state = 'failed') FROM ctl_jobs "
                "WHERE state IN ('active', 'completed', 'failed') AND (expires_at IS NULL OR expires_at > ?) "
                "GROUP BY queue",
                (at,),
                "active",
                "completed",
                "failed",
            )
            add("SELECT queue, COUNT(*) FROM dead_letters GROUP BY queue", (), "dead")
            add("SELECT queue, 1 FROM paused", (), "paused")
            add(
                "SELECT queue, SUM(n) FROM ctl_processed WHERE bucket > ? GROUP BY queue",
                (at // BUCKET_MS - 12,),
                "processed",
            )
            topics: dict[str, dict[str, int]] = {}
            for topic, name, n in conn.execute("SELECT topic, name, n FROM ctl_topic_stats"):
                topics.setdefault(topic, {})[name] = int(n)
        finally:
            if own:
                conn.execute("COMMIT")
        queues = [
            QueueStats(
                queue=q,
                waiting=c.get("waiting", 0),
                active=c.get("active", 0),
                delayed=c.get("delayed", 0),
                completed=c.get("completed", 0),
                failed=c.get("failed", 0),
                dead=c.get("dead", 0),
                paused=bool(c.get("paused")),
                processed_last_minute=c.get("processed", 0),
            )
            for q, c in counts.items()
        ]
        return stats_of(queues, topics, at)

    def pause(self, queue: str) -> None:
        self.broker.pause(queue)

    def resume(self, queue: str) -> None:
        self.broker.resume(queue)

    def paused(self) -> set[str]:
        return self.broker.paused_queues()

    # -- dead letters -------------------------------------------------------------------------

    def dead_rows(self, queue: str, top: float, start: int, num: int) -> list[DeadRow]:
        rows = self.store.execute(
            "SELECT id, dead_at, data FROM dead_letters WHERE queue = ? AND dead_at <= ? "
            "ORDER BY dead_at DESC, id DESC LIMIT ? OFFSET ?",
            (queue, min(top, _FAR), num, start),
        )
        return [(str(row_id), float(dead_at), bytes(data)) for row_id, dead_at, data in rows]

    def locate_dead(self, job_id: str, queues: Sequence[str]) -> tuple[str, str, bytes] | None:
        rows = self.store.execute(
            "SELECT queue, id, data FROM dead_letters WHERE message_id = ? ORDER BY id DESC LIMIT 1", (job_id,)
        )
        return (rows[0][0], str(rows[0][1]), bytes(rows[0][2])) if rows else None

    def dead_score(self, queue: str, broker_id: str) -> float:
        rows = self.store.execute("SELECT dead_at FROM dead_letters WHERE id = ?", (int(broker_id),))
        return float(rows[0][0]) if rows else 0.0

    def take_dead(self, queue: str, broker_ids: Sequence[str]) -> list[bytes]:
        ids = [int(i) for i in broker_ids]
        out: list[bytes] = []
        with self.store.transaction() as conn:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                out.extend(_take(conn, f"queue = ? AND id IN ({','.join('?' * len(chunk))})", [queue, *chunk]))
        return out

    def take_dead_older(self, queue: str, cutoff_ms: int) -> list[bytes]:
        with self.store.transaction() as conn:
            return _take(conn, "queue = ? AND dead_at <= ? ORDER BY dead_at LIMIT 500", [queue, cutoff_ms])

    def put_back_dead(self, queue: str, datas: Sequence[bytes]) -> None:
        now = current_millis()
        with self.store.transaction() as conn:
            for data in datas:
                message = dramatiq.Message.decode(data)
                conn.execute(
                    "INSERT INTO dead_letters (queue, message_id, dead_at, error, data) VALUES (?, ?, ?, ?, ?)",
                    (queue, message.message_id, now, message.options.get("error"), data),
                )

    # -- workers, subscriptions, locks, health ------------------------------------------------

    def heartbeat(self, worker: str, at_ms: int) -> None:
        self.store.execute(
            "INSERT INTO ctl_workers (name, last_seen) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET last_seen = excluded.last_seen",
            (worker, at_ms),
        )

    def forget_worker(self, worker: str) -> None:
        self.store.execute("DELETE FROM ctl_workers WHERE name = ?", (worker,))

    def prune_workers(self, before_ms: int) -> None:
        self.store.execute("DELETE FROM ctl_workers WHERE last_seen < ?", (before_ms,))

    def live_workers(self, since_ms: int) -> list[WorkerInfo]:
        rows = self.store.execute(
            "SELECT name, last_seen FROM ctl_workers WHERE last_seen >= ? ORDER BY last_seen", (since_ms,)
        )
        return [WorkerInfo(name, int(seen)) for name, seen in rows]

    def register_subscriptions(self, subscriptions: Mapping[str, str]) -> None:
        with self.store.transaction() as conn:
            conn.executemany(
                "INSERT INTO ctl_subscriptions (name, data) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET data = excluded.data",
                list(subscriptions.items()),
            )

    def subscription(self, name: str) -> str | None:
        rows = self.store.execute("SELECT data FROM ctl_subscriptions WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def try_lock(self, name: str, owner: str, ttl_ms: int) -> bool:
        now = now_ms()
        with self.store.transaction() as conn:
            taken = conn.execute(
                "INSERT INTO ctl_locks (name, owner, expires_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "owner = excluded.owner, expires_at = excluded.expires_at WHERE ctl_locks.expires_at <= ?",
                (name, owner, now + ttl_ms, now),
            ).rowcount
        return taken > 0

    def depths(self, queues: Sequence[str]) -> tuple[list[QueueDepth], int | None]:
        """Every queue's counts from the file, in one grouped read (ready: visible rows; unacked: leased;
        scheduled: eta ahead); no live worker count (a worker's liveness is its leases)."""
        levels = {p.rank: p.value for p in Priority}
        rows = self.store.execute(
            "SELECT queue, rank, CASE WHEN visible_at <= ? THEN 'ready' WHEN lease_owner IS NOT NULL "
            "THEN 'unacked' ELSE 'scheduled' END, COUNT(*) FROM messages GROUP BY 1, 2, 3",
            (current_millis(),),
        )
        counts: dict[tuple[str, str], int] = {}
        ready: dict[str, dict[str, int]] = {q: dict.fromkeys(levels.values(), 0) for q in queues}
        for queue, rank, state, n in rows:
            if state == "ready" and queue in ready:
                ready[queue][levels.get(int(rank), Priority.NORMAL.value)] += int(n)
            counts[(queue, state)] = counts.get((queue, state), 0) + int(n)
        depths = [
            QueueDepth(q, ready[q], counts.get((q, "unacked"), 0), counts.get((q, "scheduled"), 0)) for q in queues
        ]
        return depths, None

    def probe(self) -> list[HealthCheck]:
        """The file opens read-only within 1 s and answers a query on the broker's tables; WAL is on."""
        path = self.store.path
        try:
            conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=PROBE_TIMEOUT_S)
            try:
                conn.execute("SELECT 1 FROM messages LIMIT 1").fetchall()
                mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            reason = f"broker unreachable: cannot read {path} ({exc}); check EVENTBUS_BROKER_URL and file permissions"
            return [HealthCheck("broker", False, reason)]
        wal = HealthCheck(
            "journal_mode",
            mode == "wal",
            f"journal_mode {mode}" + ("" if mode == "wal" else "; workers and publishers need WAL: use a local disk"),
        )
        return [HealthCheck("broker", True, f"reachable ({path})"), wal]


def _take(conn: sqlite3.Connection, where: str, params: list[Any]) -> list[bytes]:
    rows = conn.execute(f"SELECT id, data FROM dead_letters WHERE {where}", params).fetchall()
    if rows:
        ids = [row[0] for row in rows]
        conn.execute(f"DELETE FROM dead_letters WHERE id IN ({','.join('?' * len(ids))})", ids)
    return [bytes(row[1]) for row in rows]
