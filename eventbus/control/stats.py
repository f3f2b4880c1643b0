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
    return Stats(queues=sorted(queues, key=lambda q: q.queue), topics=topics, at_ms=at_ms)
