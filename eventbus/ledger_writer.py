"""The buffered ledger: a per-process buffer of job transitions and the thread that writes it.

Writes go to the backend's :class:`~eventbus.stores.LedgerStore` in one round trip per flush (one
pipelined Lua call on Redis, one transaction on SQLite). A job's ``active`` write may be held back
until its next write or the next flush, whichever comes first, so a short job costs one write. The
thread starts on first use and is drained at worker shutdown and at interpreter exit.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from eventbus.ledger import Completion, LedgerWrite, coalesce

if TYPE_CHECKING:
    from eventbus.stores import LedgerStore

logger = logging.getLogger("eventbus.ledger")

FLUSH_INTERVAL_S = 0.025


class LedgerWriter:
    """A buffer of ledger writes and the thread that flushes it."""

    def __init__(self, store: LedgerStore, interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.store = store
        self.interval_s = interval_s
        self._ops: collections.deque[LedgerWrite | Completion] = collections.deque()
        # job id -> its active write, not yet built. No lock: a single dict store or pop is atomic, so a
        # held write is taken exactly once, by its job's next write or by a flush.
        self._held: dict[str, Callable[[], LedgerWrite]] = {}
        self._flush_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._running = False  # the flusher runs in this process (a hot-path check with no syscall)
        _WRITERS.add(self)

    def add(self, op: LedgerWrite) -> None:
        """Queue one write; it reaches Redis within ``interval_s``."""
        held = self.release(op.job_id) if self._held else None
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

    def hold(self, job_id: str, build: Callable[[], LedgerWrite]) -> None:
        """Keep a job's write back (as the call that builds it) for :meth:`release` by its next write;
        the next flush builds and sends it if not."""
        self._held[job_id] = build
        if not self._running:
            self.start()

    def release(self, job_id: str) -> Callable[[], LedgerWrite] | None:
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
            ops: list[LedgerWrite] = []
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
