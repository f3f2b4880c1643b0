"""The outbox: messages the broker could not take wait in a local SQLite file until it is back.

With ``EVENTBUS_OUTBOX=/var/lib/app/outbox.db`` set, a ``publish_event``, ``send_email``,
``send_bulk_email`` or ``notify`` that hits a broker error writes its Dramatiq messages to that
file and returns normally (each message keeps its id, options and priority; an event keeps its
published_at). A relay drains the file in order once the broker answers again: inside every worker
process (a thread started by :class:`eventbus.middleware.outbox.OutboxRelay`) and as
``eventbus outbox relay``.

No duplicates: each row holds the once-key its sender uses (``event:<id>``, ``mail:<key>``,
``mail:chunk:<job id>``, ``notify:<job id>``); the relay enqueues with it, then deletes the row, so a
row relayed twice (a crash between the enqueue and the delete, or a send that timed out on the
client but reached the broker) is skipped by the broker. Past the dedup window, the fan-out's
once-keys and the emails' send records cover the rest. Order: once this process has written to the
outbox, its later sends go there too until the outbox is drained, so they cannot overtake.

One file serves every process on the host (give an absolute path, so publishers and workers
started from other directories open the same file); one relay at a time holds a short lease on it.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import dramatiq
import redis
from dramatiq.common import current_millis

from eventbus.brokers import BusBroker, Message
from eventbus.brokers.sqlite.store import SQLiteStore
from eventbus.errors import PublishError, StoreBusy
from eventbus.settings import Settings, get_settings

logger = logging.getLogger("eventbus.outbox")

COMPONENT = "outbox"
MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        eta_ms INTEGER,
        created_at INTEGER NOT NULL,
        error TEXT,
        data BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS outbox_relay (
        name TEXT PRIMARY KEY, owner TEXT NOT NULL, until_ms INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    # Rows hold any message (events, email and notification jobs) and the once-key it is relayed with;
    # rows of the first version were events, relayed with ``event:<event id>``.
    """
    CREATE TABLE outbox_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        actor TEXT NOT NULL,
        once_key TEXT,
        eta_ms INTEGER,
        created_at INTEGER NOT NULL,
        error TEXT,
        data BLOB NOT NULL
    );
    INSERT INTO outbox_messages (id, queue, actor, once_key, eta_ms, created_at, error, data)
        SELECT id, 'events', 'eventbus.fanout', 'event:' || event_id, eta_ms, created_at, error, data
        FROM outbox ORDER BY id;
    DROP TABLE outbox;
    ALTER TABLE outbox_messages RENAME TO outbox
    """,
]

BATCH = 500
LEASE_MS = 10_000
# What a broker raises when it cannot take messages now (the outbox then keeps them).
BROKER_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, sqlite3.Error, StoreBusy)


def write_advice(exc: Exception, what: str) -> str:
    """How to fix a failed write: a broker on a full (or failing) disk needs space, not a restart."""
    if isinstance(exc, redis.ResponseError) and "MISCONF" in str(exc):
        return (
            "Redis refuses writes because it cannot write its own files (is its disk full?): free space "
            "where Redis keeps them; it takes writes again within a second of its next successful write"
        )
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
        return "the disk holding the SQLite file is full: free space on it, then send again"
    if code is not None and code & 0xFF == sqlite3.SQLITE_IOERR:
        return (
            "the SQLite file could not be written: is its disk full, past a file-size limit (ulimit -f) "
            "or failing? Free space or raise the limit, then send again"
        )
    return (
        "is the broker running? (EVENTBUS_BROKER_URL / REDIS_URL; "
        f"set EVENTBUS_OUTBOX to keep {what} in a local file while it is down)"
    )


BEHIND = "queued behind earlier outbox messages"

_CLAIM = (
    "INSERT INTO outbox_relay (name, owner, until_ms) VALUES ('relay', ?, ?) "
    "ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms "
    "WHERE outbox_relay.owner = excluded.owner OR outbox_relay.until_ms <= ?"
)
_PUT = "INSERT INTO outbox (queue, actor, once_key, eta_ms, created_at, error, data) VALUES (?, ?, ?, ?, ?, ?, ?)"


class Outbox:
    """One outbox file (shared by every process on the host)."""

    def __init__(self, path: str | Path) -> None:
        self.store = SQLiteStore(path)
        self.store.ensure_schema(COMPONENT, MIGRATIONS)
        self.path = self.store.path
        # Set when this process wrote here: its next sends follow until the outbox is empty.
        self.pending_here = False

    def put(
        self, messages: Sequence[Message], once_keys: Sequence[str | None], *, delay_ms: int | None, error: str
    ) -> None:
        """Keep ``messages`` (as built for the broker, each with its once-key) until the relay sends them."""
        now = current_millis()
        eta = None if delay_ms is None else now + delay_ms
        rows = [
            (m.queue_name, m.actor_name, key, eta, now, error[:500], m.encode()) for m, key in zip(messages, once_keys)
        ]
        with self.store.transaction() as conn:
            conn.executemany(_PUT, rows)
        self.pending_here = True

    def depth(self) -> int:
        """Messages waiting to be relayed."""
        return int(self.store.execute("SELECT COUNT(*) FROM outbox")[0][0])

    def oldest_age_s(self) -> float | None:
        """Seconds the oldest waiting message has waited (None when empty)."""
        oldest = self.store.execute("SELECT MIN(created_at) FROM outbox")[0][0]
        return None if oldest is None else max(0.0, (current_millis() - int(oldest)) / 1000)

    def by_queue(self) -> dict[str, int]:
        """Messages waiting per queue (``events``, ``email``, ``notifications``)."""
        rows = self.store.execute("SELECT queue, COUNT(*) FROM outbox GROUP BY queue ORDER BY queue")
        return {str(queue): int(n) for queue, n in rows}

    def still_pending(self) -> bool:
        """True while messages this process wrote may still wait (then new sends queue behind them)."""
        if self.pending_here and not self.store.execute("SELECT 1 FROM outbox LIMIT 1"):
            self.pending_here = False
        return self.pending_here

    def claim(self, owner: str) -> bool:
        """Take or renew the relay lease; False while another live relay holds it."""
        now = current_millis()
        with self.store.transaction() as conn:
            return conn.execute(_CLAIM, (owner, now + LEASE_MS, now)).rowcount > 0

    def release(self, owner: str) -> None:
        """Give the lease up (on shutdown) so another relay takes over at once."""
        self.store.execute("DELETE FROM outbox_relay WHERE name = 'relay' AND owner = ?", (owner,))

    def relay_batch(self, broker: dramatiq.Broker, *, dedup_ttl_s: int, limit: int = BATCH) -> int:
        """Send up to ``limit`` of the oldest messages to ``broker`` in order; returns how many.

        Raises the broker's error when it cannot take them (nothing is deleted then).
        """
        rows = self.store.execute("SELECT id, once_key, eta_ms, data FROM outbox ORDER BY id LIMIT ?", (limit,))
        bus = cast(BusBroker, broker)
        i = 0
        while i < len(rows):
            now = current_millis()
            eta = rows[i][2]
            if eta is not None and eta > now:  # a delayed message keeps its due time
                group, delay_ms = rows[i : i + 1], int(eta - now)
            else:
                j = i
                while j < len(rows) and (rows[j][2] is None or rows[j][2] <= now):
                    j += 1
                group, delay_ms = rows[i:j], None
            messages = [dramatiq.Message.decode(row[3]) for row in group]
            keys: list[str | None] = [row[1] for row in group]
            bus.enqueue_many(messages, delay_ms=delay_ms, once_keys=keys, once_ttl_s=dedup_ttl_s)
            ids = [row[0] for row in group]
            self.store.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(ids))})", ids)
            i += len(group)
        return len(rows)

    def drain(self, broker: dramatiq.Broker, *, dedup_ttl_s: int, owner: str | None = None) -> int:
        """Relay batches until the outbox is empty (renewing the lease of ``owner``); returns how many."""
        total = 0
        while True:
            if owner is not None and not self.claim(owner):
                return total
            sent = self.relay_batch(broker, dedup_ttl_s=dedup_ttl_s)
            total += sent
            if sent < BATCH:
                return total


class Relay:
    """A daemon thread draining the outbox whenever it has rows and the broker answers."""

    def __init__(self, outbox: Outbox, broker: dramatiq.Broker, *, dedup_ttl_s: int, interval_s: float = 0.5) -> None:
        self.outbox = outbox
        self.broker = broker
        self.dedup_ttl_s = dedup_ttl_s
        self.interval_s = interval_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.relayed = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="eventbus-outbox-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        try:
            self.outbox.release(self.owner)
        except Exception:  # the file may be gone at shutdown; the lease then simply expires
            logger.debug("outbox relay: could not release the lease", exc_info=True)

    def run_once(self) -> int:
        """Drain now if there is anything and this relay holds the lease; returns messages relayed."""
        if not self.outbox.store.execute("SELECT 1 FROM outbox LIMIT 1"):
            return 0
        return self.outbox.drain(self.broker, dedup_ttl_s=self.dedup_ttl_s, owner=self.owner)

    def _run(self) -> None:
        failing_since: float | None = None
        while not self._stop.is_set():
            try:
                sent = self.run_once()
                if sent:
                    self.relayed += sent
                    logger.info("outbox relay: sent %d message(s) to the broker", sent)
                if failing_since is not None:
                    logger.warning(
                        "outbox relay: broker reachable again after %.1f s", time.monotonic() - failing_since
                    )
                    failing_since = None
            except Exception as exc:  # keep relaying: the broker (or the file) may come back
                if failing_since is None:
                    failing_since = time.monotonic()
                    logger.warning(
                        "outbox relay: %s: %s; retrying every %.1f s", type(exc).__name__, exc, self.interval_s
                    )
            self._stop.wait(self.interval_s)


_outboxes: dict[str, Outbox] = {}
_lock = threading.Lock()


def get_outbox(settings: Settings | None = None) -> Outbox | None:
    """The outbox of ``settings`` (default: the process settings); None when EVENTBUS_OUTBOX is not set."""
    path = (settings or get_settings()).outbox_path
    if not path:
        return None
    with _lock:
        found = _outboxes.get(path)
        if found is None:
            found = _outboxes[path] = Outbox(path)
        return found


def keep(
    outbox: Outbox, messages: Sequence[Message], once_keys: Sequence[str | None], *, delay_ms: int | None, why: str
) -> None:
    """Write ``messages`` to ``outbox`` because of ``why``; PublishError when the file cannot take them either."""
    try:
        outbox.put(messages, once_keys, delay_ms=delay_ms, error=why)
    except (sqlite3.Error, StoreBusy, OSError) as exc:
        raise PublishError(f"{why}; and the outbox {outbox.path} could not take them either: {exc}") from None
    logger.warning("%s; kept %d message(s) in the outbox %s for the relay", why, len(messages), outbox.path)


def outbox_depth(settings: Settings | None = None) -> int:
    """Messages waiting in the outbox (0 when the outbox is off); for health checks and stats."""
    outbox = get_outbox(settings)
    return 0 if outbox is None else outbox.depth()


def outbox_status(settings: Settings | None = None) -> dict[str, Any]:
    """``{"enabled", "path", "depth", "oldest_age_s", "queues"}`` for the control plane and the CLI."""
    outbox = get_outbox(settings)
    if outbox is None:
        return {"enabled": False, "path": None, "depth": 0, "oldest_age_s": None, "queues": {}}
    return {
        "enabled": True,
        "path": str(outbox.path),
        "depth": outbox.depth(),
        "oldest_age_s": outbox.oldest_age_s(),
        "queues": outbox.by_queue(),
    }
