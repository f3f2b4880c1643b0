"""What the control plane returns: plain dataclasses with ``to_dict()`` for JSON faces (CLI, HTTP, dashboard)."""

from __future__ import annotations

import base64
import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar

from eventbus.deadletter import DeadReason
from eventbus.errors import EventBusError

T = TypeVar("T")


@dataclass(frozen=True)
class QueueStats:
    """Counts for one queue. ``delayed`` includes retries waiting for their backoff."""

    queue: str
    waiting: int
    active: int
    delayed: int
    completed: int
    failed: int
    dead: int
    paused: bool
    processed_last_minute: int


@dataclass(frozen=True)
class TopicStats:
    """Per topic: events published, deliveries completed, deliveries that ran out of attempts."""

    topic: str
    published: int
    deliveries: int
    failed: int


@dataclass(frozen=True)
class Stats:
    """Everything ``stats()`` reads, in one round trip."""

    queues: list[QueueStats]
    topics: list[TopicStats]
    at_ms: int
    outbox: dict[str, Any] = field(default_factory=dict)  # eventbus.outbox.outbox_status(): enabled, depth, ...
    mail: dict[str, int] = field(default_factory=dict)  # send counters: sent, failed, retried, skipped, uncertain

    def queue(self, name: str) -> QueueStats:
        """The stats of one queue (zeros if it has none)."""
        for q in self.queues:
            if q.queue == name:
                return q
        return QueueStats(name, 0, 0, 0, 0, 0, 0, False, 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing, newest first; pass ``next_cursor`` back for the next page (None: last page)."""

    items: list[T]
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [item.to_dict() if hasattr(item, "to_dict") else item for item in self.items],
            "next_cursor": self.next_cursor,
        }


@dataclass(frozen=True)
class DeadLetter:
    """A job that ran out of attempts, as kept in its queue's dead letters (details of the final attempt).

    ``reason`` says why it stopped; ``attempts`` is how many times it ran (0: never, e.g. malformed).
    """

    job_id: str
    queue: str
    actor: str
    reason: DeadReason
    subscription: str | None
    event_id: str | None
    topic: str | None
    args: list[Any]
    kwargs: dict[str, Any]
    error: str | None
    error_type: str | None
    traceback: str | None
    attempts: int
    enqueued_at_ms: int
    dead_at_ms: int

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reason"] = self.reason.value
        return out


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters an operation applies to; every field given must match."""

    queue: str | None = None
    subscription: str | None = None
    actor: str | None = None
    topic: str | None = None
    error_contains: str | None = None
    older_than_s: float | None = None
    reason: DeadReason | None = None

    def matches(self, letter: DeadLetter, now_ms: int) -> bool:
        return (
            (self.queue is None or letter.queue == self.queue)
            and (self.reason is None or letter.reason == self.reason)
            and (self.subscription is None or letter.subscription == self.subscription)
            and (self.actor is None or letter.actor == self.actor)
            and (self.topic is None or letter.topic == self.topic)
            and (self.error_contains is None or self.error_contains in (letter.error or ""))
            and (self.older_than_s is None or letter.dead_at_ms <= now_ms - self.older_than_s * 1000)
        )


@dataclass(frozen=True)
class UncertainEmail:
    """An email whose data went to SMTP with no reply recorded, kept as a dead letter of the email queue."""

    key: str
    to: list[str]
    template: str
    message_id: str
    job_id: str  # the dead letter's
    attempts: int
    dead_at_ms: int

    @classmethod
    def from_letter(cls, letter: DeadLetter) -> UncertainEmail:
        kw = letter.kwargs
        return cls(
            str(kw.get("key", "")), list(kw.get("to", [])), str(kw.get("template", "")), str(kw.get("message_id", "")),
            letter.job_id, letter.attempts, letter.dead_at_ms,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ResendResult:
    """An uncertain email set back to pending and its job requeued: it will be sent again."""

    key: str
    job_id: str
    previous_state: str | None  # of its send record (None: the record had expired)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RequeueResult:
    """Job ids put back in their queues, and those asked for that were not dead letters (any more)."""

    requeued: list[str]
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ReplayResult:
    """A past event enqueued again for one subscription, as a new delivery job."""

    job_id: str
    event_id: str
    subscription: str
    queue: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WorkerInfo:
    """A worker process that sent a heartbeat recently."""

    name: str
    last_seen_ms: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class HealthStatus(enum.StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class HealthCheck:
    """One check: its name, whether it passed, and what was seen (with the fix when it failed)."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class HealthReport:
    """``status`` plus one reason per failed check."""

    status: HealthStatus
    reasons: list[str]
    checks: list[HealthCheck]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = self.status.value
        return out


@dataclass(frozen=True)
class QueueDepth:
    """One queue's counts at one moment."""

    queue: str
    ready: dict[str, int]
    unacked: int
    scheduled: int


def encode_cursor(score: float, skip: int) -> str:
    """An opaque cursor: the score of the last item returned and how many items at that score were returned."""
    return base64.urlsafe_b64encode(f"{score!r}:{skip}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[float, int]:
    """``(max score, items at that score to skip)``; no cursor means from the newest."""
    if not cursor:
        return float("inf"), 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, skip = raw.split(":")
        return float(score), int(skip)
    except (ValueError, UnicodeDecodeError):
        raise EventBusError(f"invalid cursor {cursor!r}; pass the next_cursor of the previous page") from None


def next_cursor(scores: list[float], previous: tuple[float, int]) -> str:
    """The cursor after a page whose items had ``scores`` (newest first)."""
    last = scores[-1]
    same = sum(1 for s in scores if s == last)
    if last == previous[0]:
        same += previous[1]
    return encode_cursor(last, same)


def stats_of(queues: list[QueueStats], counts: dict[str, dict[str, int]], at_ms: int) -> Stats:
    """Stats sorted by queue and topic, from per-queue rows and ``{topic: {published|deliveries|failed: n}}``."""
    topics = [
        TopicStats(topic, c.get("published", 0), c.get("deliveries", 0), c.get("failed", 0))
        for topic, c in sorted(counts.items())
    ]
    return Stats(queues=sorted(queues, key=lambda q: q.queue), topics=topics, at_ms=at_ms)
