"""Queue benchmarks (issue 4): bulk enqueue, CRITICAL start delay under backlog, rate accuracy, scheduled RSS.

Each function runs on real Redis (EVENTBUS_BENCH_REDIS_URL, default redis://127.0.0.1:6379/0) under a
namespace of its own, starts real ``dramatiq eventbus.workers`` processes where it needs them, deletes
its keys afterwards and returns a dict of figures. Run all: ``python scripts/bench_queues.py``.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from bench_keys import drop_namespace  # noqa: E402

from eventbus import Event, Priority, publish_many  # noqa: E402
from eventbus.broker import make_broker, set_broker  # noqa: E402
from eventbus.delivery import delivery_message, install_actors  # noqa: E402
from eventbus.settings import Settings, get_settings, set_settings  # noqa: E402
from eventbus.subscriber import get_subscription  # noqa: E402

REDIS_URL = os.environ.get("EVENTBUS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
APP = "tests.apps.queues"  # subscribers that record what they saw under the namespace


@contextmanager
def bench_bus() -> Iterator[tuple[Any, Any, str]]:
    """This process as a publisher under a fresh namespace; yields (broker, client, namespace)."""
    import tests.apps.queues  # noqa: F401  topics and subscriptions

    ns = f"ebbench-{uuid.uuid4().hex[:8]}"
    settings = replace(Settings(), broker_url=REDIS_URL, namespace=ns, default_subscribers=False)
    set_settings(settings)
    broker = make_broker(settings)
    set_broker(broker)
    install_actors(broker)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        yield broker, client, ns
    finally:
        drop_namespace(client, ns)
        set_broker(None)
        set_settings(None)


@contextmanager
def worker(
    ns: str, client: Any, *, processes: int = 1, threads: int = 8, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``dramatiq eventbus.workers`` on ``ns``, stopped (SIGTERM, then SIGKILL) on exit."""
    full_env = dict(
        os.environ,
        EVENTBUS_BROKER_URL=REDIS_URL,
        EVENTBUS_NAMESPACE=ns,
        EVENTBUS_SUBSCRIBERS=APP,
        EVENTBUS_DEFAULT_SUBSCRIBERS="0",
        PYTHONPATH=str(ROOT),
        dramatiq_worker_timeout="100",
        **(env or {}),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "eventbus.workers", "-p", str(processes), "-t", str(threads)],
        env=full_env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait(lambda: client.zcard(f"{ns}:__heartbeats__") >= processes, 60)
        yield proc
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait(check: Callable[[], Any], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("bench condition not met")
        time.sleep(0.02)


def rss_kb(pid: int) -> int:
    """VmRSS of the worker processes forked by the dramatiq main process ``pid``."""
    total = 0
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def bench_bulk(n: int = 20_000) -> dict[str, Any]:
    """``publish_many`` of ``n`` events (validated, encoded, pipelined): messages per second."""
    with bench_bus() as (_, client, ns):
        payloads = [("q.work", {"n": i, "user": f"user-{i}@example.com", "vote": "up"}) for i in range(n)]
        started = time.perf_counter()
        publish_many(payloads)
        elapsed = time.perf_counter() - started
        assert client.llen(f"{ns}:events") == n
    return {"messages": n, "seconds": round(elapsed, 3), "msgs_per_s": round(n / elapsed)}


def _low_jobs(n: int) -> list[Any]:
    sub = get_subscription("work")
    assert sub is not None
    settings = get_settings()
    return [
        delivery_message(Event(topic="q.work", payload={"sleep_ms": 10}).to_dict(), sub, Priority.LOW.value, settings)
        for _ in range(n)
    ]


def bench_critical_delay(trials: int = 20, backlog: int = 10_000) -> dict[str, Any]:
    """One worker (8 threads) busy on a LOW backlog of ``backlog`` 10 ms jobs: CRITICAL enqueue-to-start delay."""
    with bench_bus() as (broker, client, ns):
        broker.enqueue_many(_low_jobs(backlog))
        with worker(ns, client):
            wait(lambda: int(client.get(f"{ns}:test:seq") or 0) >= 200, 60)
            sub = get_subscription("work")
            assert sub is not None
            for trial in range(trials):
                deficit = backlog - client.llen(f"{ns}:work.p3")
                if deficit > 0:
                    broker.enqueue_many(_low_jobs(deficit))
                time.sleep(0.3)
                event = Event(topic="q.work", payload={"kind": "critical", "sent_at": time.time()})
                broker.enqueue_many([delivery_message(event.to_dict(), sub, Priority.CRITICAL.value, get_settings())])
                wait(lambda t=trial: client.llen(f"{ns}:test:critical_delays") > t, 30)
            delays_ms = sorted(float(d) * 1000 for d in client.lrange(f"{ns}:test:critical_delays", 0, -1))
    return {
        "trials": trials,
        "backlog": backlog,
        "p50_ms": round(statistics.median(delays_ms), 1),
        "p99_ms": round(delays_ms[min(len(delays_ms) - 1, int(len(delays_ms) * 0.99))], 1),
        "max_ms": round(delays_ms[-1], 1),
    }


def bench_rate_accuracy(rate_per_s: int = 20, jobs: int = 100) -> dict[str, Any]:
    """``jobs`` quick jobs under a ``rate_per_s`` limit on 2 processes x 8 threads: achieved start rate."""
    env = {"LIMITED_QUEUE_RATE_LIMIT": f"{rate_per_s}/s"}
    with bench_bus() as (_, client, ns), worker(ns, client, processes=2, env=env):
        publish_many([("q.limited", {"n": i, "sleep_ms": 5}) for i in range(jobs)])
        wait(lambda: client.llen(f"{ns}:test:ends") >= jobs, 60 + jobs / rate_per_s * 3)
        rows = [r.decode().split("|") for r in client.lrange(f"{ns}:test:starts", 0, -1)]
    starts = sorted(float(row[0]) for row in rows)
    retries = sum(int(row[1]) for row in rows)
    achieved = (len(starts) - 1) / (starts[-1] - starts[0])
    return {
        "limit_per_s": rate_per_s,
        "jobs": jobs,
        "achieved_per_s": round(achieved, 2),
        "error_pct": round(abs(achieved - rate_per_s) / rate_per_s * 100, 2),
        "retries": retries,
    }


def bench_scheduled_rss(n: int = 10_000) -> dict[str, Any]:
    """Worker RSS before and after ``n`` events (1 KB payloads) are scheduled an hour ahead."""
    with bench_bus() as (_, client, ns), worker(ns, client) as proc:
        time.sleep(3)
        before_kb = rss_kb(proc.pid)
        started = time.perf_counter()
        publish_many([("q.email", {"n": i, "body": "x" * 1000}) for i in range(n)], delay=timedelta(hours=1))
        schedule_s = time.perf_counter() - started
        time.sleep(4)
        after_kb = rss_kb(proc.pid)
        stored = client.zcard(f"{ns}:schedule")
    return {
        "scheduled": n,
        "in_store": stored,
        "schedule_msgs_per_s": round(n / schedule_s),
        "rss_before_mb": round(before_kb / 1024, 1),
        "rss_after_mb": round(after_kb / 1024, 1),
        "rss_growth_mb": round((after_kb - before_kb) / 1024, 2),
    }


def bench_scheduled_rss_dramatiq(n: int = 10_000) -> dict[str, Any]:
    """Baseline: a plain Dramatiq worker's RSS before and after ``n`` messages are sent with a 1 h delay."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_e2e import Side, plain_sender

    side = Side("plain", f"ebbench-{uuid.uuid4().hex[:8]}")
    try:
        actor = plain_sender(side.namespace)
        time.sleep(3)
        before_kb = rss_kb(side.proc.pid)
        for i in range(n):
            actor.send_with_options(args=(0.0, {"n": i, "body": "x" * 1000}), delay=3_600_000)
        time.sleep(6)
        after_kb = rss_kb(side.proc.pid)
    finally:
        side.stop()
    return {
        "scheduled": n,
        "rss_before_mb": round(before_kb / 1024, 1),
        "rss_after_mb": round(after_kb / 1024, 1),
        "rss_growth_mb": round((after_kb - before_kb) / 1024, 2),
    }


if __name__ == "__main__":
    results = {
        "bulk": bench_bulk(20_000),
        "critical_delay": bench_critical_delay(20, 10_000),
        "rate_accuracy": bench_rate_accuracy(),
        "scheduled_rss": bench_scheduled_rss(10_000),
    }
    print(json.dumps(results, indent=2))
