"""Subscribers for the queue-semantics tests (issue 4); each records what it saw in Redis under the namespace.

Payload keys steer them: ``sleep_ms`` (how long the job takes), ``n`` (a label).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import dramatiq

from eventbus import Event, declare_topic, subscribe
from eventbus.broker import get_broker

for name in ("q.work", "q.email", "q.limited", "q.capped", "q.slow", "q.poison", "q.flaky"):
    declare_topic(name)

_MAX_RUNNING = """
local v = redis.call("incr", KEYS[1])
if v > tonumber(redis.call("get", KEYS[2]) or "0") then redis.call("set", KEYS[2], v) end
return v
"""


def client_and_ns() -> tuple[Any, str]:
    broker: Any = get_broker()
    return broker.client, broker.namespace


def current_retries() -> int:
    message = dramatiq.middleware.CurrentMessage.get_current_message()
    return int(message.options.get("retries", 0)) if message is not None else 0


def sleep_for(event: Event) -> None:
    delay_ms = float(event.payload.get("sleep_ms", 0))
    if delay_ms:
        time.sleep(delay_ms / 1000)


@subscribe("q.work", name="work", queue="work")
def work(event: Event) -> None:
    """Records the global start order: ``seq`` counts every start, critical jobs note theirs."""
    client, ns = client_and_ns()
    seq = client.incr(f"{ns}:test:seq")
    if event.payload.get("kind") == "critical":
        client.set(f"{ns}:test:critical_seq", seq)
        if "sent_at" in event.payload:  # the bench measures the start delay
            client.rpush(f"{ns}:test:critical_delays", time.time() - float(event.payload["sent_at"]))
    sleep_for(event)


@subscribe("q.email", name="email", queue="email")
def email(event: Event) -> None:
    client, ns = client_and_ns()
    client.hincrby(f"{ns}:test:calls", event.id, 1)


@subscribe("q.limited", name="limited", queue="limited")
def limited(event: Event) -> None:
    client, ns = client_and_ns()
    client.rpush(f"{ns}:test:starts", f"{time.time()}|{current_retries()}|{event.id}")
    sleep_for(event)
    client.rpush(f"{ns}:test:ends", time.time())


@subscribe("q.capped", name="capped", queue="capped")
def capped(event: Event) -> None:
    client, ns = client_and_ns()
    client.eval(_MAX_RUNNING, 2, f"{ns}:test:running", f"{ns}:test:max_running")
    try:
        sleep_for(event)
    finally:
        client.decr(f"{ns}:test:running")
    client.hincrby(f"{ns}:test:calls", event.id, 1)
    client.rpush(f"{ns}:test:retries", current_retries())


@subscribe("q.slow", name="slow", queue="slow")
def slow(event: Event) -> None:
    """Slow while ``test:slow`` is set, so a worker can be killed with everything in flight."""
    client, ns = client_and_ns()
    if client.exists(f"{ns}:test:slow"):
        time.sleep(2)
    client.hincrby(f"{ns}:test:done", event.id, 1)


@subscribe("q.poison", name="poison", queue="poison")
def poison(event: Event) -> None:
    """Kills its own worker process when the payload says so (after ``kill_after_ms``); otherwise just
    records the call."""
    client, ns = client_and_ns()
    client.hincrby(f"{ns}:test:calls", event.id, 1)
    if event.payload.get("kill"):
        time.sleep(float(event.payload.get("kill_after_ms", 0)) / 1000)
        os.kill(os.getpid(), signal.SIGKILL)
    sleep_for(event)


@subscribe("q.flaky", name="fails_each_attempt", queue="flaky", max_retries=2, min_backoff_ms=50)
def fails_each_attempt(event: Event) -> None:
    raise RuntimeError(f"failed attempt {current_retries() + 1} of {event.id}")
