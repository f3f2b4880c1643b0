"""Consumers of the SQLite broker: leased fetches, cheap idle waits, ack / nack / requeue.

Idle cost: an idle consumer sleeps on the store's change notification (see
``SQLiteStore.wait_for_change``) and queries its queue again only when something was committed
to the file (at most every ``QUIET_S`` while commits keep coming) or when its next delayed
message or expired lease falls due.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import wraps
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import dramatiq
from dramatiq.common import current_millis, q_name

from eventbus.brokers import Message, malformed, poison
from eventbus.brokers.sqlite import recovery, schema
from eventbus.deadletter import nacked_options
from eventbus.errors import StoreBusy
from eventbus.settings import get_settings

if TYPE_CHECKING:
    from eventbus.brokers.sqlite.broker import SQLiteBroker

_FETCH_MAX = 500
# A consumer that found its queue empty looks again at most this often while the process keeps
# committing (every commit wakes every consumer): a busy worker's idle queues cost a few looks per
# 100 ms instead of several per job, for at most this much latency on them.
QUIET_S = 0.003
logger = logging.getLogger("eventbus")


P = ParamSpec("P")
R = TypeVar("R")


def _as_connection_error(fn: Callable[P, R]) -> Callable[P, R]:
    """Report file errors as Dramatiq connection errors: the worker then retries acks and restarts
    the consumer, instead of dropping an ack as an unexpected bug."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (sqlite3.OperationalError, StoreBusy) as exc:
            raise dramatiq.errors.ConnectionClosed(exc) from exc  # type: ignore[no-untyped-call]

    return wrapper


class SQLiteMessage(dramatiq.MessageProxy):
    """A fetched message and the row it came from."""

    def __init__(self, message: dramatiq.Message[Any], row_id: int, careful: bool) -> None:
        super().__init__(message)
        self.row_id = row_id
        self.careful = careful  # a worker held it before and did not finish it: mark it started before it runs
        # The message's fields, read some 20 times per job by the middleware: held here, each read
        # skips MessageProxy.__getattr__. The message never changes (its options dict is the same object).
        self.queue_name = message.queue_name
        self.actor_name = message.actor_name
        self.args = message.args
        self.kwargs = message.kwargs
        self.options = message.options
        self.message_id = message.message_id
        self.message_timestamp = message.message_timestamp


class SQLiteConsumer(dramatiq.Consumer):
    """Hands out due rows of one queue, leased to this process until acked, nacked or requeued."""

    def __init__(self, broker: SQLiteBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        self.broker = broker
        self.store = broker.store
        self.queue_name = q_name(queue_name)
        self.prefetch = max(1, prefetch)
        self.timeout_ms = timeout
        self.leases = broker.leases(self.queue_name)
        self.cache: deque[SQLiteMessage] = deque()
        # Fetch again once this many slots are free: a fetch brings several rows per transaction, and
        # the worker threads still never run dry (they hold the rest of the prefetch).
        self.batch = max(1, self.prefetch // 4)
        self._starved = False  # waiting for acks to free a batch of slots
        self._seen = -1
        self._next_visible_ms = 0
        self._quiet_until = 0.0  # no look at an empty queue before this (time.monotonic())
        self.max_message_bytes = get_settings().max_message_bytes
        self.max_lost = max(1, get_settings().max_lost_deliveries)
        self.suspect_spread_ms = get_settings().suspect_spread_ms

    @_as_connection_error
    def __next__(self) -> dramatiq.MessageProxy | None:
        deadline = time.monotonic() + self.timeout_ms / 1000
        while True:
            if self.cache:
                proxy = self._take()
                if proxy is not None:
                    return proxy
                continue
            self._renew_if_due()
            generation = self.store.generation
            room = self._room()
            if not room:  # then the acks that free a batch of slots wake this consumer (see _acked) ...
                self._starved = True
                room = self._room()  # ... unless they came before it said so
            self._starved = not room
            due = current_millis() >= self._next_visible_ms
            if room and (generation != self._seen or due):
                quiet_s = self._quiet_until - time.monotonic()
                if quiet_s > 0 and not due:  # found empty a moment ago: let commits gather for one look
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    time.sleep(min(quiet_s, left))
                    continue
                self._seen = generation
                self._fetch()
                if self.cache:
                    continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if room:
                left = min(left, max(0, self._next_visible_ms - current_millis()) / 1000)
            left = min(left, self.leases.renewed_at + self.broker.lease_s / 4 - time.monotonic())
            self.store.wait_for_change(generation, left)

    @_as_connection_error
    def ack(self, message: dramatiq.MessageProxy) -> None:
        """Group-committed with this process's job starts (see :mod:`eventbus.brokers.group_commit`).

        Written within ``ack_delay_s`` (or with the next job start); until then the row stays leased to
        this process, its lease renewed. A ``kill -9`` in between runs the job again (at least once).
        """
        self.broker.writes.ack(self.queue_name, _row(message), self._acked)

    @_as_connection_error
    def nack(self, message: dramatiq.MessageProxy) -> None:
        """Move the message to ``dead_letters`` as the worker saw it: final retries, error and traceback."""
        row_id = _row(message)
        exception = getattr(message, "_exception", None)
        now = current_millis()
        dead = message._message.copy(options=nacked_options(message.options, exception, now))
        with self.store.transaction() as conn:
            recovery.remove_rows(conn, [row_id])
            conn.execute(
                schema.INSERT_DEAD, (self.queue_name, dead.message_id, now, dead.options.get("error"), dead.encode())
            )
        self._acked([row_id])

    @_as_connection_error
    def requeue(self, messages: Iterable[dramatiq.MessageProxy]) -> None:
        """Put unfinished messages back at the head of their priority, visible at once."""
        ids = [_row(m) for m in messages]
        if not ids:
            return
        with self.store.transaction() as conn:
            for i in range(0, len(ids), _FETCH_MAX):
                chunk = ids[i : i + _FETCH_MAX]
                conn.execute(
                    f"UPDATE messages SET visible_at = 0, lease_owner = NULL WHERE id IN ({_marks(chunk)})", chunk
                )
        self._acked(ids)

    def close(self) -> None:
        """Give back fetched messages no worker thread has taken yet; write the acks still pending."""
        leftovers, self.cache = list(self.cache), deque()
        try:
            self.requeue(leftovers)
        finally:
            try:
                self.broker.writes.flush()
            except (sqlite3.Error, StoreBusy) as exc:
                n = len(self.broker.writes)
                logger.warning("could not write %d pending ack(s) at close (%s); those jobs will run again", n, exc)

    # -- internals ---------------------------------------------------------------------------

    def _take(self) -> SQLiteMessage | None:
        """The next fetched message for a worker thread (None: look at the cache again)."""
        return self.cache.popleft()

    def _acked(self, row_ids: list[int]) -> None:
        """Rows this process no longer holds (acked, nacked, requeued): free their slots.

        A consumer waiting for a batch of free slots is woken here, not by the commit (which it may
        have seen before the slots were freed).
        """
        self.leases.discard(row_ids)
        if self._starved and self._room():
            self._starved = False
            self.store.wake()

    def _room(self) -> bool:
        return self.prefetch - len(self.leases) >= self.batch

    def _fetch(self) -> None:
        want = min(self.prefetch - len(self.leases), _FETCH_MAX)
        now = current_millis()
        params = {"queue": self.queue_name, "now": now, "n": want}
        conn = self.store.connection()
        self._next_visible_ms = self._next_visible(conn, params)
        if self._next_visible_ms > now:
            # Nothing ready (or paused): sleep until a commit or until the next row falls due.
            self._quiet_until = time.monotonic() + QUIET_S
            return
        lease_until = now + int(self.broker.lease_s * 1000)
        dead: list[Message] = []
        with self.store.transaction() as tx:
            rows = tx.execute(schema.FETCH, {**params, "now": current_millis()}).fetchall()
            fetched = len(rows)
            ids = [row[0] for row in rows]
            if ids:
                tx.execute(
                    f"UPDATE messages SET visible_at = ?, lease_owner = ? WHERE id IN ({_marks(ids)})",
                    [lease_until, self.broker.owner, *ids],
                )
                held_back, dead = self._handle_suspects(tx, rows)
                rows = [row for row in rows if row[0] not in held_back]
                ids = [row[0] for row in rows]
        writer = self.broker.stores.ledger if dead else None
        if writer is not None:
            for message in dead:
                writer.add(poison.dead_record(message))
        self.leases.add(ids)
        # A full batch may mean more is waiting: fetch again as soon as there is room. Otherwise the
        # next fetch waits for a commit, or for the next delayed row or expired lease to fall due.
        self._next_visible_ms = 0 if fetched == want else self._next_visible(conn, {**params, "now": current_millis()})
        bad: list[tuple[int, bytes, str]] = []
        for row_id, data, careful in rows:
            try:
                message = malformed.decode(data, self.max_message_bytes)
            except malformed.MalformedMessage as exc:
                bad.append((row_id, data, str(exc)))
                continue
            if message.queue_name != self.queue_name:  # a due delayed message: hand it out as a plain one
                message = message.copy(queue_name=self.queue_name)
                message.options.pop("eta", None)
            self.cache.append(SQLiteMessage(message, row_id, bool(careful)))
        if bad:
            self._dead_letter_malformed(bad)

    def _next_visible(self, conn: sqlite3.Connection, params: dict[str, Any]) -> int:
        """When a row of the queue is next visible (<= now: rows are ready); a minute ahead if none is."""
        nxt = conn.execute(schema.NEXT_VISIBLE, params).fetchone()[0]
        return int(nxt) if nxt is not None else int(params["now"]) + 60_000

    def _handle_suspects(self, tx: sqlite3.Connection, rows: list[Any]) -> tuple[set[int], list[Message]]:
        """Rows whose worker died running them: dead-letter those lost ``max_lost_deliveries`` times,
        hand out the first other one and put the rest back ``suspect_spread_ms`` apart. Returns the
        ids not handed out, and the dead letters written."""
        suspects = self.broker.runs.count_lost(tx, [row[0] for row in rows])
        poisoned = {row_id: lost for row_id, lost in suspects.items() if lost >= self.max_lost}
        later = sorted(set(suspects) - set(poisoned))[1:]
        now = current_millis()
        for i, row_id in enumerate(later, start=1):
            tx.execute(
                "UPDATE messages SET visible_at = ?, lease_owner = NULL WHERE id = ?",
                (now + i * self.suspect_spread_ms, row_id),
            )
        dead_letters: list[Message] = []
        for row_id, data, _ in rows:
            if row_id not in poisoned:
                continue
            try:
                message = malformed.decode(data, self.max_message_bytes)
            except malformed.MalformedMessage:
                continue  # handed out, then dead-lettered as malformed
            dead = poison.worker_lost(message.copy(queue_name=self.queue_name), poisoned[row_id])
            dead_letters.append(dead)
            recovery.remove_rows(tx, [row_id])
            tx.execute(
                schema.INSERT_DEAD,
                (self.queue_name, dead.message_id, dead.options["dead_at"], dead.options["error"], dead.encode()),
            )
            logger.error(
                "dead-lettered message %s (%s) on queue %r: %s",
                dead.message_id,
                dead.actor_name,
                self.queue_name,
                dead.options["error"],
            )
        return set(poisoned) | set(later), dead_letters

    def _dead_letter_malformed(self, bad: list[tuple[int, bytes, str]]) -> None:
        """Move rows that are not usable messages to ``dead_letters`` (reason ``malformed``), raw bytes kept."""
        now = current_millis()
        with self.store.transaction() as conn:
            for row_id, data, error in bad:
                dead = malformed.dead_letter(data, self.queue_name, error)
                conn.execute("DELETE FROM messages WHERE id = ?", (row_id,))
                conn.execute(
                    schema.INSERT_DEAD, (self.queue_name, dead.message_id, now, dead.options["error"], dead.encode())
                )
        self._acked([row_id for row_id, _, _ in bad])
        for _, _, error in bad:
            malformed.log_malformed(self.queue_name, error)

    def _renew_if_due(self) -> None:
        """Extend the lease of every message this process holds on the queue, every quarter lease."""
        if time.monotonic() - self.leases.renewed_at < self.broker.lease_s / 4:
            return
        self.leases.renewed_at = time.monotonic()
        ids = self.leases.snapshot()
        if not ids:
            return
        lease_until = current_millis() + int(self.broker.lease_s * 1000)
        with self.store.transaction() as conn:
            for i in range(0, len(ids), _FETCH_MAX):
                chunk = ids[i : i + _FETCH_MAX]
                conn.execute(
                    f"UPDATE messages SET visible_at = ? WHERE lease_owner = ? AND id IN ({_marks(chunk)})",
                    [lease_until, self.broker.owner, *chunk],
                )


class DelayQueueConsumer(dramatiq.Consumer):
    """The consumer Dramatiq starts for ``q.DQ``: idle, because due delayed rows go out through ``q``."""

    def __init__(self, timeout: int) -> None:
        self.timeout_ms = timeout

    def __next__(self) -> dramatiq.MessageProxy | None:
        time.sleep(self.timeout_ms / 1000)
        return None

    def ack(self, message: dramatiq.MessageProxy) -> None:
        """Never called: this consumer hands out nothing."""

    def nack(self, message: dramatiq.MessageProxy) -> None:
        """Never called: this consumer hands out nothing."""


def _row(message: dramatiq.MessageProxy) -> int:
    if not isinstance(message, SQLiteMessage):
        raise TypeError(f"{message!r} was not fetched from a SQLite broker")
    return message.row_id


def _marks(ids: list[int]) -> str:
    return ",".join("?" * len(ids))
