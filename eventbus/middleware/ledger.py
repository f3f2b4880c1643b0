"""Records every job transition in the ledger, buffered: one write per ~25 ms per process.

One pipelined Lua call on Redis, one transaction on SQLite.

Hooks write into a per-process buffer; a flusher thread applies it in one round trip, so the
actor path pays no Redis round trip. A job's ``active`` write is held back until its next write
or the next flush, whichever comes first: a job that finishes within one flush costs one write
with both states in its history, and a longer job still shows ``active`` within one flush
interval. A worker's writes are compact (see :func:`eventbus.ledger.transition`) and built by the
flusher, not by the job's thread; on Redis a finished job's write (a :class:`Completion`) goes
with its ack instead, in the group commit's script call. The thread starts on first use
(publishers) or at worker boot, and is drained at worker shutdown and at interpreter exit. A
``kill -9`` loses at most the last ~25 ms of writes; the job's next write repairs its record.
"""

from __future__ import annotations

import atexit
import collections
import functools
import logging
import os
import threading
import traceback
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import dramatiq

from eventbus.delivery import FANOUT_ACTOR
from eventbus.ledger import Completion, JobState, canonical_queue, coalesce, now_ms, transition, worker_name
from eventbus.ledger_redis import Retention
from eventbus.settings import Settings

logger = logging.getLogger("eventbus.ledger")

FLUSH_INTERVAL_S = 0.025


class LedgerStore(Protocol):
    """Where ledger writes go: ``RedisLedger``, ``SQLiteLedger`` or ``MemoryLedger``."""

    def apply(self, ops: Sequence[dict[str, Any]], done: Sequence[Completion] = ()) -> int: ...


def ledger_store(broker: dramatiq.Broker, settings: Settings) -> LedgerStore | None:
    """The ledger store of ``broker`` (None for a broker that keeps no ledger)."""
    from eventbus.brokers.memory import MemoryBroker
    from eventbus.brokers.sqlite import SQLiteBroker

    if isinstance(broker, MemoryBroker):
        return broker.ledger.with_retention(Retention.from_settings(settings))
    if isinstance(broker, SQLiteBroker):
        from eventbus.ledger_sqlite import SQLiteLedger

        return SQLiteLedger(broker.store, broker.namespace, Retention.from_settings(settings))
    if hasattr(broker, "client") and hasattr(broker, "namespace"):
        from eventbus.ledger_redis import RedisLedger

        return RedisLedger(
            broker.client, broker.namespace, Retention.from_settings(settings), getattr(broker, "direct", None)
        )
    return None


class LedgerWriter:
    """A buffer of ledger writes and the thread that flushes it."""

    def __init__(self, store: LedgerStore, interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.store = store
        self.interval_s = interval_s
        self._ops: collections.deque[dict[str, Any] | Completion] = collections.deque()
        # job id -> its active write, not yet built. No lock: a single dict store or pop is atomic, so a
        # held write is taken exactly once, by its job's next write or by a flush.
        self._held: dict[str, Callable[[], dict[str, Any]]] = {}
        self._flush_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._running = False  # the flusher runs in this process (a hot-path check with no syscall)
        _WRITERS.add(self)

    def add(self, op: dict[str, Any]) -> None:
        """Queue one write; it reaches Redis within ``interval_s``."""
        held = self.release(op["id"]) if self._held else None
        if held is not None:
            self._ops.append(held())
        self._ops.append(op)
        if not self._running:
            self.start()

    def completed(self, done: Completion) -> None:
        """Queue a finished job's write (the flusher builds it); the caller released its held write."""
        self._ops.append(done)
        if not self._running:
            self.start()

    def hold(self, job_id: str, build: Callable[[], dict[str, Any]]) -> None:
        """Keep a job's write back (as the call that builds it) for :meth:`release` by its next write;
        the next flush builds and sends it if not."""
        self._held[job_id] = build
        if not self._running:
            self.start()

    def release(self, job_id: str) -> Callable[[], dict[str, Any]] | None:
        """The held write of ``job_id``, taken back (None once a flush sent it)."""
        return self._held.pop(job_id, None)

    def start(self) -> None:
        """Start the flusher thread in this process (again after a fork)."""
        with self._start_lock:
            if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
                return
            self._pid = os.getpid()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="eventbus-ledger", daemon=True)
            self._thread.start()
            self._running = True
            atexit.register(self.flush)

    def stop(self) -> None:
        """Stop the thread and write whatever is buffered."""
        self._stop.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(5)
        self.flush()

    def flush(self) -> int:
        """Write everything buffered now, in order; returns the number of writes sent."""
        with self._flush_lock:
            ops: list[dict[str, Any]] = []
            done: list[Completion] = []
            while self._ops:
                item = self._ops.popleft()
                if isinstance(item, Completion):
                    done.append(item)
                else:
                    ops.append(item)
            for job_id in list(self._held):  # after the queue: a job's later writes queue once it is released
                build = self._held.pop(job_id, None)
                if build is not None:
                    ops.append(build())
            if not ops and not done:
                return 0
            try:  # a job's completion is its last write: after its other writes in this batch
                self.store.apply(coalesce(ops), done)
            except Exception as exc:  # never let bookkeeping break the work; keep the writes for the next try
                if len(self._ops) < 100_000:
                    self._ops.extendleft(reversed([*ops, *done]))
                logger.warning("ledger write of %d transitions failed (%s); will retry", len(ops) + len(done), exc)
                return 0
            return len(ops) + len(done)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()


_WRITERS: weakref.WeakSet[LedgerWriter] = weakref.WeakSet()


def _after_fork() -> None:
    for writer in _WRITERS:  # a forked child has none of its parent's threads
        writer._running = False


os.register_at_fork(after_in_child=_after_fork)


class Ledger(dramatiq.Middleware):
    """Writes waiting/delayed/active/retrying/completed/dead for every message of the broker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.writer: LedgerWriter | None = None
        self._local = threading.local()
        self._worker = worker_name()

    def bind(self, broker: Any) -> LedgerWriter | None:
        """The writer for ``broker`` (None if the ledger is off or the broker keeps no ledger)."""
        if self.writer is None and self.settings.ledger:
            store = ledger_store(broker, self.settings)
            if store is not None:
                self.writer = LedgerWriter(store)
        return self.writer

    def _write(self, broker: dramatiq.Broker, op: dict[str, Any]) -> None:
        writer = self.writer or self.bind(broker)
        if writer is not None:
            writer.add(op)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Start flushing as soon as the worker runs."""
        self._worker = worker_name()
        writer = self.bind(broker)
        if writer is not None:
            writer.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Drain the buffer: the last transitions of a stopping worker are not lost."""
        if self.writer is not None:
            self.writer.stop()

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int | None) -> None:
        """waiting, delayed (eta in the future) or retrying (eta set by Retries after a failure)."""
        options = message.options
        retries = int(options.get("retries", 0))
        eta = options.get("eta")
        if eta is None:
            if retries == 0 and message.actor_name == FANOUT_ACTOR:
                # A fresh event: the publisher's hot path writes no record. The control plane finds a
                # waiting event in the broker (stored under its event id) until a worker takes it.
                return
            self._write(broker, transition(message, JobState.WAITING, retries + 1))
        elif retries and "traceback" in options:
            error = self._error_for(message.message_id) or _last_line(options.get("traceback"))
            op = transition(message, JobState.RETRYING, retries, next_attempt_at_ms=eta, error=error)
            op["f"]["traceback"] = str(options["traceback"])
            self._write(broker, op)
        else:
            self._write(broker, transition(message, JobState.DELAYED, retries + 1, next_attempt_at_ms=eta))

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """active; remembers the attempt number on the message for the later writes."""
        inner = message._message  # not through the proxy: this runs for every job
        attempt = message._ledger_attempt = int(inner.options.get("retries", 0)) + 1
        writer = self.writer or self.bind(broker)
        if writer is not None:
            at = message._ledger_started = now_ms()
            writer.hold(inner.message_id, functools.partial(self._active, inner, attempt, at))

    def _active(self, message: dramatiq.Message[Any], attempt: int, at: int) -> dict[str, Any]:
        return transition(
            message, JobState.ACTIVE, attempt, at_ms=at, compact=True, started_at_ms=at, worker=self._worker
        )

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """completed, written from the worker thread (the consumer thread, which acks for every worker
        thread, stays free); or keep the error text for the retry's write, which Retries makes right
        after this hook."""
        if exception is not None:  # kept for the retry's write (a later message's id does not match it)
            self._local.error = (message.message_id, f"{type(exception).__name__}: {exception}")
            return
        attempt = getattr(message, "_ledger_attempt", None)
        writer = self.writer
        if attempt is None or writer is None or message.failed:
            return
        inner = message._message
        # Its active write still held (unsent): one write for both.
        started = message._ledger_started if writer.release(inner.message_id) is not None else None
        done = Completion(inner, attempt, started, now_ms(), self._worker)
        if hasattr(broker, "completions"):  # Redis: written with the job's ack, in the same script call
            message._ledger_done = done  # type: ignore[attr-defined]
        else:
            writer.completed(done)

    def before_nack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        """Store the attempt count in the dead letter (Retries' count is one short for aborted jobs)."""
        attempt = getattr(message, "_ledger_attempt", None)
        if attempt is not None:
            message.options["attempts"] = attempt

    def after_nack(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        """dead: out of attempts (or aborted), with the final attempt's error and traceback."""
        exception: BaseException | None = getattr(message, "_exception", None)
        attempt = getattr(message, "_ledger_attempt", None) or int(message.options.get("retries", 0)) + 1
        tb = message.options.get("traceback")
        if not tb and exception is not None:
            tb = "".join(traceback.format_exception(exception, limit=30))
        op = transition(
            message._message,
            JobState.DEAD,
            attempt,
            finished_at_ms=now_ms(),
            error=f"{type(exception).__name__}: {exception}" if exception else _last_line(tb),
            worker=self._worker,
        )
        op["q"] = canonical_queue(message.queue_name)
        if tb:
            op["f"]["traceback"] = str(tb)
        self._write(broker, op)

    def _error_for(self, message_id: str) -> str | None:
        stashed = getattr(self._local, "error", None)
        return stashed[1] if stashed and stashed[0] == message_id else None


def _last_line(text: object) -> str | None:
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    return lines[-1] if lines else None


def ledger_writer(broker: dramatiq.Broker) -> LedgerWriter | None:
    """The ledger writer of ``broker``'s Ledger middleware, if any (control plane: flush after writes)."""
    for middleware in broker.middleware:
        if isinstance(middleware, Ledger):
            return middleware.bind(broker)
    return None
