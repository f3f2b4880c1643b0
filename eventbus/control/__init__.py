"""The control plane: stats, jobs, dead letters, replay, pause/resume, clean-up and health.

One object, bound to a broker; the CLI, the HTTP API and the dashboard are thin faces over its
methods. Every method returns plain dataclasses with ``to_dict()`` (JSON-ready) and raises typed
errors: ``NotFound`` subclasses (JobNotFound, QueueNotFound, DeadLetterNotFound, EventNotFound,
SubscriptionNotFound) for 404 / exit 1, other ``EventBusError`` for bad requests.

    cp = ControlPlane.from_settings()
    cp.stats().queue("email").waiting
    cp.requeue_dead_letters(match=DeadLetterFilter(subscription="confirm_vote"))
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any, cast

import dramatiq

from eventbus.brokers import BusBroker
from eventbus.control import deadletters, health, jobs, mail, stats
from eventbus.delivery import delivery_id, delivery_message
from eventbus.errors import ControlPlaneUnavailable, EventBusError, EventNotFound, QueueNotFound, SubscriptionNotFound
from eventbus.job_record import JobRecord
from eventbus.ledger import JobState, canonical_queue
from eventbus.priority import Priority
from eventbus.reports import (
    DeadLetter,
    DeadLetterFilter,
    HealthCheck,
    HealthReport,
    HealthStatus,
    Page,
    QueueStats,
    ReplayResult,
    RequeueResult,
    ResendResult,
    Stats,
    TopicStats,
    UncertainEmail,
    WorkerInfo,
)
from eventbus.settings import Settings, get_settings
from eventbus.stores import ControlStore
from eventbus.subscriber import Subscription, get_subscription

__all__ = [
    "ControlPlane",
    "ControlStore",
    "DeadLetter",
    "DeadLetterFilter",
    "HealthCheck",
    "HealthReport",
    "HealthStatus",
    "JobRecord",
    "JobState",
    "Page",
    "QueueStats",
    "ReplayResult",
    "RequeueResult",
    "ResendResult",
    "Stats",
    "TopicStats",
    "UncertainEmail",
    "WorkerInfo",
]


class ControlPlane:
    """Operations on the queues, jobs and dead letters of one broker (Redis, SQLite or memory)."""

    def __init__(self, broker: dramatiq.Broker, settings: Settings | None = None) -> None:
        self.broker = broker
        self.settings = settings or get_settings()
        if not isinstance(broker, BusBroker):
            raise ControlPlaneUnavailable(
                f"{type(broker).__name__} is not an eventbus broker; build one with eventbus.broker.make_broker"
            )
        self.store: ControlStore = broker.stores.control
        self.namespace: str = self.store.namespace

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> ControlPlane:
        """A control plane on a new broker built from ``settings`` (default: the process settings)."""
        from eventbus.broker import make_broker

        settings = settings or get_settings()
        return cls(make_broker(settings), settings)

    # -- queues ---------------------------------------------------------------------------------

    def queues(self) -> list[str]:
        """Every queue known here: used by a job or declared by a worker (or by this process)."""
        return sorted(self.store.queues() | set(self.local_queues()))

    def stats(self) -> Stats:
        """Per queue {waiting, active, delayed, completed, failed, dead, paused, processed_last_minute},
        per topic {published, deliveries, failed} (one round trip), and the email send counters."""
        return stats.read_stats(self)

    def queue_stats(self, queue: str) -> QueueStats:
        """The stats of one queue."""
        self.require_queue(queue)
        return self.stats().queue(queue)

    def pause(self, queue: str) -> None:
        """Stop every worker from starting jobs of ``queue`` (running ones finish; nothing is lost)."""
        self.require_queue(queue)
        self.store.pause(queue)

    def resume(self, queue: str) -> None:
        """Let workers take jobs of ``queue`` again (within ~1 s)."""
        self.require_queue(queue)
        self.store.resume(queue)

    def paused(self) -> list[str]:
        """The paused queues."""
        return sorted(self.store.paused())

    # -- jobs -----------------------------------------------------------------------------------

    def get_job(self, job_id: str) -> JobRecord:
        """The ledger record of ``job_id`` (JobNotFound if none), with its payload while the broker holds it."""
        return jobs.get_job(self, job_id)

    def list_jobs(
        self, queue: str, state: JobState | str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[JobRecord]:
        """Jobs of ``queue`` in ``state``, newest first; pass ``page.next_cursor`` for the next page."""
        return jobs.list_jobs(self, queue, state, limit=limit, cursor=cursor)

    def retry_job(self, job_id: str) -> JobRecord:
        """Run a dead job again with fresh attempts under the same id."""
        return jobs.retry_job(self, job_id)

    def remove_job(self, job_id: str) -> JobRecord:
        """Delete a waiting, dead or finished job (record and message); returns what was removed."""
        return jobs.remove_job(self, job_id)

    def retry_failed(self, queue: str, *, limit: int | None = None) -> list[str]:
        """Requeue the dead (failed) jobs of ``queue``, newest first, at most ``limit``; returns their ids."""
        return jobs.retry_failed(self, queue, limit=limit)

    def clean(
        self,
        queue: str,
        *,
        older_than_s: float | None = None,
        state: JobState | str = JobState.COMPLETED,
        keep_last: int | None = None,
    ) -> int:
        """Remove completed/failed records older than ``older_than_s`` or beyond the newest ``keep_last``."""
        return jobs.clean(self, queue, older_than_s=older_than_s, state=state, keep_last=keep_last)

    # -- dead letters ---------------------------------------------------------------------------

    def dead_letters(
        self,
        queue: str | None = None,
        subscription: str | None = None,
        *,
        match: DeadLetterFilter | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[DeadLetter]:
        """Dead letters of one queue, one subscription, or all, newest first."""
        base = match or DeadLetterFilter()
        match = DeadLetterFilter(**{**base.__dict__, "queue": queue or base.queue,
                                    "subscription": subscription or base.subscription})  # fmt: skip
        return deadletters.list_dead_letters(self, match, limit=limit, cursor=cursor)

    def get_dead_letter(self, job_id: str) -> DeadLetter:
        """One dead letter by job id: payload, error and traceback of the final attempt, attempts, times."""
        return deadletters.get_dead_letter(self, job_id)

    def requeue_dead_letters(
        self,
        ids: Sequence[str] | None = None,
        *,
        match: DeadLetterFilter | None = None,
        everything: bool = False,
        limit: int | None = None,
    ) -> RequeueResult:
        """Put dead letters back in their queues (same job id, fresh attempts): by id, by filter, or all."""
        return deadletters.requeue(self, ids, match=match, everything=everything, limit=limit)

    def purge_dead_letters(
        self,
        ids: Sequence[str] | None = None,
        *,
        match: DeadLetterFilter | None = None,
        older_than_s: float | None = None,
        everything: bool = False,
    ) -> int:
        """Delete dead letters by id, by filter, by age, or all; returns how many."""
        return deadletters.purge(self, ids, match=match, older_than_s=older_than_s, everything=everything)

    # -- uncertain emails -----------------------------------------------------------------------

    def uncertain_emails(self, *, limit: int = 50, cursor: str | None = None) -> Page[UncertainEmail]:
        """Emails whose data went to SMTP with no reply recorded (dead letters of ``email``, reason uncertain)."""
        return mail.uncertain_emails(self, limit=limit, cursor=cursor)

    def resend_uncertain(self, key: str) -> ResendResult:
        """Knowingly send the uncertain email ``key`` again (a duplicate if the first copy arrived)."""
        return mail.resend_uncertain(self, key)

    def replay(self, event_id: str, subscription: str) -> ReplayResult:
        """Deliver a past event again to one subscription, as a new job (other subscriptions are untouched)."""
        event = self.store.event(event_id)
        if event is None:
            raise EventNotFound(
                f"event {event_id!r} is not stored: older than EVENTBUS_EVENT_RETENTION_S "
                f"({self.settings.event_retention_s} s), never published here, or published with the ledger off"
            )
        sub = self.find_subscription(subscription)
        if not sub.matches(event["topic"]):
            raise EventBusError(
                f"subscription {subscription!r} ({sub.pattern}) does not receive topic {event['topic']!r}; "
                "pick one of its subscribers"
            )
        message = delivery_message(event, sub, None, self.settings)
        message = message.copy(message_id=str(uuid.uuid4()), options={"replay_of": delivery_id(event_id, sub.name)})
        self.bus_broker.enqueue_many([message])  # no once-key: a replay is intentional
        writer = self.bus_broker.stores.ledger
        if writer is not None:
            writer.flush()
        return ReplayResult(message.message_id, event_id, sub.name, message.queue_name)

    # -- health ---------------------------------------------------------------------------------

    def health(self, *, max_failed: int | None = None, max_waiting: int | None = None) -> HealthReport:
        """healthy / degraded / unhealthy with reasons (thresholds default to the settings)."""
        return health.check(self, max_failed=max_failed, max_waiting=max_waiting)

    def workers(self) -> list[WorkerInfo]:
        """Worker processes with a recent heartbeat."""
        return health.live_workers(self)

    # -- helpers for the modules of this package ------------------------------------------------

    @property
    def bus_broker(self) -> BusBroker:
        return cast(BusBroker, self.broker)

    def local_queues(self) -> list[str]:
        """Queues declared on this process's broker."""
        return sorted({canonical_queue(q) for q in self.broker.get_declared_queues()})

    def require_queue(self, queue: str) -> None:
        if queue not in self.queues():
            known = ", ".join(self.queues()) or "none yet"
            raise QueueNotFound(f"no queue {queue!r} under namespace {self.namespace!r}; known queues: {known}")

    def find_subscription(self, name: str) -> Subscription:
        """A subscription as the workers registered it, else as this process has it."""
        raw = self.store.subscription(name)
        if raw:
            d = json.loads(raw)
            return Subscription(
                name=name,
                pattern=d["pattern"],
                fn=_never_called,
                queue=d.get("queue"),
                priority=Priority.parse(d.get("priority"), Priority.NORMAL),
                max_retries=d.get("max_retries"),
                min_backoff_ms=d.get("min_backoff_ms"),
                max_backoff_ms=d.get("max_backoff_ms"),
            )
        local = get_subscription(name)
        if local is None:
            raise SubscriptionNotFound(
                f"no subscription {name!r}: no worker registered it under namespace {self.namespace!r}; "
                "check the name with `eventbus topics`"
            )
        return local


def _never_called(event: Any) -> None:
    """Stands in for a subscriber function known only by name (the worker runs the real one)."""
