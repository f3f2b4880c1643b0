"""Worker module for ``scripts/bench_sqlite.py``: the bus on EVENTBUS_BROKER_URL plus a no-op actor."""

from __future__ import annotations

import dramatiq

from eventbus.app import load_worker

broker = load_worker()


def noop(n: int) -> None:
    """Does nothing: the drain benchmark measures the broker, not the job."""


dramatiq.Actor(noop, broker=broker, actor_name="bench.noop", queue_name="bench", priority=0, options={})
broker.declare_queue("bench")
