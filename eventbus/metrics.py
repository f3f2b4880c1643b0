"""Prometheus metrics read from the shared broker state at scrape time, so every process agrees.

Exported (all gauges, one Redis round trip per scrape, no KEYS/SCAN):

* ``eventbus_queue_ready{queue,priority}``: messages waiting, LLEN of the queue's priority list.
* ``eventbus_queue_unacked{queue}``: stored but not waiting (fetched by a worker, running or
  prefetched): HLEN ``<queue>.msgs`` minus the ready ones.
* ``eventbus_queue_delayed{queue}``: scheduled or retry-delayed messages (the durable schedule's count for the queue).
* ``eventbus_queue_dead{queue}``: dead letters, ZCARD ``<queue>.XQ``.
* ``eventbus_queue_paused{queue}``: 1 while the queue is paused (member of ``__paused__``).
* ``eventbus_workers``: worker processes with a heartbeat in the last 60 s (``__heartbeats__``).

Queues are the ones this process knows: the events queue, the default queue and every imported
subscription's queue. On a SQLite broker the same gauges come from one grouped query of the file
(ready: visible rows; unacked: leased; delayed: eta ahead), except ``eventbus_workers``: SQLite
workers keep no heartbeat.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dramatiq.common import current_millis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from eventbus.brokers import PRIORITY_SUFFIX
from eventbus.brokers.redis import RedisBroker
from eventbus.brokers.sqlite import SQLiteBroker
from eventbus.delivery import EVENTS_QUEUE
from eventbus.errors import ConfigError
from eventbus.priority import Priority
from eventbus.settings import Settings
from eventbus.subscriber import all_subscriptions

HEARTBEAT_TIMEOUT_MS = 60_000
_LEVELS = [(p.value, PRIORITY_SUFFIX[p.rank]) for p in Priority]


@dataclass(frozen=True)
class QueueDepth:
    """One queue's counts at one moment."""

    queue: str
    ready: dict[str, int]
    unacked: int
    delayed: int
    dead: int
    paused: bool


def known_queues(settings: Settings) -> list[str]:
    """The events queue, the default queue and every subscription's queue, sorted."""
    queues = {EVENTS_QUEUE, settings.default_queue}
    queues.update(s.queue for s in all_subscriptions() if s.queue)
    return sorted(queues)


def read_depths(broker: RedisBroker, queues: Sequence[str]) -> tuple[list[QueueDepth], int]:
    """Every queue's counts and the live worker count, in one pipelined round trip."""
    with broker.client.pipeline(transaction=False) as pipe:
        for queue in queues:
            for _, suffix in _LEVELS:
                pipe.llen(broker.key(queue + suffix))
            pipe.hlen(broker.key(f"{queue}.msgs"))
            pipe.hget(broker.schedule.counts_key(), queue)
            pipe.zcard(broker.key(f"{queue}.XQ"))
        pipe.smembers(broker.key("__paused__"))
        pipe.zcount(broker.key("__heartbeats__"), int(time.time() * 1000) - HEARTBEAT_TIMEOUT_MS, "+inf")
        values = pipe.execute()
    paused = {p.decode() if isinstance(p, bytes) else p for p in values[-2]}
    depths, width = [], len(_LEVELS) + 3
    for i, queue in enumerate(queues):
        row = values[i * width : (i + 1) * width]
        ready = {level: int(n) for (level, _), n in zip(_LEVELS, row)}
        stored, delayed, dead = (int(n or 0) for n in row[len(_LEVELS) :])
        depths.append(QueueDepth(queue, ready, max(0, stored - sum(ready.values())), delayed, dead, queue in paused))
    return depths, int(values[-1])


def read_sqlite_depths(broker: SQLiteBroker, queues: Sequence[str]) -> list[QueueDepth]:
    """Every queue's counts from the SQLite file, in one read transaction."""
    now = current_millis()
    levels = {p.rank: p.value for p in Priority}
    conn = broker.store.connection()
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")  # one snapshot for all three reads
    try:
        rows = conn.execute(
            "SELECT queue, rank, CASE WHEN visible_at <= ? THEN 'ready' WHEN lease_owner IS NOT NULL "
            "THEN 'unacked' ELSE 'delayed' END, COUNT(*) FROM messages GROUP BY 1, 2, 3",
            (now,),
        ).fetchall()
        dead = dict(conn.execute("SELECT queue, COUNT(*) FROM dead_letters GROUP BY queue").fetchall())
        paused = {row[0] for row in conn.execute("SELECT queue FROM paused")}
    finally:
        if own:
            conn.execute("COMMIT")
    counts: dict[tuple[str, str], int] = {}
    ready: dict[str, dict[str, int]] = {q: dict.fromkeys(levels.values(), 0) for q in queues}
    for queue, rank, state, n in rows:
        if state == "ready" and queue in ready:
            ready[queue][levels.get(int(rank), Priority.NORMAL.value)] += int(n)
        counts[(queue, state)] = counts.get((queue, state), 0) + int(n)
    return [
        QueueDepth(
            q, ready[q], counts.get((q, "unacked"), 0), counts.get((q, "delayed"), 0), int(dead.get(q, 0)), q in paused
        )
        for q in queues
    ]


class BrokerCollector(Collector):
    """Collects :func:`read_depths` (or :func:`read_sqlite_depths`) on every scrape."""

    def __init__(self, broker: RedisBroker | SQLiteBroker, queues: Sequence[str]) -> None:
        self.broker = broker
        self.queues = list(queues)

    def collect(self) -> Iterable[Metric]:
        if isinstance(self.broker, SQLiteBroker):
            depths, workers = read_sqlite_depths(self.broker, self.queues), None
        else:
            depths, workers = read_depths(self.broker, self.queues)
        q = ["queue"]
        ready = GaugeMetricFamily("eventbus_queue_ready", "Messages waiting, by priority.", labels=[*q, "priority"])
        unacked = GaugeMetricFamily("eventbus_queue_unacked", "Messages fetched by workers, not acked.", labels=q)
        delayed = GaugeMetricFamily("eventbus_queue_delayed", "Scheduled or retry-delayed messages.", labels=q)
        dead = GaugeMetricFamily("eventbus_queue_dead", "Dead letters.", labels=q)
        paused = GaugeMetricFamily("eventbus_queue_paused", "1 while the queue is paused.", labels=q)
        for d in depths:
            for level, n in d.ready.items():
                ready.add_metric([d.queue, level], n)
            unacked.add_metric([d.queue], d.unacked)
            delayed.add_metric([d.queue], d.delayed)
            dead.add_metric([d.queue], d.dead)
            paused.add_metric([d.queue], 1 if d.paused else 0)
        yield from (ready, unacked, delayed, dead, paused)
        if workers is not None:
            alive = GaugeMetricFamily("eventbus_workers", "Worker processes with a heartbeat in the last 60 s.")
            alive.add_metric([], workers)
            yield alive


def render_metrics(broker: object, settings: Settings) -> bytes:
    """The Prometheus text exposition of the broker's state (Redis and SQLite brokers)."""
    if not isinstance(broker, RedisBroker | SQLiteBroker):
        raise ConfigError(
            f"/metrics reads Redis or SQLite; the broker is {type(broker).__name__} (set EVENTBUS_BROKER_URL)"
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(broker, known_queues(settings)))
    return generate_latest(registry)
