"""``sqlite:///path``: a durable Dramatiq broker in one SQLite file, shared by every process on a host.

The zero-setup default (``sqlite:///.eventbus/eventbus.db``). Publishers and ``dramatiq
eventbus.workers`` processes on the same host open the same file; nothing else to install.

- Priority is kept in the file: a fetch takes critical, then high, normal, low; FIFO within one.
- Delays live in the file too: a delayed message keeps its row and is handed out only once due.
  Dramatiq's worker still starts a consumer for every ``q.DQ``; on this broker that consumer
  never returns anything (the main consumer serves due rows), so no delayed message waits in
  a worker's memory and none is limited by the delay prefetch.
- Fetched messages are leased (``lease_s``, renewed while the worker lives); a message held by a
  worker that died becomes visible again when its lease runs out.
- A queue listed in ``paused`` hands out nothing; already fetched messages still run.
- A message whose worker died while running it ``max_lost_deliveries`` times is dead-lettered
  (reason ``worker_lost``) instead of coming back forever (:mod:`eventbus.brokers.sqlite.recovery`).
- The events queue's consumer fans events out itself, one transaction per fetched batch
  (:mod:`eventbus.brokers.sqlite.fanout`); job-start marks and acks are group-committed.

URL options: ``?lease_s=30`` (seconds a fetched message stays invisible without renewal).
For scale-out across hosts use Redis: set EVENTBUS_BROKER_URL or REDIS_URL.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dramatiq
from dramatiq.common import current_millis, dq_name, q_name
from dramatiq.errors import QueueJoinTimeout

from eventbus.brokers import Message
from eventbus.brokers.group_commit import AckKey, GroupWriter
from eventbus.brokers.hooks import HookCache
from eventbus.brokers.sqlite import recovery, schema
from eventbus.brokers.sqlite.limits import SQLiteLimits
from eventbus.brokers.sqlite.recovery import SQLiteRecovery
from eventbus.brokers.sqlite.schedule import SQLiteSchedule
from eventbus.brokers.sqlite.store import SQLiteStore
from eventbus.brokers.sqlite.stores import SQLiteStores
from eventbus.delivery import EVENTS_QUEUE
from eventbus.errors import ConfigError
from eventbus.priority import rank_of
from eventbus.settings import Settings, get_settings

DEFAULT_LEASE_S = 30.0


def path_from_url(url: str) -> tuple[Path, dict[str, str]]:
    """``sqlite:///relative/file.db`` or ``sqlite:////absolute/file.db`` -> (path, query options)."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc or not parts.path.startswith("/") or parts.path == "/":
        raise ConfigError(
            f"bad SQLite broker URL {url!r}; use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return Path(parts.path[1:]), options


class SQLiteBroker(HookCache, dramatiq.Broker):
    """Dramatiq broker over one SQLite file; ``store`` is the same file for other features' tables."""

    def __init__(
        self,
        path: str | Path,
        *,
        namespace: str = "eventbus",
        lease_s: float = DEFAULT_LEASE_S,
        middleware: list[dramatiq.Middleware] | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.store = SQLiteStore(path)
        self.store.ensure_schema(schema.COMPONENT, schema.MIGRATIONS)
        self.path = self.store.path
        self.url = f"sqlite:///{self.path}"
        self.namespace = namespace
        self.lease_s = lease_s
        self._leases: dict[str, Leases] = {}
        self._leases_lock = threading.Lock()
        self._owner_pid = 0
        self._owner = ""
        super().__init__(middleware)
        self.queues: dict[str, None] = {}
        self.schedule = SQLiteSchedule(self)
        self.limits = SQLiteLimits(self)
        self.runs = SQLiteRecovery(self)
        self.stores = SQLiteStores(self, settings or get_settings())
        self.writes = GroupWriter(self._write_marks_and_acks)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "eventbus",
        middleware: list[dramatiq.Middleware] | None = None,
        settings: Settings | None = None,
    ) -> SQLiteBroker:
        """Build from ``sqlite:///path[?lease_s=N]``; bad URLs raise ConfigError."""
        path, options = path_from_url(url)
        try:
            lease_s = float(options.get("lease_s", DEFAULT_LEASE_S))
        except ValueError:
            raise ConfigError(f"lease_s={options['lease_s']!r} in {url!r} is not a number; use e.g. 30") from None
        if lease_s <= 0:
            raise ConfigError(f"lease_s in {url!r} must be > 0 seconds")
        return cls(path, namespace=namespace, lease_s=lease_s, middleware=middleware, settings=settings)

    # -- Dramatiq broker interface -----------------------------------------------------------

    def declare_queue(self, queue_name: str) -> None:
        """Declare ``queue_name`` and its ``.DQ`` (the worker starts consumers from these signals)."""
        if queue_name in self.queues:
            return
        self.emit_before("declare_queue", queue_name)
        self.queues[queue_name] = None
        self.store.execute(
            "INSERT OR IGNORE INTO queues (queue, declared_at) VALUES (?, ?)", (queue_name, current_millis())
        )
        self.emit_after("declare_queue", queue_name)
        delayed = dq_name(queue_name)
        self.delay_queues.add(delayed)
        self.emit_after("declare_delay_queue", delayed)

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> dramatiq.Consumer:
        """A leasing consumer for ``queue_name``; for a ``.DQ`` one that never hands out anything."""
        from eventbus.brokers.sqlite.consumer import DelayQueueConsumer, SQLiteConsumer

        if queue_name.endswith(".DQ"):
            return DelayQueueConsumer(timeout)
        if queue_name == EVENTS_QUEUE:
            from eventbus.brokers.sqlite.fanout import FanoutConsumer

            return FanoutConsumer(self, queue_name, prefetch, timeout)
        return SQLiteConsumer(self, queue_name, prefetch, timeout)

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        """Enqueue one message (Dramatiq's Retries and ``actor.send`` come through here)."""
        return self.enqueue_many([message], delay_ms=delay)[0]

    def enqueue_many(
        self,
        messages: Sequence[Message],
        *,
        delay_ms: int | None = None,
        once_keys: Sequence[str | None] | None = None,
        once_ttl_s: int = 86_400,
    ) -> list[Message]:
        """See :class:`eventbus.brokers.BusBroker`: one transaction for the whole batch."""
        keys = list(once_keys) if once_keys is not None else [None] * len(messages)
        return self.write(messages, keys, once_ttl_s, delay_ms=delay_ms)

    def write(
        self,
        messages: Sequence[Message],
        once_keys: Sequence[str | None],
        once_ttl_s: int,
        *,
        delay_ms: int | None = None,
        done: Sequence[int] = (),
        dead: Sequence[tuple[int, Message]] = (),
    ) -> list[Message]:
        """Enqueue ``messages`` (those whose once-key is fresh) and, in the same transaction, delete the
        rows ``done`` and replace the rows of ``dead`` = (row id, final message) by dead letters.
        Returns the messages enqueued.

        A fan-out's deliveries and the removal of its events are thus one commit: a crash before it
        leaves the events leased (they come back when the lease runs out), and running a fan-out
        again enqueues nothing new (its once-keys are taken).
        """
        now = current_millis()
        staged: list[tuple[Message, str | None, tuple[Any, ...]]] = []
        for message, key in zip(messages, once_keys):
            if delay_ms is not None:
                message = message.copy(queue_name=dq_name(message.queue_name), options={"eta": now + delay_ms})
            eta = int(message.options.get("eta") or 0) if message.queue_name.endswith(".DQ") else 0
            rank = rank_of(message)
            row = (q_name(message.queue_name), rank, max(eta, now), eta, now, message.message_id, message.encode())
            staged.append((message, key, row))
        for message, _, _ in staged:
            self.emit_before("enqueue", message, delay_ms)
        out: list[Message] = []
        with self.store.transaction() as conn:
            rows = []
            expires_at = now + once_ttl_s * 1000
            for message, key, row in staged:
                if key is not None and conn.execute(schema.TAKE_ONCE, (key, expires_at, now)).rowcount == 0:
                    continue
                rows.append(row)
                out.append(message)
            conn.executemany(schema.INSERT, rows)
            if any(key is not None for key in once_keys) and random.random() < 0.01:
                conn.execute(schema.PURGE_ONCE, (now,))
            recovery.remove_rows(conn, [*done, *(row_id for row_id, _ in dead)])
            for _, m in dead:
                conn.execute(
                    schema.INSERT_DEAD, (q_name(m.queue_name), m.message_id, now, m.options.get("error"), m.encode())
                )
        for message in out:
            self.emit_after("enqueue", message, delay_ms)
        return out

    def _write_marks_and_acks(self, marks: list[Any], acks: list[AckKey]) -> None:
        """One transaction for a batch of start marks and acks (see :mod:`eventbus.brokers.group_commit`).

        Marks go first: a mark and the ack of the same row (a mark whose first write failed) leave nothing.
        """
        with self.store.transaction() as conn:
            if marks:
                self.runs.write_marks(conn, marks)
            if acks:
                recovery.remove_rows(conn, [row_id for _, row_id in acks])

    def get_declared_queues(self) -> set[str]:
        return set(self.queues)

    def flush(self, queue_name: str) -> None:
        """Drop every waiting, delayed and leased message of ``queue_name`` (its ``.DQ`` included)."""
        self.store.execute("DELETE FROM messages WHERE queue = ?", (q_name(queue_name),))

    def flush_all(self) -> None:
        """Drop every message and dead letter in the file."""
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM messages")
            conn.execute("DELETE FROM dead_letters")

    def join(self, queue_name: str, *, timeout: int | None = None) -> None:
        """Wait until ``queue_name`` has no waiting, delayed or running message (tests only)."""
        deadline = None if timeout is None else time.monotonic() + timeout / 1000
        while self.queue_size(queue_name):
            if deadline is not None and time.monotonic() > deadline:
                raise QueueJoinTimeout(queue_name)  # type: ignore[no-untyped-call]
            time.sleep(0.01)

    def close(self) -> None:
        """Close this process's connections to the file."""
        self.store.close()

    # -- operators' surface ------------------------------------------------------------------

    def queue_size(self, queue_name: str) -> int:
        """Messages of ``queue_name`` in the file: waiting, delayed and leased (running)."""
        return int(self.store.execute("SELECT COUNT(*) FROM messages WHERE queue = ?", (q_name(queue_name),))[0][0])

    def pause(self, queue_name: str) -> None:
        """Stop every worker on this file from fetching ``queue_name`` (nothing is lost)."""
        self.store.execute(
            "INSERT OR IGNORE INTO paused (queue, paused_at) VALUES (?, ?)", (q_name(queue_name), current_millis())
        )

    def resume(self, queue_name: str) -> None:
        """Let workers fetch ``queue_name`` again."""
        self.store.execute("DELETE FROM paused WHERE queue = ?", (q_name(queue_name),))

    def paused_queues(self) -> set[str]:
        """The queues paused on this file."""
        return {row[0] for row in self.store.execute("SELECT queue FROM paused")}

    def dead_letters(self, queue_name: str | None = None, *, limit: int = 100) -> list[Message]:
        """The newest dead letters (of ``queue_name``, or of every queue), newest first."""
        if queue_name is None:
            rows = self.store.execute("SELECT data FROM dead_letters ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self.store.execute(
                "SELECT data FROM dead_letters WHERE queue = ? ORDER BY id DESC LIMIT ?", (q_name(queue_name), limit)
            )
        return [dramatiq.Message.decode(row[0]) for row in rows]

    @property
    def owner(self) -> str:
        """Who holds this process's leases: host, pid and broker instance (new after a fork)."""
        if self._owner_pid != os.getpid():
            with self._leases_lock:  # threads racing here after a fork must agree on one owner
                if self._owner_pid != os.getpid():
                    self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
                    self._leases = {}
                    self._owner_pid = os.getpid()
        return self._owner

    def leases(self, queue_name: str) -> Leases:
        """The messages of ``queue_name`` this process holds (shared by its consumers of that queue)."""
        _ = self.owner  # forget the leases of a parent process after a fork
        with self._leases_lock:
            if queue_name not in self._leases:
                self._leases[queue_name] = Leases()
            return self._leases[queue_name]


class Leases:
    """Row ids of one queue fetched by this process and not yet acked, nacked or requeued."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: set[int] = set()
        self.renewed_at = time.monotonic()

    def add(self, ids: Sequence[int]) -> None:
        with self.lock:
            self.ids.update(ids)

    def discard(self, ids: Sequence[int]) -> None:
        with self.lock:
            self.ids.difference_update(ids)

    def snapshot(self) -> list[int]:
        with self.lock:
            return list(self.ids)

    def __len__(self) -> int:
        return len(self.ids)
