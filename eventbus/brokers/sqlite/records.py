"""Email send records on the SQLite broker, in the broker's file (component ``mail_records``).

The same record as on Redis (:mod:`eventbus.mail.record`): one row per idempotency key in
``mail_sends`` (its fields as JSON, like the Redis hash, plus the state and an expiry), and the
counters in ``mail_stats``. Every step is one ``BEGIN IMMEDIATE`` transaction, so claiming a record
(pending -> connecting) is atomic across every process on the file. The worker's async path runs
each step in a thread, so a busy file never blocks the worker's event loop.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Sequence

from eventbus.brokers.sqlite.store import SQLiteStore
from eventbus.clock import now_ms
from eventbus.send_record import SendRecord, SendState

COMPONENT = "mail_records"

MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS mail_sends (
        key TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        fields TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS mail_sends_expiry ON mail_sends (expires_at);
    CREATE TABLE IF NOT EXISTS mail_stats (counter TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID
    """,
]

_COUNT = "INSERT INTO mail_stats (counter, n) VALUES (?, 1) ON CONFLICT(counter) DO UPDATE SET n = n + 1"


class SQLiteRecords:
    """Send records in the SQLite broker's file (same surface as ``RedisRecords``)."""

    def __init__(self, store: SQLiteStore, ttl_s: int) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.store.ensure_schema(COMPONENT, MIGRATIONS)

    def create_pending(self, rows: Sequence[tuple[str, dict[str, str]]]) -> list[SendState | None]:
        """Create records that do not exist yet (publisher side); returns the prior state of each (None: new)."""
        out: list[SendState | None] = []
        if not rows:
            return out
        with self.store.transaction() as conn:
            now = now_ms()
            for key, fields in rows:
                old = _read(conn, key, now)
                if old is not None:
                    out.append(SendState(old["state"]))
                    continue
                _write(conn, key, fields, now + self.ttl_s * 1000)
                out.append(None)
            if random.random() < 0.01:
                conn.execute(
                    "DELETE FROM mail_sends WHERE key IN (SELECT key FROM mail_sends WHERE expires_at <= ? LIMIT 1000)",
                    (now,),
                )
        return out

    def get(self, key: str) -> SendRecord | None:
        """The record for ``key``, if any."""
        rows = self.store.execute("SELECT fields FROM mail_sends WHERE key = ? AND expires_at > ?", (key, now_ms()))
        return SendRecord.from_hash(key, json.loads(rows[0][0])) if rows else None

    def stats(self) -> dict[str, int]:
        """Counters: sent, failed, retried, skipped, uncertain."""
        return {str(c): int(n) for c, n in self.store.execute("SELECT counter, n FROM mail_stats")}

    def reset(self, key: str) -> SendRecord | None:
        """Set a record back to pending, keeping what it says was accepted; returns it as it was (None: missing)."""
        with self.store.transaction() as conn:
            now = now_ms()
            old = _read(conn, key, now)
            if old is None:
                return None
            _write(
                conn,
                key,
                {**old, "state": SendState.PENDING.value, "code": "", "text": "", "updated_ms": str(now)},
                None,
            )
        return SendRecord.from_hash(key, old)

    async def aclose(self) -> None:
        """Nothing to close: the broker owns the file's connections."""


def _read(conn: sqlite3.Connection, key: str, now: int) -> dict[str, str] | None:
    row = conn.execute("SELECT fields FROM mail_sends WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
    return dict(json.loads(row[0])) if row else None


def _write(conn: sqlite3.Connection, key: str, fields: dict[str, str], expires_at: int | None) -> None:
    """Upsert a record; ``expires_at`` None keeps the row's expiry."""
    conn.execute(
        "INSERT INTO mail_sends (key, state, fields, expires_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(key) DO UPDATE SET state = excluded.state, fields = excluded.fields, "
        "expires_at = COALESCE(?, mail_sends.expires_at)",
        (key, fields.get("state", SendState.PENDING.value), json.dumps(fields), expires_at or 0, expires_at),
    )
