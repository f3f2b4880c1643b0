"""The control plane's store on the memory broker: its ledger, queues, schedule and dead letters.

Waiting counts and payloads are read from the broker's queues, delayed ones from its schedule, a
running job's from the messages its workers hold, and dead letters from its dead-letter store; a
dead letter's broker id is a number this process gave it.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dramatiq

from eventbus.clock import now_ms
from eventbus.delivery import EVENTS_QUEUE
from eventbus.job_record import JobRecord
from eventbus.ledger import Completion, JobState, LedgerWrite, canonical_queue
from eventbus.priority import Priority
from eventbus.reports import HealthCheck, QueueDepth, QueueStats, Stats, WorkerInfo, stats_of
from eventbus.retention import BUCKET_MS
from eventbus.stores import DeadRow

if TYPE_CHECKING:
    from eventbus.brokers.memory.broker import MemoryBroker


class MemoryControlStore:
    """The control plane's reads and writes in one :class:`MemoryBroker`."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.namespace = broker.namespace
        self.ledger = broker.ledger
        self.lock = broker.lock
        self._workers: dict[str, int] = {}
        self._subscriptions: dict[str, str] = {}
        self._locks: dict[str, tuple[str, int]] = {}  # name -> (owner, expires at ms)

    # -- ledger -------------------------------------------------------------------------------

    def apply(self, ops: Sequence[LedgerWrite], done: Sequence[Completion] = ()) -> int:
        return self.ledger.apply(ops, done)

    def get(self, job_ids: Iterable[str]) -> list[JobRecord | None]:
        return self.ledger.get(job_ids)

    def job_ids(self, queue: str, state: JobState, top: float, start: int, num: int) -> list[tuple[str, float]]:
        return self.ledger.job_ids(queue, state, top, start, num)

    def delete_job(self, job_id: str, queue: str) -> None:
        self.ledger.delete_job(job_id, queue)

    def trim(self, queue: str, state: JobState, *, older_than_ms: int | None = None, keep: int | None = None) -> int:
        return self.ledger.trim(queue, state, older_than_ms=older_than_ms, keep=keep)

    def queues(self) -> set[str]:
        declared = {canonical_queue(q) for q in self.broker.get_declared_queues()}
        return self.ledger.queues() | declared

    def register_queues(self, queues: Iterable[str]) -> None:
        self.ledger.register_queues(queues)

    def event(self, event_id: str) -> dict[str, Any] | None:
        return self.ledger.event(event_id)

    # -- messages -----------------------------------------------------------------------------

    def message_data(self, record: JobRecord) -> bytes | None:
        if record.state == JobState.DEAD:
            letter = self.broker.dead.locate(record.id)
            return letter[2] if letter is not None and letter[0] == record.queue else None
        if record.state not in (JobState.WAITING, JobState.ACTIVE, JobState.DELAYED, JobState.RETRYING):
            return None
        scheduled = self.broker.schedule.find(record.id)
        if scheduled is not None:
            return scheduled.encode()
        # The ledger may lag the broker by one flush: look wherever the message can be.
        return self._waiting(record.queue, record.id, take=False) or self.broker.running.get(record.id)

    def waiting_event_data(self, job_id: str) -> bytes | None:
        return self._waiting(EVENTS_QUEUE, job_id, take=False)

    def remove_waiting(self, record: JobRecord) -> bool | None:
        return self._waiting(record.queue, record.id, take=True) is not None

    def _waiting(self, queue: str, job_id: str, *, take: bool) -> bytes | None:
        lanes = self.broker.queues.get(queue)
        if lanes is None:
            return None

        def match(data: bytes) -> bool:
            return dramatiq.Message.decode(data).message_id == job_id

        return lanes.take(match) if take else lanes.find(match)

    # -- stats, pause -------------------------------------------------------------------------

    def stats(self, local_queues: Sequence[str]) -> Stats:
        at = now_ms()
        with self.lock:
            names = self.queues() | set(local_queues)
            states = self.ledger.state_counts(at)
            delayed = self.broker.schedule.counts()
            dead = self.broker.dead.counts()
            paused = self.broker.paused_queues()
            processed: dict[str, int] = {}
            for (queue, bucket), n in self.ledger.processed.items():
                if bucket > at // BUCKET_MS - 12:
                    processed[queue] = processed.get(queue, 0) + n
            topics: dict[str, dict[str, int]] = {}
            for (topic, name), n in self.ledger.topic_stats.items():
                topics.setdefault(topic, {})[name] = n
        queues = [
            QueueStats(
                queue=q,
                waiting=self.broker.queues[q].qsize() if q in self.broker.queues else 0,
                active=states[(q, "active")],
                delayed=delayed.get(q, 0),
                completed=states[(q, "completed")],
                failed=states[(q, "failed")],
                dead=dead.get(q, 0),
                paused=q in paused,
                processed_last_minute=processed.get(q, 0),
            )
            for q in names
        ]
        return stats_of(queues, topics, at)

    def depths(self, queues: Sequence[str]) -> tuple[list[QueueDepth], int | None]:
        """Each queue's lanes, the messages workers hold, and its scheduled messages; no worker count."""
        levels = [p.value for p in sorted(Priority, key=lambda p: p.rank)]
        with self.broker.lock:
            scheduled = self.broker.schedule.counts()
            held = collections.Counter(
                canonical_queue(dramatiq.Message.decode(d).queue_name) for d in self.broker.running.values()
            )
            depths = []
            for q in queues:
                lanes = self.broker.queues.get(q)
                sizes = [len(lane) for lane in lanes.lanes] if lanes is not None else [0] * len(levels)
                depths.append(QueueDepth(q, dict(zip(levels, sizes)), held[q], scheduled.get(q, 0)))
        return depths, None

    def pause(self, queue: str) -> None:
        self.broker.pause(queue)

    def resume(self, queue: str) -> None:
        self.broker.resume(queue)

    def paused(self) -> set[str]:
        return self.broker.paused_queues()

    # -- dead letters -------------------------------------------------------------------------

    def dead_rows(self, queue: str, top: float, start: int, num: int) -> list[DeadRow]:
        return list(self.broker.dead.rows(queue, top, start, num))

    def locate_dead(self, job_id: str, queues: Sequence[str]) -> tuple[str, str, bytes] | None:
        return self.broker.dead.locate(job_id)

    def dead_score(self, queue: str, broker_id: str) -> float:
        return self.broker.dead.score(queue, broker_id)

    def take_dead(self, queue: str, broker_ids: Sequence[str]) -> list[bytes]:
        return self.broker.dead.take(queue, broker_ids)

    def take_dead_older(self, queue: str, cutoff_ms: int) -> list[bytes]:
        return self.broker.dead.take_older(queue, cutoff_ms)

    def put_back_dead(self, queue: str, datas: Sequence[bytes]) -> None:
        self.broker.dead.put_back(queue, datas)

    # -- workers, subscriptions, locks, health ------------------------------------------------

    def heartbeat(self, worker: str, at_ms: int) -> None:
        with self.lock:
            self._workers[worker] = at_ms

    def forget_worker(self, worker: str) -> None:
        with self.lock:
            self._workers.pop(worker, None)

    def prune_workers(self, before_ms: int) -> None:
        with self.lock:
            for name in [n for n, seen in self._workers.items() if seen < before_ms]:
                del self._workers[name]

    def live_workers(self, since_ms: int) -> list[WorkerInfo]:
        with self.lock:
            live = sorted((seen, name) for name, seen in self._workers.items() if seen >= since_ms)
        return [WorkerInfo(name, seen) for seen, name in live]

    def register_subscriptions(self, subscriptions: Mapping[str, str]) -> None:
        with self.lock:
            self._subscriptions.update(subscriptions)

    def subscription(self, name: str) -> str | None:
        with self.lock:
            return self._subscriptions.get(name)

    def try_lock(self, name: str, owner: str, ttl_ms: int) -> bool:
        now = now_ms()
        with self.lock:
            held = self._locks.get(name)
            if held is not None and held[1] > now:
                return False
            self._locks[name] = (owner, now + ttl_ms)
        return True

    def probe(self) -> list[HealthCheck]:
        """Always reachable: the broker is this process."""
        return [HealthCheck("broker", True, "reachable (memory://, this process only)")]
