"""Subscribers for the control-plane contract tests; they run in the test process (in-process worker).

- ``cc.happened``: ``cc_ok`` (queue ``cc_ok``) succeeds; ``cc_broken`` (queue ``cc_dead``, max_retries=2)
  fails until ``FIXED`` is set.
- ``cc.flaky``: ``cc_flaky`` (queue ``cc_flaky``) takes 0.3 s per attempt and fails the first one.
- ``cc.slow``: ``cc_slow`` (queue ``cc_slow``) records when it starts, then sleeps ``sleep_ms``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from eventbus import Event, declare_topic, subscribe

declare_topic("cc.happened")
declare_topic("cc.flaky")
declare_topic("cc.slow")

CALLS: Counter[str] = Counter()
STARTS: list[float] = []
FIXED = threading.Event()
_lock = threading.Lock()


def record(name: str, event: Event) -> int:
    with _lock:
        CALLS[f"{name}|{event.id}"] += 1
        return CALLS[f"{name}|{event.id}"]


def reset() -> None:
    with _lock:
        CALLS.clear()
        STARTS.clear()
    FIXED.clear()


@subscribe("cc.happened", name="cc_ok", queue="cc_ok")
def cc_ok(event: Event) -> None:
    record("cc_ok", event)


@subscribe("cc.happened", name="cc_broken", queue="cc_dead", max_retries=2, min_backoff_ms=10, max_backoff_ms=50)
def cc_broken(event: Event) -> None:
    if FIXED.is_set():
        record("cc_fixed", event)
        return
    record("cc_broken", event)
    raise RuntimeError(f"cc_broken cannot handle {event.id}")


@subscribe("cc.flaky", name="cc_flaky", queue="cc_flaky", max_retries=3, min_backoff_ms=400, max_backoff_ms=500)
def cc_flaky(event: Event) -> None:
    time.sleep(0.3)
    if record("cc_flaky", event) == 1:
        raise RuntimeError("first attempt of cc_flaky fails")


@subscribe("cc.slow", name="cc_slow", queue="cc_slow")
def cc_slow(event: Event) -> None:
    with _lock:
        STARTS.append(time.time())
    time.sleep(float(event.payload.get("sleep_ms", 0)) / 1000)
    record("cc_slow", event)
