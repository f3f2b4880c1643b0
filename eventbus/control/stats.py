"""Queue and topic statistics, read in one round trip from the broker's store."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from eventbus.control.types import QueueStats, Stats, TopicStats
from eventbus.outbox import outbox_status

if TYPE_CHECKING:
    from eventbus.control import ControlPlane


def read_stats(cp: ControlPlane) -> Stats:
    """Stats of every known queue and topic, and the local publish outbox."""
    return replace(cp.store.stats(cp.local_queues()), outbox=outbox_status(cp.settings))


def stats_of(queues: list[QueueStats], counts: dict[str, dict[str, int]], at_ms: int) -> Stats:
    """Stats sorted by queue and topic, from per-queue rows and ``{topic: {published|deliveries|failed: n}}``."""
    topics = [
        TopicStats(topic, c.get("published", 0), c.get("deliveries", 0), c.get("failed", 0))
        for topic, c in sorted(counts.items())
    ]
    return Stats(queues=sorted((_not_negative(q) for q in queues), key=lambda q: q.queue), topics=topics, at_ms=at_ms)


def _not_negative(q: QueueStats) -> QueueStats:
    """A last line of defence: a count kept incrementally (Redis ``schedule.counts``) never shows below zero."""
    counts = (q.waiting, q.active, q.delayed, q.completed, q.failed, q.dead, q.processed_last_minute)
    if min(counts) >= 0:
        return q
    return replace(
        q,
        waiting=max(0, q.waiting),
        active=max(0, q.active),
        delayed=max(0, q.delayed),
        completed=max(0, q.completed),
        failed=max(0, q.failed),
        dead=max(0, q.dead),
        processed_last_minute=max(0, q.processed_last_minute),
    )
