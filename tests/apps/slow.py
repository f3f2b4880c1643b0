"""One subscriber of ``test.slow`` that runs for ``sleep_ms`` and records when it started and finished."""

from __future__ import annotations

import time
from typing import Any

from eventbus import Event, declare_topic, subscribe
from eventbus.broker import get_broker

declare_topic("test.slow")


@subscribe("test.slow", name="stop.slow")
def slow(event: Event) -> None:
    broker: Any = get_broker()
    key = f"{broker.namespace}:test:slow:{event.id}"
    broker.client.rpush(key, f"started {time.time()}")
    time.sleep(float(event.payload["sleep_ms"]) / 1000)
    broker.client.rpush(key, f"finished {time.time()}")
