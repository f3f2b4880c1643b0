"""Prometheus gauges read from a SQLite broker's file: ready, unacked, delayed, dead and paused per queue."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

import tests.apps.sqlite_recording  # noqa: F401  its subscription sq_second makes queue sq_second known
from eventbus import Priority
from eventbus.brokers import Message
from eventbus.control import ControlPlane
from eventbus.delivery import build_message
from eventbus.metrics import render_metrics


def gauges(broker, settings) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render_metrics(ControlPlane(broker, settings), settings).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_what_waits_runs_sleeps_and_died_in_the_file(sqlite_bus, sqlite_settings):
    # Given four jobs of queue sq_second waiting (one critical), one scheduled an hour ahead, and the queue paused
    def job(n: int, priority: Priority = Priority.NORMAL) -> Message:
        return build_message("sq_second", "sq.job", {"n": n}, {"priority": priority.value}, f"job-{n}")

    sqlite_bus.enqueue_many([job(n) for n in range(3)] + [job(3, Priority.CRITICAL)])
    sqlite_bus.enqueue_many([job(4)], delay_ms=3_600_000)
    sqlite_bus.declare_queue("sq_second")
    # When a consumer takes two: one it holds (running), one it dead-letters
    consumer = sqlite_bus.consume("sq_second", prefetch=2, timeout=1000)
    held, failed = next(consumer), next(consumer)
    assert held is not None and failed is not None
    consumer.nack(failed)
    sqlite_bus.pause("sq_second")
    metrics = gauges(sqlite_bus, sqlite_settings)
    # Then the gauges say so
    assert metrics[("eventbus_queue_ready", (("priority", "normal"), ("queue", "sq_second")))] == 2
    assert metrics[("eventbus_queue_ready", (("priority", "critical"), ("queue", "sq_second")))] == 0
    assert metrics[("eventbus_queue_unacked", (("queue", "sq_second"),))] == 1
    assert metrics[("eventbus_queue_scheduled", (("queue", "sq_second"),))] == 1
    assert metrics[("eventbus_queue_delayed", (("queue", "sq_second"),))] == 1
    assert metrics[("eventbus_queue_dead", (("queue", "sq_second"),))] == 1
    assert metrics[("eventbus_queue_paused", (("queue", "sq_second"),))] == 1
    assert metrics[("eventbus_queue_ready", (("priority", "normal"), ("queue", "default")))] == 0
    assert not any(name == "eventbus_workers" for name, _ in metrics)
    consumer.ack(held)
