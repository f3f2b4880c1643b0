"""What the control plane needs from a broker's store: one protocol, one implementation per broker.

The control plane's logic (filters, cursors, requeue, health thresholds) is written once against
:class:`ControlStore`; :class:`~eventbus.brokers.redis.control.RedisControlStore` keeps it in Redis
keys beside Dramatiq's, :class:`~eventbus.brokers.sqlite.control.SQLiteControlStore` in tables of
the SQLite broker's file. Dead letters are named by a broker id (Redis message id / row id) and
scored by the time they died (ms), so listings page the same way on both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from eventbus.control.types import HealthCheck, Stats, WorkerInfo
from eventbus.ledger import JobRecord, JobState

DeadRow = tuple[str, float, bytes | None]  # (broker id, dead-at score in ms, encoded message)


class ControlStore(Protocol):
    """The reads and writes behind :class:`eventbus.control.ControlPlane`."""

    namespace: str

    # -- ledger -------------------------------------------------------------------------------

    def apply(self, ops: Sequence[dict[str, Any]]) -> int:
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

    def probe(self) -> list[HealthCheck]:
        """Broker-specific health checks, answered quickly; the first is ``broker`` (reachable)."""
        ...
