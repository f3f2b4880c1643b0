"""Global rate limits and concurrency caps on the SQLite broker, shared by every process on the file.

The same algorithms as :mod:`eventbus.brokers.redis.limits`, each step one short ``BEGIN IMMEDIATE``
transaction (the file's write lock makes it atomic across processes; every process on a host reads
the same clock):

- rate limit (``rate_limits``): GCRA "reserve the next slot": ``tat = max(tat, now)``, the caller
  sleeps ``tat - now`` and ``tat`` moves on by one interval; a wait longer than ``max_wait_ms``
  reserves nothing.
- concurrency cap (``cap_leases``): one row per held slot with an expiry; acquiring drops expired
  rows of the queue and adds one if fewer than the cap remain. The holder renews its leases with
  its heartbeat, so the slots of a killed worker free themselves when their lease runs out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventbus.clock import now_ms, precise_ms

if TYPE_CHECKING:
    from eventbus.brokers.sqlite.broker import SQLiteBroker

COMPONENT = "limits"

MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS rate_limits (queue TEXT PRIMARY KEY, tat_ms REAL NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS cap_leases (
        queue TEXT NOT NULL,
        token TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (queue, token)
    ) WITHOUT ROWID
    """,
]


class SQLiteLimits:
    """Rate-limit reservations and concurrency leases for one :class:`SQLiteBroker` (same surface as Redis)."""

    def __init__(self, broker: SQLiteBroker) -> None:
        self.store = broker.store
        self.store.ensure_schema(COMPONENT, MIGRATIONS)

    def reserve(self, queue: str, interval_ms: float, max_wait_ms: float) -> tuple[bool, float]:
        """Reserve the next start slot: ``(True, wait_ms)`` to sleep, or ``(False, wait_ms)`` if too far off."""
        with self.store.transaction() as conn:
            now = precise_ms()
            row = conn.execute("SELECT tat_ms FROM rate_limits WHERE queue = ?", (queue,)).fetchone()
            tat = max(float(row[0]) if row else 0.0, now)
            wait = tat - now
            if wait > max_wait_ms:
                return False, wait
            conn.execute(
                "INSERT INTO rate_limits (queue, tat_ms) VALUES (?, ?) "
                "ON CONFLICT(queue) DO UPDATE SET tat_ms = excluded.tat_ms",
                (queue, tat + interval_ms),
            )
        return True, wait

    def acquire(self, queue: str, limit: int, token: str, ttl_ms: int) -> bool:
        """Take one of ``limit`` slots of ``queue`` for ``ttl_ms`` (renew with :meth:`renew`)."""
        with self.store.transaction() as conn:
            now = now_ms()
            conn.execute("DELETE FROM cap_leases WHERE queue = ? AND expires_at <= ?", (queue, now))
            held = int(conn.execute("SELECT COUNT(*) FROM cap_leases WHERE queue = ?", (queue,)).fetchone()[0])
            if held >= limit:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO cap_leases (queue, token, expires_at) VALUES (?, ?, ?)",
                (queue, token, now + ttl_ms),
            )
        return True

    def release(self, queue: str, token: str) -> None:
        """Give a slot back."""
        self.store.execute("DELETE FROM cap_leases WHERE queue = ? AND token = ?", (queue, token))

    def renew(self, leases: list[tuple[str, str]], ttl_ms: int, pipe: object | None = None) -> None:
        """Extend held leases ``(queue, token)`` (``pipe`` is accepted for the Redis signature and ignored)."""
        if not leases:
            return
        expires_at = now_ms() + ttl_ms
        with self.store.transaction() as conn:
            conn.executemany(
                "UPDATE cap_leases SET expires_at = ? WHERE queue = ? AND token = ?",
                [(expires_at, queue, token) for queue, token in leases],
            )

    def running(self, queue: str) -> int:
        """How many slots of ``queue`` are held right now (expired leases excluded)."""
        rows = self.store.execute(
            "SELECT COUNT(*) FROM cap_leases WHERE queue = ? AND expires_at > ?", (queue, now_ms())
        )
        return int(rows[0][0])
