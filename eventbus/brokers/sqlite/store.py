"""One SQLite file shared by every process on a host: connections, transactions, schemas.

This is the store surface the SQLite broker is built on, and the one other features
(ledger, control plane, scheduler, rate limits, send records) build their tables on:

    store = broker.store
    store.ensure_schema("ledger", ["CREATE TABLE ledger (...)", "CREATE INDEX ..."])
    with store.transaction() as conn:          # BEGIN IMMEDIATE ... COMMIT
        conn.execute("INSERT INTO ledger ...", (...))
    rows = store.execute("SELECT ... WHERE id = ?", (job_id,))

Each thread gets its own connection (WAL, ``synchronous=NORMAL``, a busy timeout). Writers
take the write lock up front with ``BEGIN IMMEDIATE``, so the only place SQLite can report
``database is locked`` is that BEGIN; it is retried here with backoff until ``lock_timeout_s``
has passed, and only then surfaces as :class:`StoreBusy`. It never reaches a job or an ERROR log.

Writers of one process queue for the file on a lock of their own (the *write gate*, one per file
per process) before ``BEGIN IMMEDIATE``. Waiting at SQLite's lock means polling it (SQLite's busy
handler, then the retries here) with sleeps of up to 50-100 ms, in no order: a thread of a busy
process can lose every poll to its siblings for as long as they keep committing, and even alone it
goes in up to a sleep after the lock is free. On the gate the next writer of the process starts as
soon as the last one commits. Other processes still meet at SQLite's lock.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eventbus.errors import StoreBusy

logger = logging.getLogger("eventbus.sqlite")

Params = Sequence[Any] | dict[str, Any]

_BUSY_TIMEOUT_MS = 2_000
WATCH_S = 0.002  # poll interval of the change watcher while the file is busy ...
WATCH_IDLE_S = 0.010  # ... and after a second without changes (keeps an idle worker near 1% CPU)


_gates: dict[Path, threading.RLock] = {}
_gates_lock = threading.Lock()


def _write_gate(path: Path) -> threading.RLock:
    """The write gate of ``path`` in this process (reentrant: a thread may open a second store on the file)."""
    gate = _gates.get(path)
    if gate is None:
        with _gates_lock:
            gate = _gates.setdefault(path, threading.RLock())
    return gate


def _forget_gates() -> None:
    # A fork copies the gates in whatever state other threads held them; the child starts afresh.
    global _gates_lock
    _gates.clear()
    _gates_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_gates)


def is_busy(exc: sqlite3.Error) -> bool:
    """True for SQLite's transient lock errors (``database is locked`` / ``database table is locked``)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


class SQLiteStore:
    """Thread-local connections to one SQLite file, with retried write transactions.

    Safe across threads and processes (and across ``fork``: a child opens its own connections).
    """

    def __init__(self, path: str | Path, *, lock_timeout_s: float = 120.0) -> None:
        self.path = Path(path).expanduser().resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock_timeout_s = lock_timeout_s
        self._local = threading.local()
        # (thread, pid, connection) for every connection opened, so close() can reach them all
        self._all: list[tuple[weakref.ref[threading.Thread], int, sqlite3.Connection]] = []
        self._all_lock = threading.Lock()
        # Bumped on every commit seen: by this process directly, by others through the watcher.
        self.generation = 0
        self._changed = threading.Condition()
        self._watcher: tuple[int, object] | None = None  # (pid, token) of the running watcher
        self._init_file()

    # -- connections -------------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode: use :meth:`transaction` to write several rows)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = NORMAL")
        self._local.conn, self._local.pid = conn, os.getpid()
        pid = os.getpid()
        with self._all_lock:
            alive = []
            for ref, owner, other in self._all:
                if owner != pid:  # inherited through fork: the parent's, never touch it here
                    continue
                if ref() is None:  # its thread ended: nobody else uses that connection
                    other.close()
                else:
                    alive.append((ref, owner, other))
            self._all = [*alive, (weakref.ref(threading.current_thread()), pid, conn)]
        return conn

    def close(self) -> None:
        """Close every connection this process opened (threads reopen one on next use)."""
        with self._all_lock:
            for _, owner, conn in self._all:
                if owner == os.getpid():
                    conn.close()
            self._all = []
            self._watcher = None  # the watcher thread stops
        self._local = threading.local()

    # -- statements --------------------------------------------------------------------------

    def execute(self, sql: str, params: Params = ()) -> list[Any]:
        """Run one statement and return its rows; a write is its own retried transaction."""
        conn = self.connection()
        if sql.lstrip()[:6].upper() in ("SELECT", "PRAGMA"):
            rows: list[Any] = self._retry(lambda: conn.execute(sql, params).fetchall())
            return rows
        with self.transaction() as tx:
            return tx.execute(sql, params).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` (retried while another writer holds the lock) ... ``COMMIT``; rollback on error.

        Keep the body short and free of slow I/O: it holds the file's single write lock. Never wait in
        it for another thread that writes to the file (it queues on this thread's write gate).
        Nested use in the same thread joins the outer transaction.
        """
        conn = self.connection()
        if conn.in_transaction:
            yield conn
            return
        gate = _write_gate(self.path)
        if not gate.acquire(timeout=self.lock_timeout_s):
            raise StoreBusy(
                f"{self.path}: this process's writers stayed busy for {self.lock_timeout_s:.0f} s; "
                "a thread may hold a long write transaction"
            )
        try:
            self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield conn
                self._retry(lambda: conn.execute("COMMIT"))
            except BaseException:
                # Also after a failed COMMIT: a transaction left open would swallow every later one.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            gate.release()
        self._bump()

    def _retry(self, fn: Any) -> Any:
        deadline = time.monotonic() + self.lock_timeout_s
        attempt = 0
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                attempt += 1
                if time.monotonic() > deadline:
                    raise StoreBusy(
                        f"{self.path} stayed locked for {self.lock_timeout_s:.0f} s ({exc}); a process may hold a "
                        "long write transaction or the file is on a network filesystem (use a local disk)"
                    ) from exc
                logger.debug("%s locked (attempt %d), retrying", self.path, attempt)
                time.sleep(min(0.05, 0.001 * 2 ** min(attempt, 6)) * random.uniform(0.5, 1.5))

    # -- change notification -----------------------------------------------------------------

    def wait_for_change(self, seen: int, timeout_s: float) -> int:
        """Block until something was committed to the file after generation ``seen`` (or timeout).

        Commits of this process wake waiters at once; other processes' commits are noticed by one
        watcher thread per process that reads ``PRAGMA data_version`` every 2-10 ms (a few µs each,
        no disk I/O), so idle consumers cost one cheap poll loop per process, not one each.
        """
        watcher = self._watcher
        if watcher is None or watcher[0] != os.getpid():
            self._start_watcher()
        with self._changed:
            if self.generation == seen and timeout_s > 0:
                self._changed.wait(timeout_s)
            return self.generation

    def wake(self) -> None:
        """Wake every waiter of :meth:`wait_for_change` in this process, as a commit would."""
        self._bump()

    def _bump(self) -> None:
        with self._changed:
            self.generation += 1
            self._changed.notify_all()

    def _start_watcher(self) -> None:
        with self._all_lock:
            if self._watcher is not None and self._watcher[0] == os.getpid():
                return
            self._watcher = token = (os.getpid(), object())
        threading.Thread(target=self._watch, args=(token,), name="eventbus-sqlite-watcher", daemon=True).start()

    def _watch(self, token: tuple[int, object]) -> None:
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        last, changed_at = None, time.monotonic()
        try:
            while self._watcher is token:
                try:
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.Error:
                    version = None  # transient: treat as a change so waiters look again
                if version != last or version is None:
                    last, changed_at = version, time.monotonic()
                    self._bump()
                time.sleep(WATCH_S if time.monotonic() - changed_at < 1.0 else WATCH_IDLE_S)
        finally:
            conn.close()

    # -- schemas -----------------------------------------------------------------------------

    def schema_version(self, component: str) -> int:
        """The applied schema version of ``component`` (0 when none)."""
        rows = self.execute("SELECT version FROM schema_version WHERE component = ?", (component,))
        return int(rows[0][0]) if rows else 0

    def ensure_schema(self, component: str, migrations: Sequence[str]) -> int:
        """Apply ``migrations[v:]`` for ``component`` in one transaction; returns the new version.

        Migration ``i`` (0-based) brings the component to version ``i + 1``. Only append to the
        list: never edit a released step. Idempotent and safe when many processes start at once.
        """
        if self.schema_version(component) >= len(migrations):
            return len(migrations)
        with self.transaction() as conn:
            row = conn.execute("SELECT version FROM schema_version WHERE component = ?", (component,)).fetchone()
            current = int(row[0]) if row else 0
            for step in migrations[current:]:
                for statement in _statements(step):
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (component, version) VALUES (?, ?) "
                "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                (component, max(current, len(migrations))),
            )
        return max(current, len(migrations))

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: 'ok' for a healthy file."""
        return "\n".join(str(row[0]) for row in self.execute("PRAGMA integrity_check"))

    def _init_file(self) -> None:
        conn = self.connection()
        mode = self._retry(lambda: conn.execute("PRAGMA journal_mode").fetchone()[0])
        if str(mode).lower() != "wal":
            self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        self._retry(
            lambda: conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
        )


def _statements(script: str) -> list[str]:
    """Split a migration step into statements (steps hold plain DDL/DML, no triggers)."""
    return [s.strip() for s in script.split(";") if s.strip()]
