"""The storage contract: every store the bus needs, declared once; each backend builds one :class:`Stores`.

A broker (``brokers/redis``, ``brokers/sqlite``, ``brokers/memory``) builds its ``Stores`` in its
constructor and exposes it as ``broker.stores``. Features are handed the store they use
(``broker.stores.ledger``, ``.control``, ``.send_records`` ...); none of them asks what kind of
broker it runs on. A store a backend cannot keep is ``None`` (the memory backend has no crash
recovery: nothing of it outlives its process), and the feature that needs it says so in its error.

Each store is built on first use, so a publisher that never reads the control plane never creates
its tables or registers its scripts.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from eventbus.ledger_writer import LedgerWriter
from eventbus.retention import Retention
from eventbus.settings import Settings

if TYPE_CHECKING:
    import dramatiq

    from eventbus.job_record import JobRecord
    from eventbus.ledger import Completion, JobState, LedgerWrite
    from eventbus.notification import Notification
    from eventbus.reports import HealthCheck, QueueDepth, Stats, WorkerInfo
    from eventbus.scheduled import ScheduledEntry
    from eventbus.send_record import RecordStore

Message = Any  # dramatiq.Message[Any]; Any here so the protocols stay importable without dramatiq's types


class LedgerStore(Protocol):
    """Where ledger writes land: one call applies a batch of transitions and completions."""

    retention: Retention

    def apply(self, ops: Sequence[LedgerWrite], done: Sequence[Completion] = ()) -> int:
        """Apply ``ops`` (then ``done``) in order; returns how many were newer than what was stored."""
        ...


DeadRow = tuple[str, float, bytes | None]  # (broker id, dead-at score in ms, encoded message)


class ControlStore(Protocol):
    """The reads and writes behind :class:`eventbus.control.ControlPlane`."""

    namespace: str

    # -- ledger -------------------------------------------------------------------------------

    def apply(self, ops: Sequence[LedgerWrite]) -> int:
        """Apply ledger writes (see :func:`eventbus.ledger.transition`) in order; returns how many were newer."""
        ...

    def get(self, job_ids: Iterable[str]) -> list[JobRecord | None]:
        """The records of ``job_ids`` (None where there is none)."""
        ...

    def job_ids(self, queue: str, state: JobState, top: float, start: int, num: int) -> list[tuple[str, float]]:
        """(job id, time it entered ``state``) of ``queue``, newest first, at or below ``top``, from ``start``."""
        ...

    def delete_job(self, job_id: str, queue: str) -> None:
        """Delete one record and its index entries."""
        ...

    def trim(self, queue: str, state: JobState, *, older_than_ms: int | None = None, keep: int | None = None) -> int:
        """Remove records of ``queue`` in ``state`` older than the cutoff or beyond the newest ``keep``."""
        ...

    def queues(self) -> set[str]:
        """Every queue a job or worker used."""
        ...

    def register_queues(self, queues: Iterable[str]) -> None:
        """Remember queues declared by a worker (so operators elsewhere see them)."""
        ...

    def event(self, event_id: str) -> dict[str, Any] | None:
        """A stored published event, or None once past its retention."""
        ...

    # -- messages the broker holds ------------------------------------------------------------

    def message_data(self, record: JobRecord) -> bytes | None:
        """The encoded message of a waiting, delayed, active, retrying or dead job, while the broker holds it."""
        ...

    def waiting_event_data(self, job_id: str) -> bytes | None:
        """The fan-out message of a published event no worker took yet (it has no record)."""
        ...

    def remove_waiting(self, record: JobRecord) -> bool | None:
        """Take a waiting message out of its queue: True if removed, False if a worker fetched it, None if unknown."""
        ...

    # -- stats, pause -------------------------------------------------------------------------

    def stats(self, local_queues: Sequence[str]) -> Stats:
        """Per-queue and per-topic counts, in one read."""
        ...

    def pause(self, queue: str) -> None: ...

    def resume(self, queue: str) -> None: ...

    def paused(self) -> set[str]: ...

    # -- dead letters -------------------------------------------------------------------------

    def dead_rows(self, queue: str, top: float, start: int, num: int) -> list[DeadRow]:
        """Dead letters of ``queue`` at or below score ``top``, newest first, from ``start``."""
        ...

    def locate_dead(self, job_id: str, queues: Sequence[str]) -> tuple[str, str, bytes] | None:
        """(queue, broker id, data) of the dead letter of ``job_id``."""
        ...

    def dead_score(self, queue: str, broker_id: str) -> float:
        """The dead-at score of one dead letter (0 if gone)."""
        ...

    def take_dead(self, queue: str, broker_ids: Sequence[str]) -> list[bytes]:
        """Remove the named dead letters and return their data; one that is already gone is skipped."""
        ...

    def take_dead_older(self, queue: str, cutoff_ms: int) -> list[bytes]:
        """Remove up to 500 dead letters of ``queue`` that died at or before ``cutoff_ms``; returns their data."""
        ...

    def put_back_dead(self, queue: str, datas: Sequence[bytes]) -> None:
        """Restore taken dead letters (a requeue that could not enqueue)."""
        ...

    # -- workers, subscriptions, locks, health ------------------------------------------------

    def heartbeat(self, worker: str, at_ms: int) -> None: ...

    def forget_worker(self, worker: str) -> None: ...

    def prune_workers(self, before_ms: int) -> None: ...

    def live_workers(self, since_ms: int) -> list[WorkerInfo]: ...

    def register_subscriptions(self, subscriptions: Mapping[str, str]) -> None:
        """Subscriptions as workers run them (name -> JSON)."""
        ...

    def subscription(self, name: str) -> str | None:
        """The JSON a worker registered for subscription ``name``."""
        ...

    def try_lock(self, name: str, owner: str, ttl_ms: int) -> bool:
        """Take a lock that expires by itself; False while another owner holds it."""
        ...

    def depths(self, queues: Sequence[str]) -> tuple[list[QueueDepth], int | None]:
        """Each queue's messages by where they are (ready by priority, unacked, scheduled) and the live
        worker count where the store knows it, in one read."""
        ...

    def probe(self) -> list[HealthCheck]:
        """Broker-specific health checks, answered quickly; the first is ``broker`` (reachable)."""
        ...


class InboxStore(Protocol):
    """The in-app notification inbox: newest first, per user, with read state."""

    def store_notification(self, notification: Notification, limit: int) -> None:
        """Store ``notification`` (idempotent by id) and trim the user's oldest past ``limit``."""
        ...

    def items_of(self, user: str, limit: int, unread_only: bool) -> list[Notification]: ...

    def mark_read(self, user: str, ids: list[str] | None) -> int:
        """Mark ``ids`` (None: all) read; returns how many were unread."""
        ...

    def unread_count(self, user: str) -> int: ...


class ScheduleStore(Protocol):
    """Durable delayed messages and the recurring schedules' last ticks."""

    def promote(self, limit: int = 1_000) -> list[dramatiq.Message[Any]]:
        """Move up to ``limit`` due messages to their queues; returns them."""
        ...

    def cancel(self, message_id: str) -> bool: ...

    def count(self) -> int: ...

    def page(self, offset: int, limit: int) -> list[ScheduledEntry]: ...

    def register_schedules(self, definitions: Mapping[str, str]) -> None: ...

    def schedule_definitions(self) -> dict[str, str]: ...

    def record_tick(self, name: str, tick_ms: int) -> None: ...

    def last_ticks(self) -> dict[str, int]: ...


class LimitStore(Protocol):
    """Global rate limits and concurrency caps shared by every worker on the store."""

    def reserve(self, queue: str, interval_ms: float, max_wait_ms: float) -> tuple[bool, float]:
        """Reserve the next start slot of ``queue``: (granted, ms to wait before starting)."""
        ...

    def acquire(self, queue: str, limit: int, token: str, ttl_ms: int) -> bool: ...

    def release(self, queue: str, token: str) -> None: ...

    def renew(self, leases: list[tuple[str, str]], ttl_ms: int) -> None: ...

    def running(self, queue: str) -> int: ...


class RecoveryStore(Protocol):
    """Crash recovery: job starts are counted, so a message that keeps killing its worker is dead-lettered."""

    def mark_started(self, message: dramatiq.MessageProxy) -> None:
        """Count one run of ``message`` before it runs."""
        ...

    def beat(self, ttl_ms: int, leases: Iterable[tuple[str, str]]) -> None:
        """This worker is alive: store its heartbeat and renew its concurrency leases."""
        ...

    def recover(self, *, timeout_s: float, max_lost: int, suspect_spread_ms: int) -> Recovered:
        """Redeliver the messages of workers that stopped heartbeating; dead-letter those that kill workers."""
        ...


@dataclass(frozen=True)
class Recovered:
    """What one recovery pass did."""

    recovered: int
    dead_workers: int
    poisoned: list[dramatiq.Message[Any]]


class PauseStore(Protocol):
    """Paused queues: read by workers, and how a fetched message of a paused queue goes back."""

    def paused(self) -> set[str]: ...

    def put_back(self, message: dramatiq.MessageProxy) -> None:
        """Return a fetched message of a paused queue to the head of its queue (the worker skips it next)."""
        ...

    def forget(self, paused: set[str]) -> None:
        """The paused set changed to ``paused``: drop what was kept for queues no longer in it."""
        ...


class Stores(abc.ABC):
    """Everything one backend stores, built once by its broker (``broker.stores``)."""

    def __init__(self, namespace: str, settings: Settings) -> None:
        self.namespace = namespace
        self.settings = settings
        self.retention = Retention.from_settings(settings)

    @property
    @abc.abstractmethod
    def owner(self) -> str:
        """This process's id on the store: the holder of its leases and heartbeats."""

    @abc.abstractmethod
    def location(self) -> str:
        """Where the backend keeps its data, without secrets (for logs and errors)."""

    @cached_property
    def ledger(self) -> LedgerWriter | None:
        """The buffered job ledger (None when the ledger is off)."""
        return LedgerWriter(self.ledger_store()) if self.settings.ledger else None

    @abc.abstractmethod
    def ledger_store(self) -> LedgerStore:
        """Where the buffered ledger writes, keeping ``self.retention``."""

    @property
    @abc.abstractmethod
    def control(self) -> ControlStore:
        """The control plane's reads and writes."""

    @property
    @abc.abstractmethod
    def send_records(self) -> RecordStore:
        """Email send records (at-most-once sends)."""

    @property
    @abc.abstractmethod
    def inbox(self) -> InboxStore:
        """In-app notifications."""

    @property
    @abc.abstractmethod
    def schedule(self) -> ScheduleStore:
        """Delayed messages, retries in backoff and cron ticks."""

    @property
    @abc.abstractmethod
    def limits(self) -> LimitStore:
        """Global rate limits and concurrency caps."""

    @property
    @abc.abstractmethod
    def recovery(self) -> RecoveryStore | None:
        """Crash recovery (None: nothing survives the process anyway)."""

    @property
    @abc.abstractmethod
    def pause(self) -> PauseStore:
        """Paused queues."""

    def complete(self, done: Completion) -> None:
        """A finished job's ledger completion (written through the buffered ledger unless a backend sends it
        with the job's ack)."""
        if self.ledger is not None:
            self.ledger.completed(done)
