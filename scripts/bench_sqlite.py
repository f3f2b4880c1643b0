"""SQLite broker benchmark: single and bulk publish events/s, drain jobs/s and fan-out deliveries/s.

Run: ``.venv/bin/python scripts/bench_sqlite.py [n]``; prints JSON. ``bench_sqlite(n)`` returns the dict.
Targets (issue 7): drain >= 1,000 jobs/s, single publish >= 2,000 events/s, bulk >= 20,000 events/s.

- drain: ``n`` no-op jobs waiting in one file, drained by one worker process of 8 threads.
- fan-out drain: ``n`` events of a topic with one (no-op) subscriber, published before the worker
  starts; the worker's events consumer fans them out and its threads run the ``n`` deliveries.
  Reported as deliveries/s, timed like the drain: from the first message done to the last.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eventbus import declare_topic, publish_event, publish_many  # noqa: E402
from eventbus.broker import make_broker, set_broker  # noqa: E402
from eventbus.brokers.sqlite.broker import SQLiteBroker  # noqa: E402
from eventbus.delivery import EVENTS_QUEUE, build_message, install_actors  # noqa: E402
from eventbus.settings import Settings, set_settings  # noqa: E402

FANOUT_TOPIC, FANOUT_QUEUE = "bench.fanned", "bench_sink"  # as in bench_sqlite_app


def _bus(url: str) -> SQLiteBroker:
    settings = replace(Settings(), broker_url=url, default_subscribers=False)
    set_settings(settings)
    broker = make_broker(settings)
    set_broker(broker)
    install_actors(broker)
    assert isinstance(broker, SQLiteBroker)
    return broker


def bench_publish(n: int, folder: Path) -> dict[str, float]:
    """publish_event one at a time, then publish_many in batches of 1,000, each on a fresh file."""
    declare_topic("bench.happened")
    _bus(f"sqlite:///{folder / 'single.db'}")
    started = time.perf_counter()
    for i in range(n):
        publish_event("bench.happened", {"n": i, "user": "someone@example.com"})
    single = n / (time.perf_counter() - started)
    _bus(f"sqlite:///{folder / 'bulk.db'}")
    bulk_n = n * 5
    started = time.perf_counter()
    for i in range(0, bulk_n, 1000):
        publish_many([("bench.happened", {"n": j, "user": "someone@example.com"}) for j in range(i, i + 1000)])
    bulk = bulk_n / (time.perf_counter() - started)
    set_broker(None)
    set_settings(None)
    return {"single_publish_events_per_s": round(single), "bulk_publish_events_per_s": round(bulk)}


def _start_worker(url: str, folder: Path, threads: int, log_name: str) -> tuple[subprocess.Popen[bytes], Any]:
    env = dict(
        os.environ,
        EVENTBUS_BROKER_URL=url,
        EVENTBUS_DEFAULT_SUBSCRIBERS="0",
        PYTHONPATH=f"{ROOT}:{ROOT / 'scripts'}",
        dramatiq_worker_timeout="100",
    )
    log = (folder / log_name).open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "bench_sqlite_app", "-p", "1", "-t", str(threads)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, log


def _time_drain(broker: SQLiteBroker, queues: tuple[str, ...], n: int) -> tuple[int, float]:
    """Wait until the worker has finished a first message, then until ``queues`` are empty: (left, seconds)."""

    def waiting() -> int:
        return sum(broker.queue_size(q) for q in queues)

    deadline = time.monotonic() + 300
    while waiting() == n and time.monotonic() < deadline:
        time.sleep(0.005)
    started, left_at_start = time.perf_counter(), waiting()
    while waiting() and time.monotonic() < deadline:
        time.sleep(0.01)
    return left_at_start, time.perf_counter() - started


def bench_drain(n: int, folder: Path, threads: int = 8) -> dict[str, float]:
    """Enqueue ``n`` no-op jobs, then time one ``dramatiq`` worker process draining them."""
    url = f"sqlite:///{folder / 'drain.db'}"
    broker = _bus(url)
    broker.enqueue_many([build_message("bench", "bench.noop", {"n": i}, {}, f"job-{i}") for i in range(n)])
    proc, log = _start_worker(url, folder, threads, "worker.log")
    try:
        left_at_start, elapsed = _time_drain(broker, ("bench",), n)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    return {"drain_jobs_per_s": round(left_at_start / elapsed), "drain_threads": threads}


def bench_fanout_drain(n: int, folder: Path, threads: int = 8) -> dict[str, float]:
    """Publish ``n`` events with one subscriber, then time one worker process fanning out and running them."""
    url = f"sqlite:///{folder / 'fanout.db'}"
    broker = _bus(url)
    declare_topic(FANOUT_TOPIC)
    for i in range(0, n, 1000):
        publish_many([(FANOUT_TOPIC, {"n": j}) for j in range(i, min(n, i + 1000))])
    proc, log = _start_worker(url, folder, threads, "fanout-worker.log")
    try:
        # Each event becomes one delivery: events plus deliveries waiting count down from n to 0.
        left_at_start, elapsed = _time_drain(broker, (EVENTS_QUEUE, FANOUT_QUEUE), n)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    return {"fanout_drain_deliveries_per_s": round(left_at_start / elapsed), "fanout_drain_threads": threads}


def bench_sqlite(n: int = 5_000) -> dict[str, Any]:
    """All SQLite figures for ``n`` jobs/events (bulk publishes 5 x n) on temporary files."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        result: dict[str, Any] = {"n": n}
        result.update(bench_publish(n, folder))
        result.update(bench_drain(n, folder))
        result.update(bench_fanout_drain(n, folder))
    return result


if __name__ == "__main__":
    print(json.dumps(bench_sqlite(int(sys.argv[1]) if len(sys.argv) > 1 else 5_000), indent=2))
