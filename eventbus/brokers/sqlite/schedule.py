"""Scheduled work on the SQLite broker: list and cancel delayed messages, and the cron registry.

Delayed messages already wait in the file (``messages`` rows whose ``eta`` is ahead, see
:mod:`eventbus.brokers.sqlite.schema`) and are handed out by the consumers once due, so there is
nothing to promote. This module adds what operators need on top (component ``schedule``):

- an index on ``messages.eta`` so listing the schedule never scans the backlog;
- ``schedules``: recurring schedules registered by worker processes (name -> JSON definition);
- ``schedule_runs``: the last tick each schedule published (name -> tick ms).

A row is scheduled while its eta is ahead and no worker holds it: a fetch needs ``visible_at <=
now`` and ``visible_at`` starts at the eta, so such a row was never handed out and deleting it
means it never runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import dramatiq
from dramatiq.common import current_millis

from eventbus.brokers import Message
from eventbus.scheduled import ScheduledEntry

if TYPE_CHECKING:
    from eventbus.brokers.sqlite.broker import SQLiteBroker

COMPONENT = "schedule"

MIGRATIONS = [
    """
    CREATE INDEX IF NOT EXISTS messages_eta ON messages (eta, id) WHERE eta > 0;
    CREATE TABLE IF NOT EXISTS schedules (name TEXT PRIMARY KEY, definition TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS schedule_runs (name TEXT PRIMARY KEY, tick_ms INTEGER NOT NULL) WITHOUT ROWID
    """,
]

_SCHEDULED = "eta > ? AND lease_owner IS NULL"


class SQLiteSchedule:
    """The scheduled-message view of one :class:`SQLiteBroker` (same surface as ``RedisSchedule``)."""

    def __init__(self, broker: SQLiteBroker) -> None:
        self.broker = broker
        self.store = broker.store
        self.store.ensure_schema(COMPONENT, MIGRATIONS)

    def promote(self, limit: int = 1_000) -> list[Message]:
        """Nothing to release: consumers hand out due rows themselves."""
        return []

    def cancel(self, message_id: str) -> bool:
        """Delete a scheduled message; False if it is not scheduled (unknown, already due, or cancelled)."""
        with self.store.transaction() as conn:
            cur = conn.execute(
                f"DELETE FROM messages WHERE message_id = ? AND {_SCHEDULED}", (message_id, current_millis())
            )
            return cur.rowcount > 0

    def count(self) -> int:
        """How many messages wait for their eta."""
        return int(self.store.execute(f"SELECT COUNT(*) FROM messages WHERE {_SCHEDULED}", (current_millis(),))[0][0])

    def counts(self) -> dict[str, int]:
        """Scheduled messages per queue."""
        rows = self.store.execute(
            f"SELECT queue, COUNT(*) FROM messages WHERE {_SCHEDULED} GROUP BY queue", (current_millis(),)
        )
        return {str(queue): int(n) for queue, n in rows}

    def page(self, offset: int, limit: int) -> list[ScheduledEntry]:
        """Scheduled messages by eta (then enqueue order), ``limit`` from ``offset``."""
        rows = self.store.execute(
            f"SELECT message_id, eta, queue, data FROM messages WHERE {_SCHEDULED} ORDER BY eta, id LIMIT ? OFFSET ?",
            (current_millis(), limit, offset),
        )
        out = []
        for message_id, eta, queue, data in rows:
            stored = dramatiq.Message.decode(data).copy(queue_name=str(queue))
            stored.options.pop("eta", None)
            out.append(ScheduledEntry(str(message_id), int(eta), str(queue), stored))
        return out

    # -- recurring schedules (cron) ------------------------------------------------------------

    def register_schedules(self, definitions: Mapping[str, str]) -> None:
        """Record the JSON definitions of the schedules a worker runs (for the control plane)."""
        with self.store.transaction() as conn:
            conn.executemany(
                "INSERT INTO schedules (name, definition) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET definition = excluded.definition",
                list(definitions.items()),
            )

    def schedule_definitions(self) -> dict[str, str]:
        """name -> JSON definition of every schedule a worker registered."""
        return {str(n): str(d) for n, d in self.store.execute("SELECT name, definition FROM schedules")}

    def record_tick(self, name: str, tick_ms: int) -> None:
        """Remember the latest tick ``name`` published (never moves backwards)."""
        self.store.execute(
            "INSERT INTO schedule_runs (name, tick_ms) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET tick_ms = MAX(tick_ms, excluded.tick_ms)",
            (name, tick_ms),
        )

    def last_ticks(self) -> dict[str, int]:
        """name -> the latest tick published."""
        return {str(n): int(t) for n, t in self.store.execute("SELECT name, tick_ms FROM schedule_runs")}
