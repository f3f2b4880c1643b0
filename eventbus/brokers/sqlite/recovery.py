"""Poison detection on the SQLite broker: a message that keeps killing its worker is dead-lettered.

Leases already bring back the messages of a dead worker (:mod:`eventbus.brokers.sqlite.broker`). What this
adds (component ``recovery``, table ``message_runs``) is the count Redis keeps too: the worker marks
a row *started* when a thread begins running it (prefetched rows are not marked). A row that is
fetched again while still marked was running when its holder died: that is one lost delivery. At
``max_lost_deliveries`` the fetch moves it to ``dead_letters`` with reason ``worker_lost`` instead
of handing it out again. Suspects below that come back one at a time (``suspect_spread_ms`` apart),
so innocent jobs that happened to run beside a poison message do not die with it again and again.
Marks and acks of all worker threads are group-committed (one transaction per batch); an ack and
a nack drop the row's mark in the transaction that removes the row.

A job does not wait for its mark (waiting for a commit before every job start costs the worker
much CPU per job, most of it threads handing the lock to each other), except a *careful*
one: a row fetched while it still names a lease owner (its worker stopped renewing the lease
without finishing it) or while a mark of it is stored. Its thread writes the mark before running
it. So a message that kills its worker within milliseconds of starting, before its mark is
written, is counted from its second run on: it is dead-lettered after at most
``max_lost_deliveries + 1`` runs, as on Redis.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from dramatiq.common import current_millis

from eventbus.stores import Recovered

if TYPE_CHECKING:
    from eventbus.brokers.sqlite.broker import SQLiteBroker

COMPONENT = "recovery"

MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS message_runs (
        row_id INTEGER PRIMARY KEY,
        started_at INTEGER,
        lost INTEGER NOT NULL DEFAULT 0
    )
    """,
]

_FORGET = "DELETE FROM message_runs WHERE row_id = ?"
_PURGE = "DELETE FROM message_runs WHERE row_id NOT IN (SELECT id FROM messages)"


def remove_rows(conn: sqlite3.Connection, row_ids: Sequence[int]) -> None:
    """Inside a write transaction: delete message rows (acked, dead-lettered) and their start marks."""
    rows = [(row_id,) for row_id in row_ids]
    conn.executemany("DELETE FROM messages WHERE id = ?", rows)
    conn.executemany(_FORGET, rows)


class SQLiteRecovery:
    """Started marks and lost-delivery counts of one :class:`SQLiteBroker`'s messages."""

    def __init__(self, broker: SQLiteBroker) -> None:
        self.broker = broker
        self.store = broker.store
        self.store.ensure_schema(COMPONENT, MIGRATIONS)

    def mark_started(self, message: Any) -> None:
        """Called when a worker thread begins running ``message`` (a row this process leased).

        Group-committed with this process's other marks and acks (see :mod:`eventbus.brokers.group_commit`);
        stored before returning only for a ``careful`` message (the fetch said a worker held it before).
        """
        self.broker.writes.mark_started(message.row_id, wait=message.careful)

    def beat(self, ttl_ms: int, leases: Iterable[tuple[str, str]]) -> None:
        """Renew this process's concurrency leases (liveness is the leases of its rows)."""
        self.broker.limits.renew(list(leases), ttl_ms)

    def recover(self, *, timeout_s: float, max_lost: int, suspect_spread_ms: int) -> Recovered:
        """Nothing to do here: a dead worker's leases expire and its rows come back by themselves;
        a row that kept killing its worker is dead-lettered when it is fetched again."""
        return Recovered(recovered=0, dead_workers=0, poisoned=[])

    def write_marks(self, conn: sqlite3.Connection, row_ids: Sequence[int]) -> None:
        """Inside a write transaction: mark ``row_ids`` started now."""
        now = current_millis()
        conn.executemany(
            "INSERT INTO message_runs (row_id, started_at) VALUES (?, ?) "
            "ON CONFLICT(row_id) DO UPDATE SET started_at = excluded.started_at",
            [(row_id, now) for row_id in row_ids],
        )
        if random.random() < 0.01:  # marks of rows removed without an ack (flush, cancel, clean-up)
            conn.execute(_PURGE)

    def count_lost(self, conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, int]:
        """Inside the fetch transaction: count a lost delivery for each of ``ids`` still marked started.

        Returns ``{row_id: lost}`` of those suspects (the caller dead-letters or spreads them).
        """
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = conn.execute(
            f"UPDATE message_runs SET started_at = NULL, lost = lost + 1 "
            f"WHERE row_id IN ({marks}) AND started_at IS NOT NULL RETURNING row_id, lost",
            list(ids),
        ).fetchall()
        return {int(row_id): int(lost) for row_id, lost in rows}
