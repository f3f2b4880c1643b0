"""Worker module for ``scripts/bench_sqlite.py``: the bus on EVENTBUS_BROKER_URL, a no-op actor, a no-op subscriber."""

from __future__ import annotations

import dramatiq

from eventbus import Event, declare_topic, subscribe
from eventbus.app import load_worker

broker = load_worker()

FANOUT_TOPIC = "bench.fanned"
FANOUT_QUEUE = "bench_sink"


def noop(n: int) -> None:
    """Does nothing: the drain benchmark measures the broker, not the job."""


dramatiq.Actor(noop, broker=broker, actor_name="bench.noop", queue_name="bench", priority=0, options={})
broker.declare_queue("bench")

declare_topic(FANOUT_TOPIC)


@subscribe(FANOUT_TOPIC, name="bench_sink", queue=FANOUT_QUEUE)
def sink(event: Event) -> None:
    """The one subscriber of the fan-out benchmark's events: does nothing."""


broker.declare_queue(FANOUT_QUEUE)
