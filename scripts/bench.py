"""Benchmarks for eventbus, each beside a baseline measured in the same run.

Figures are medians over --runs runs (ours and the baseline interleaved, so machine noise hits both).
Output: one JSON document on stdout, also written to bench/results/<UTC time>.json and bench/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The eventbus package measured: this checkout, or the tree --against runs a subprocess for.
TREE = Path(os.environ.get("EVENTBUS_BENCH_TREE", ROOT))
sys.path.insert(0, str(TREE))
sys.path.insert(0, str(ROOT / "scripts"))

import dramatiq  # noqa: E402
import redis  # noqa: E402
from bench_keys import drop_namespace  # noqa: E402
from dramatiq.brokers.redis import RedisBroker as DramatiqRedisBroker  # noqa: E402

from eventbus import declare_topic, publish_event, publish_many  # noqa: E402
from eventbus.broker import make_broker, set_broker  # noqa: E402
from eventbus.settings import Settings, set_settings  # noqa: E402

REDIS_URL = os.environ.get("EVENTBUS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Namespaces:
    """Per-run key prefixes, deleted at the end (never a FLUSH)."""

    def __init__(self) -> None:
        self.client = redis.Redis.from_url(REDIS_URL)
        self.made: list[str] = []

    def new(self) -> str:
        ns = f"ebbench-{uuid.uuid4().hex[:8]}"
        self.made.append(ns)
        return ns

    def cleanup(self) -> None:
        for ns in self.made:
            drop_namespace(self.client, ns)


PUBLISH_BLOCK = 300  # calls per block: ours and the baselines alternate in blocks, so a noisy moment hits all


def timed_loop(n: int, call: Callable[[int], Any]) -> dict[str, float]:
    latencies = []
    started = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        call(i)
        latencies.append(time.perf_counter() - t)
    total = time.perf_counter() - started
    return {
        "per_s": n / total,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


PAYLOAD = {"user_id": 42, "model_id": "m-17", "email": "someone@example.com", "note": "x" * 60}


def install_bus(ns: Namespaces, url: str = REDIS_URL) -> None:
    """Our bus on ``url`` (Redis under a fresh namespace, or SQLite), with the benchmark's topic declared."""
    declare_topic("bench.happened")
    settings = replace(Settings(), broker_url=url, namespace=ns.new())
    set_settings(settings)
    set_broker(make_broker(settings))


def publish_one(i: int) -> None:
    publish_event("bench.happened", PAYLOAD)


def publish_many_per_s(n: int = 10_000) -> float:
    """Events/s of one publish_many call of ``n`` events."""
    batch = [("bench.happened", PAYLOAD)] * n
    t = time.perf_counter()
    publish_many(batch)
    return n / (time.perf_counter() - t)


def bench_publish(ns: Namespaces, n: int, runs: int) -> dict[str, Any]:
    """publish_event single calls and publish_many vs a Dramatiq send() loop and a redis-py LPUSH loop.

    Per call figures are medians over blocks of 300 calls, ours and the baselines alternating.
    """
    install_bus(ns)

    plain = DramatiqRedisBroker(url=REDIS_URL, namespace=ns.new())
    dramatiq.set_broker(plain)

    @dramatiq.actor(broker=plain, queue_name="bench")
    def plain_actor(event: dict[str, Any]) -> None:
        pass

    lpush = redis.Redis.from_url(REDIS_URL)
    lpush_key = f"{ns.new()}:list"
    calls: dict[str, Callable[[int], Any]] = {
        "publish_event": publish_one,
        "dramatiq_send": lambda i: plain_actor.send({"topic": "x", "payload": PAYLOAD}),
        "redis_lpush": lambda i: lpush.lpush(lpush_key, json.dumps(PAYLOAD)),
    }
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in calls}
    ratios: list[float] = []
    bulk: list[float] = []
    for _ in range(runs):
        for _ in range(max(1, n // PUBLISH_BLOCK)):
            for name, call in calls.items():
                samples[name].append(timed_loop(PUBLISH_BLOCK, call))
            ratios.append(samples["publish_event"][-1]["per_s"] / samples["dramatiq_send"][-1]["per_s"])
        bulk.append(publish_many_per_s())
    set_broker(None)
    set_settings(None)
    out: dict[str, Any] = {"n": n, "runs": runs}
    for name, rows in samples.items():
        out[name] = {key: round(statistics.median(r[key] for r in rows), 3) for key in rows[0]}
    out["publish_many_10k_per_s"] = round(statistics.median(bulk))
    out["ratio_publish_vs_dramatiq_send"] = round(statistics.median(ratios), 2)  # median of the blocks' ratios
    return out


def section_latency(ns: Namespaces, args: argparse.Namespace) -> dict[str, Any]:
    from bench_e2e import bench_latency

    if args.quick:
        return bench_latency([200], seconds=2, runs=1)
    return {**bench_latency([200], seconds=10, runs=3), **bench_latency([1000], seconds=5, runs=3)}


def section_drain(ns: Namespaces, args: argparse.Namespace) -> dict[str, Any]:
    from bench_e2e import bench_drain

    return bench_drain(1000 if args.quick else 5000, runs=1 if args.quick else 3)


def section_email(ns: Namespaces, args: argparse.Namespace) -> dict[str, Any]:
    from bench_mail import bench_all

    return bench_all(300 if args.quick else 2000)


def section_queues(ns: Namespaces, args: argparse.Namespace) -> dict[str, Any]:
    import bench_queues as q

    scheduled = 2_000 if args.quick else 100_000
    return {
        "bulk": q.bench_bulk(5_000 if args.quick else 20_000),
        "critical_delay": q.bench_critical_delay(3 if args.quick else 20, 1_000 if args.quick else 10_000),
        "rate_accuracy": q.bench_rate_accuracy(20, 30 if args.quick else 100),
        "scheduled_rss": {
            "eventbus": q.bench_scheduled_rss(scheduled),
            "dramatiq": q.bench_scheduled_rss_dramatiq(scheduled),
        },
    }


def section_ledger(ns: Namespaces, args: argparse.Namespace) -> dict[str, Any]:
    from bench_control import compare

    if args.quick:
        return {kind: compare(1000, 1, kind) for kind in ("redis", "sqlite")}
    # The worker is pinned to a CPU (EVENTBUS_PIN_WORKERS) in both halves: unpinned, one process hands
    # the GIL between the two cores and a drain's speed swings by +-20% from one run to the next.
    # Each round drains unpinned workers too, reported under "unpinned" (and pinned vs unpinned).
    # Drains of 5-6 s each: Redis drains 40,000 jobs in about that time, SQLite 20,000.
    both = (True, False)
    return {"redis": compare(40_000, 11, "redis", both), "sqlite": compare(20_000, 11, "sqlite", both)}


def section_sqlite(ns: Namespaces, args: argparse.Namespace) -> dict[str, Any]:
    from bench_sqlite import bench_sqlite

    runs = [bench_sqlite(1_000 if args.quick else 5_000) for _ in range(1 if args.quick else 3)]
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


SECTIONS: dict[str, Callable[[Namespaces, argparse.Namespace], dict[str, Any]]] = {
    "publish": lambda ns, a: bench_publish(ns, 500 if a.quick else 3000, 2 if a.quick else 5),
    "latency": section_latency,
    "drain": section_drain,
    "email": section_email,
    "queues": section_queues,
    "ledger": section_ledger,
    "sqlite": section_sqlite,
}


def commit() -> str:
    """The checkout's commit, with ``-dirty`` when it has uncommitted changes: what produced the figures."""
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True, check=False)  # fmt: skip
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if rev.returncode == 0 else "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run, not figures to quote")
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS), help="run only these sections")
    parser.add_argument(
        "--against",
        metavar="REF",
        help="compare publish, drain and latency (or those of --only) with git revision REF, in one interleaved run",
    )
    parser.add_argument("--runs", type=int, help="rounds per tree for --against (default 5, 3 with --quick)")
    args = parser.parse_args()
    ns = Namespaces()
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    sections = args.only or list(SECTIONS)
    if args.against:
        from bench_against import compare

        comparable = [name for name in ("publish", "drain", "latency") if name in sections]
        if not comparable:
            parser.error("--against compares only publish, drain and latency")
        runs = args.runs or (3 if args.quick else 5)
        results["against"] = compare(args.against, comparable, runs, args.quick, lambda m: print(m, file=sys.stderr))
        sections = ["against"]
    else:
        try:
            for name in sections:
                print(f"bench: {name} ...", file=sys.stderr)
                results[name] = SECTIONS[name](ns, args)
        finally:
            ns.cleanup()
    for name in sections:
        results[name]["measured_at"] = results["started_at"]
        results[name]["commit"] = commit()
    text = json.dumps(results, indent=2)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{results['started_at'].replace(':', '')}.json").write_text(text + "\n")
    if not args.quick:
        latest = ROOT / "bench" / "latest.json"
        # A partial run (--only) replaces just its own sections of the latest figures.
        merged = json.loads(latest.read_text()) if (args.only or args.against) and latest.exists() else {}
        merged.update(results)
        merged["verdicts"] = verdicts(merged)
        latest.write_text(json.dumps(merged, indent=2) + "\n")
        results["verdicts"] = merged["verdicts"]
    print(json.dumps(results, indent=2))


# (target, figure's path in the results, bound): a positive bound is a floor, a negative one a ceiling.
TARGETS: list[tuple[str, str, float]] = [
    ("publish_event >= 1.2x Dramatiq send()", "publish.ratio_publish_vs_dramatiq_send", 1.2),
    ("publish_many >= 20,000/s", "publish.publish_many_10k_per_s", 20_000),
    ("200/s: p50 <= 3 ms", "latency.200_per_s.eventbus.p50_ms", -3),
    ("200/s: p99 <= 15 ms", "latency.200_per_s.eventbus.p99_ms", -15),
    ("200/s: worker CPU <= 35% of a core", "latency.200_per_s.eventbus.worker_cpu_pct_of_one_core", -35),
    ("1,000/s: p99 <= 100 ms", "latency.1000_per_s.eventbus.p99_ms", -100),
    ("drain: deliveries/s >= 1.2x Dramatiq jobs/s, ledger on", "drain.ratio_deliveries_vs_dramatiq_jobs", 1.2),
    ("email pooled >= 500/s", "email.plain.pooled_per_s", 500),
    ("email pooled >= 3x naive, STARTTLS (as providers require)", "email.starttls.speedup", 3),
    ("ledger on >= 0.85x off (Redis)", "ledger.redis.ratio_on_vs_off", 0.85),
    ("ledger on >= 0.85x off (SQLite)", "ledger.sqlite.ratio_on_vs_off", 0.85),
    ("SQLite drain >= 1,000 jobs/s", "sqlite.drain_jobs_per_s", 1000),
    ("SQLite single publish >= 2,000/s", "sqlite.single_publish_events_per_s", 2000),
    ("SQLite bulk publish >= 20,000/s", "sqlite.bulk_publish_events_per_s", 20_000),
]


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issues against the figures at hand (sections not measured are left out)."""
    out = []
    for target, figure, bound in TARGETS:
        value: Any = results
        for key in figure.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            met = value >= bound if bound > 0 else value <= -bound
            out.append({"target": target, "figure": figure, "value": value, "met": met})
    return out


if __name__ == "__main__":
    main()
