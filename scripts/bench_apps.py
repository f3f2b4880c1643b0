"""Apps loaded into benchmark worker processes: our no-op subscriber and a plain Dramatiq actor.

Both record (start time - publish time) in a Redis list named by BENCH_KEY, so latency is measured
the same way for eventbus and for the plain Dramatiq baseline.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis

_client = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
_key = os.environ.get("BENCH_KEY", "bench:latency")


def _record(sent_at: float) -> None:
    _client.rpush(_key, time.time() - sent_at)


if os.environ.get("BENCH_MODE") == "plain":
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"], namespace=os.environ["BENCH_NAMESPACE"])
    dramatiq.set_broker(broker)

    @dramatiq.actor(queue_name="bench", max_retries=0)
    def plain_job(sent_at: float, payload: dict[str, Any]) -> None:
        if sent_at:
            _record(sent_at)

else:
    from eventbus import Event, declare_topic, subscribe

    declare_topic("bench.happened")

    @subscribe("bench.happened", name="bench.noop")
    def noop(event: Event) -> None:
        sent_at = event.payload.get("sent_at")
        if sent_at:
            _record(sent_at)
