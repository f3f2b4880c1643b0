"""Prometheus gauges read from a SQLite broker's file: ready, unacked, delayed, dead and paused per queue."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

import tests.apps.sqlite_recording  # noqa: F401  declares sq.happened in this process
from eventbus import Priority, publish_event
from eventbus.control import ControlPlane
from eventbus.metrics import render_metrics


def gauges(broker, settings) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render_metrics(ControlPlane(broker, settings), settings).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_what_waits_runs_sleeps_and_died_in_the_file(sqlite_bus, sqlite_settings):
    # Given four events waiting (one critical), one scheduled an hour ahead, and the events queue paused
    for n in range(3):
        publish_event("sq.happened", {"n": n})
    publish_event("sq.happened", {"n": 3}, priority=Priority.CRITICAL)
    publish_event("sq.happened", {"n": 4}, delay=timedelta(hours=1))
    sqlite_bus.declare_queue("events")
    # When a consumer takes two: one it holds (running), one it dead-letters
    consumer = sqlite_bus.consume("events", prefetch=2, timeout=1000)
    held, failed = next(consumer), next(consumer)
    assert held is not None and failed is not None
    consumer.nack(failed)
    sqlite_bus.pause("events")
    metrics = gauges(sqlite_bus, sqlite_settings)
    # Then the gauges say so
    assert metrics[("eventbus_queue_ready", (("priority", "normal"), ("queue", "events")))] == 2
    assert metrics[("eventbus_queue_ready", (("priority", "critical"), ("queue", "events")))] == 0
    assert metrics[("eventbus_queue_unacked", (("queue", "events"),))] == 1
    assert metrics[("eventbus_queue_scheduled", (("queue", "events"),))] == 1
    assert metrics[("eventbus_queue_delayed", (("queue", "events"),))] == 1
    assert metrics[("eventbus_queue_dead", (("queue", "events"),))] == 1
    assert metrics[("eventbus_queue_paused", (("queue", "events"),))] == 1
    assert metrics[("eventbus_queue_ready", (("priority", "normal"), ("queue", "default")))] == 0
    assert not any(name == "eventbus_workers" for name, _ in metrics)
    consumer.ack(held)
