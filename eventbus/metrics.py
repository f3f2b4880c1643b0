"""Prometheus metrics read from the shared broker state at scrape time, so every process agrees.

Per-queue and per-topic figures are ``ControlPlane.stats()`` itself (one Lua call per scrape), so
/metrics, the API, the CLI and the dashboard never disagree:

* ``eventbus_queue_{waiting,active,delayed,completed,failed,dead}{queue}``: the job counts of ``stats()``
  (``delayed`` includes retries waiting for their backoff; ``failed`` is history whose dead letter was purged).
* ``eventbus_queue_processed_last_minute{queue}``: jobs finished in the last minute.
* ``eventbus_queue_paused{queue}``: 1 while the queue is paused.
* ``eventbus_topic_{published,deliveries,failed}{topic}``: events published, deliveries completed, failed.
* ``eventbus_mail_sends_total{outcome}``: emails sent, failed, retried, skipped (already sent) and
  uncertain (data sent, no reply recorded: kept as dead letters, see ``eventbus mail uncertain``).

Read beside them, in one pipelined round trip (no KEYS/SCAN), for the queues this process knows:

* ``eventbus_queue_ready{queue,priority}``: messages waiting, LLEN of the queue's priority list.
* ``eventbus_queue_unacked{queue}``: stored but not waiting (fetched by a worker, running or
  prefetched): HLEN ``<queue>.msgs`` minus the ready ones.
* ``eventbus_queue_scheduled{queue}``: messages in the durable schedule for the queue.
* ``eventbus_workers``: worker processes with a heartbeat in the last 60 s (``__heartbeats__``).

Each backend reads these in its control store (``depths``); a SQLite broker has no
``eventbus_workers`` (a worker's liveness there is its leases).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from eventbus.delivery import EVENTS_QUEUE
from eventbus.settings import Settings
from eventbus.subscriber import all_subscriptions

if TYPE_CHECKING:
    from eventbus.control import ControlPlane
    from eventbus.stores import ControlStore


def known_queues(settings: Settings) -> list[str]:
    """The events queue, the default queue and every subscription's queue, sorted."""
    queues = {EVENTS_QUEUE, settings.default_queue}
    queues.update(s.queue for s in all_subscriptions() if s.queue)
    return sorted(queues)


class BrokerCollector(Collector):
    """Collects the control store's queue depths on every scrape."""

    def __init__(self, store: ControlStore, queues: Sequence[str]) -> None:
        self.store = store
        self.queues = list(queues)

    def collect(self) -> Iterable[Metric]:
        depths, workers = self.store.depths(self.queues)
        q = ["queue"]
        ready = GaugeMetricFamily("eventbus_queue_ready", "Messages waiting, by priority.", labels=[*q, "priority"])
        unacked = GaugeMetricFamily("eventbus_queue_unacked", "Messages fetched by workers, not acked.", labels=q)
        scheduled = GaugeMetricFamily("eventbus_queue_scheduled", "Messages in the durable schedule.", labels=q)
        for d in depths:
            for level, n in d.ready.items():
                ready.add_metric([d.queue, level], n)
            unacked.add_metric([d.queue], d.unacked)
            scheduled.add_metric([d.queue], d.scheduled)
        yield from (ready, unacked, scheduled)
        if workers is not None:
            alive = GaugeMetricFamily("eventbus_workers", "Worker processes with a heartbeat in the last 60 s.")
            alive.add_metric([], workers)
            yield alive


# (stats field, metric suffix, help) for the per-queue gauges of ControlPlaneCollector.
_QUEUE_GAUGES = [
    ("waiting", "waiting", "Jobs waiting in the queue (every priority)."),
    ("active", "active", "Jobs a worker is running."),
    ("delayed", "delayed", "Jobs scheduled or waiting for a retry's backoff."),
    ("completed", "completed", "Completed job records kept (see retention)."),
    ("failed", "failed", "Jobs out of attempts whose dead letter was purged (history)."),
    ("dead", "dead", "Dead letters."),
    ("processed_last_minute", "processed_last_minute", "Jobs finished in the last minute."),
]
_TOPIC_GAUGES = [
    ("published", "Events published."),
    ("deliveries", "Deliveries completed."),
    ("failed", "Deliveries that ran out of attempts."),
]


class ControlPlaneCollector(Collector):
    """Exports ``ControlPlane.stats()`` as read on each scrape, so /metrics equals what the API shows."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    def collect(self) -> Iterable[Metric]:
        stats = self.plane.stats()
        for field, suffix, text in _QUEUE_GAUGES:
            family = GaugeMetricFamily(f"eventbus_queue_{suffix}", text, labels=["queue"])
            for q in stats.queues:
                family.add_metric([q.queue], getattr(q, field))
            yield family
        paused = GaugeMetricFamily("eventbus_queue_paused", "1 while the queue is paused.", labels=["queue"])
        for q in stats.queues:
            paused.add_metric([q.queue], 1 if q.paused else 0)
        yield paused
        for field, text in _TOPIC_GAUGES:
            family = GaugeMetricFamily(f"eventbus_topic_{field}", text, labels=["topic"])
            for t in stats.topics:
                family.add_metric([t.topic], getattr(t, field))
            yield family
        sends = CounterMetricFamily("eventbus_mail_sends", "Emails by outcome of their attempts.", labels=["outcome"])
        for outcome, n in stats.mail.items():
            sends.add_metric([outcome], n)
        yield sends


def render_metrics(plane: ControlPlane, settings: Settings) -> bytes:
    """The Prometheus text exposition of the broker's state."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ControlPlaneCollector(plane))
    registry.register(BrokerCollector(plane.store, known_queues(settings)))
    return generate_latest(registry)
