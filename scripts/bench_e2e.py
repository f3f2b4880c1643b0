"""End-to-end benchmarks with real worker processes: latency at a fixed rate, drain rate, worker CPU.

Each figure for eventbus (publish_event -> fan-out -> delivery) sits beside plain Dramatiq
(actor.send -> actor), run in the same process tree, on the same Redis, in the same run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis
from bench_keys import drop_namespace

ROOT = Path(__file__).resolve().parent.parent
# The eventbus package the workers run: this checkout, or the tree `bench.py --against` measures.
TREE = Path(os.environ.get("EVENTBUS_BENCH_TREE", ROOT))
REDIS_URL = os.environ.get("EVENTBUS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PAYLOAD = {"user_id": 42, "model_id": "m-17", "email": "someone@example.com"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def plain_sender(namespace: str) -> Any:
    """The plain Dramatiq actor ``bench_apps`` runs, bound to a sending broker under ``namespace``."""
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=REDIS_URL, namespace=namespace)
    return dramatiq.Actor(
        lambda sent_at, payload: None, broker=broker, actor_name="plain_job", queue_name="bench", priority=0, options={}
    )


class Side:
    """One side of a comparison: a worker process tree plus a way to send one message."""

    def __init__(self, mode: str, namespace: str, threads: int = 8, extra_env: dict[str, str] | None = None) -> None:
        self.mode = mode
        self.namespace = namespace
        self.key = f"{namespace}:bench:latency"
        self.client = redis.Redis.from_url(REDIS_URL)
        env = dict(
            os.environ,
            PYTHONPATH=f"{TREE}{os.pathsep}{ROOT / 'scripts'}",
            BENCH_MODE=mode,
            BENCH_KEY=self.key,
            BENCH_REDIS_URL=REDIS_URL,
            BENCH_NAMESPACE=namespace,
            EVENTBUS_BROKER_URL=REDIS_URL,
            EVENTBUS_NAMESPACE=namespace,
            EVENTBUS_SUBSCRIBERS="bench_apps",
            EVENTBUS_DEFAULT_SUBSCRIBERS="0",
            dramatiq_worker_timeout="100",
            **(extra_env or {}),
        )
        module = "bench_apps" if mode == "plain" else "eventbus.workers"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", module, "-p", "1", "-t", str(threads)],
            env=env,
            cwd=TREE,  # `python -m` puts the working directory first on sys.path
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._setup_sender()
        deadline = time.monotonic() + 30
        while self.client.zcard(f"{namespace}:__heartbeats__") < 1:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{mode} worker did not start")
            time.sleep(0.05)
        time.sleep(0.5)

    def _setup_sender(self) -> None:
        if self.mode == "plain":
            actor = plain_sender(self.namespace)
            self.send = lambda sent_at: actor.send(sent_at, PAYLOAD)
            self.send_many = lambda n: [actor.send(0.0, PAYLOAD) for _ in range(n)]
        else:
            from eventbus import declare_topic, publish_event, publish_many
            from eventbus.broker import make_broker, set_broker
            from eventbus.settings import Settings, set_settings

            declare_topic("bench.happened")
            settings = replace(Settings(), broker_url=REDIS_URL, namespace=self.namespace)
            set_settings(settings)
            broker = make_broker(settings)
            set_broker(broker)
            self._broker = broker
            self.send = lambda sent_at: publish_event("bench.happened", {**PAYLOAD, "sent_at": sent_at})
            self.send_many = lambda n: publish_many([("bench.happened", PAYLOAD)] * n)

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-g", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def cpu_s(self) -> float:
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in self.worker_pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
            except (FileNotFoundError, IndexError):
                pass
        return total

    def run_rate(self, rate: float, seconds: float) -> dict[str, Any]:
        """Publish at ``rate`` per second for ``seconds``; latency of each subscriber start."""
        import gc

        self.client.delete(self.key)
        n = int(rate * seconds)
        gc.disable()
        cpu0, t0 = self.cpu_s(), time.monotonic()
        for i in range(n):
            target = t0 + i / rate
            now = time.monotonic()
            if target > now:
                time.sleep(target - now)
            self.send(time.time())
        deadline = time.monotonic() + 30
        while self.client.llen(self.key) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        elapsed = time.monotonic() - t0
        cpu = self.cpu_s() - cpu0
        gc.enable()
        lat = [float(x) * 1000 for x in self.client.lrange(self.key, 0, -1)]
        return {
            "events": n,
            "received": len(lat),
            "p50_ms": round(percentile(lat, 0.5), 2),
            "p95_ms": round(percentile(lat, 0.95), 2),
            "p99_ms": round(percentile(lat, 0.99), 2),
            "worker_cpu_pct_of_one_core": round(100 * cpu / elapsed, 1),
        }

    def drain(self, n: int) -> dict[str, Any]:
        """Enqueue ``n`` no-op jobs while the worker is stopped, then time how fast it drains them."""
        os.killpg(self.proc.pid, signal.SIGSTOP)
        try:
            self.send_many(n)
        finally:
            os.killpg(self.proc.pid, signal.SIGCONT)
        queues = ["bench"] if self.mode == "plain" else ["events", "default"]
        t0 = time.monotonic()
        deadline = t0 + 300
        while time.monotonic() < deadline:
            pipe = self.client.pipeline()
            for q in queues:
                pipe.hlen(f"{self.namespace}:{q}.msgs")
                pipe.hlen(f"{self.namespace}:{q}.DQ.msgs")
            if sum(pipe.execute()) == 0:
                break
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
        return {"jobs": n * (1 if self.mode == "plain" else 2), "events": n, "events_per_s": round(n / elapsed)}

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # the main process forwards it (a second one hangs Dramatiq)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        drop_namespace(self.client, self.namespace)


def bench_latency(rates: list[float], seconds: float, runs: int) -> dict[str, Any]:
    """Publish -> subscriber start at each rate; baseline: Dramatiq send -> actor start."""
    import statistics

    out: dict[str, Any] = {}
    for rate in rates:
        rows: dict[str, list[dict[str, Any]]] = {"eventbus": [], "dramatiq": []}
        for _ in range(runs):
            for mode, name in (("eventbus", "eventbus"), ("plain", "dramatiq")):
                side = Side(mode, f"ebbench-{uuid.uuid4().hex[:8]}")
                try:
                    rows[name].append(side.run_rate(rate, seconds))
                finally:
                    side.stop()
        out[f"{int(rate)}_per_s"] = {
            name: {k: round(statistics.median(r[k] for r in rs), 2) for k in rs[0]} for name, rs in rows.items()
        }
    return out


def bench_drain(n: int, runs: int) -> dict[str, Any]:
    """No-op deliveries drained by one worker process x 8 threads; baseline: plain Dramatiq actors."""
    import statistics

    rows: dict[str, list[dict[str, Any]]] = {"eventbus": [], "dramatiq": []}
    for _ in range(runs):
        for mode, name in (("eventbus", "eventbus"), ("plain", "dramatiq")):
            side = Side(mode, f"ebbench-{uuid.uuid4().hex[:8]}")
            try:
                rows[name].append(side.drain(n))
            finally:
                side.stop()
    out: dict[str, Any] = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in rows.items()}
    # One eventbus event is one delivery (one subscriber) plus its fan-out, which the ledger records as a
    # job of the events queue; one plain Dramatiq message is one job. Both comparisons are reported.
    eb, dq = out["eventbus"], out["dramatiq"]
    eb["deliveries_per_s"] = eb["events_per_s"]
    eb["jobs_per_s"] = round(eb["jobs"] / (eb["events"] / eb["events_per_s"]))
    dq["jobs_per_s"] = dq["events_per_s"]
    out["ratio_deliveries_vs_dramatiq_jobs"] = round(eb["deliveries_per_s"] / dq["jobs_per_s"], 2)
    out["ratio_jobs_per_s"] = round(eb["jobs_per_s"] / dq["jobs_per_s"], 2)
    return out
