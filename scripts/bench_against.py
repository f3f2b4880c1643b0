"""``scripts/bench --against REF``: publish, drain and latency of this tree beside a git revision's, in one run.

The baseline is checked out with ``git worktree add --detach`` into a temporary folder (removed at the end,
also on an error or Ctrl-C). Each measurement runs in a fresh subprocess whose working directory and
``PYTHONPATH`` put one tree first (EVENTBUS_BENCH_TREE tells this tree's bench code which one), so the two
versions of ``eventbus`` never share a process. Both trees run this tree's measurement code, which uses only
the public API (``eventbus.broker``, ``eventbus.settings``, ``publish_event``/``publish_many``, the workers
module and ``bench_apps``). Rounds interleave the trees (A B, B A, A B, ...) so machine noise hits both.

Each figure: baseline and current medians over the rounds, ``ratio`` oriented so that > 1 means the current
tree is better (throughput: current / baseline; latency and CPU: baseline / current), and ``within_5pct``:
the current tree is at most 5% worse (ratio >= 0.95; being faster passes). ``spread_pct`` shows how
much the rounds of the noisier tree disagree: on a busy machine a 5% verdict needs a spread well under 5%.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 0.05

# (group, figure, higher is better): the figures compared; a group is one subprocess per tree per round.
FIGURES: list[tuple[str, str, bool]] = [
    ("publish.redis", "publish_event_per_s", True),
    ("publish.redis", "publish_event_p50_ms", False),
    ("publish.redis", "publish_many_10k_per_s", True),
    ("publish.sqlite", "publish_event_per_s", True),
    ("publish.sqlite", "publish_event_p50_ms", False),
    ("publish.sqlite", "publish_many_10k_per_s", True),
    ("drain.redis", "deliveries_per_s", True),
    ("drain.sqlite", "deliveries_per_s", True),
    ("latency.200_per_s", "p50_ms", False),
    ("latency.200_per_s", "p99_ms", False),
    ("latency.200_per_s", "worker_cpu_pct_of_one_core", False),
    ("latency.1000_per_s", "p50_ms", False),
    ("latency.1000_per_s", "p99_ms", False),
]


# ---- in the measuring subprocess (EVENTBUS_BENCH_TREE names the tree it imports) ----


def measure(group: str, quick: bool) -> dict[str, Any]:
    """One round of ``group`` for the tree on sys.path; imported here so the tree's eventbus is the one loaded."""
    import bench
    import eventbus

    out: dict[str, Any] = {"eventbus_file": eventbus.__file__}
    section, kind = group.split(".")
    ns = bench.Namespaces()
    try:
        if section == "publish":
            with tempfile.TemporaryDirectory() as tmp:
                url = bench.REDIS_URL if kind == "redis" else f"sqlite:///{Path(tmp) / 'publish.db'}"
                res = bench.bench_publish(ns, 300 if quick else 3000, 1, url=url, baselines=False)
            out["publish_event_per_s"] = res["publish_event"]["per_s"]
            out["publish_event_p50_ms"] = res["publish_event"]["p50_ms"]
            out["publish_many_10k_per_s"] = res["publish_many_10k_per_s"]
        elif section == "drain":
            n = 1000 if quick else 5000
            out["deliveries_per_s"] = redis_drain(ns, n) if kind == "redis" else sqlite_drain(n)
        else:
            rate = int(kind.removesuffix("_per_s"))
            seconds = 2 if quick else (10 if rate == 200 else 5)
            out.update(latency(ns, rate, seconds))
    finally:
        ns.cleanup()
    return out


def redis_drain(ns: Any, n: int) -> int:
    """Deliveries/s of one worker process x 8 threads draining ``n`` events (fan-out plus delivery each)."""
    from bench_e2e import Side

    side = Side("eventbus", ns.new())
    try:
        return int(side.drain(n)["events_per_s"])
    finally:
        side.stop()


def latency(ns: Any, rate: int, seconds: float) -> dict[str, Any]:
    """Publish -> subscriber start at ``rate``/s for ``seconds``, as the latency section measures it."""
    from bench_e2e import Side

    side = Side("eventbus", ns.new())
    try:
        return side.run_rate(rate, seconds)
    finally:
        side.stop()


def sqlite_drain(n: int) -> int:
    """Deliveries/s of one worker process x 8 threads draining ``n`` events published to a SQLite file.

    Timed like the SQLite section: from the first message done (the worker has started) to queues empty.
    """
    from bench import TREE
    from eventbus import declare_topic, publish_many
    from eventbus.broker import make_broker, set_broker
    from eventbus.settings import Settings, set_settings

    queues = ("events", "default")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'drain.db'}"
        settings = replace(Settings(), broker_url=url, default_subscribers=False)
        set_settings(settings)
        broker = make_broker(settings)
        set_broker(broker)
        declare_topic("bench.happened")
        for i in range(0, n, 1000):
            publish_many([("bench.happened", {"n": j}) for j in range(i, min(n, i + 1000))])
        env = dict(
            os.environ,
            PYTHONPATH=f"{TREE}{os.pathsep}{ROOT / 'scripts'}",
            EVENTBUS_BROKER_URL=url,
            EVENTBUS_SUBSCRIBERS="bench_apps",
            EVENTBUS_DEFAULT_SUBSCRIBERS="0",
            dramatiq_worker_timeout="100",
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "eventbus.workers", "-p", "1", "-t", "8"],
            env=env,
            cwd=TREE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:

            def waiting() -> int:
                return sum(broker.queue_size(q) for q in queues)

            # Each event becomes one delivery: events plus deliveries waiting count down from n to 0.
            deadline = time.monotonic() + 300
            while waiting() == n and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.005)
            started, left_at_start = time.perf_counter(), waiting()
            while waiting() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
            if waiting():
                raise RuntimeError(f"SQLite drain did not finish: {waiting()} of {n} left")
        finally:
            proc.terminate()
            proc.wait(30)
            set_broker(None)
            set_settings(None)
    return round(left_at_start / elapsed)


# ---- in the parent: the worktree, the interleaved rounds, the comparison ----


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


@contextmanager
def baseline_tree(ref: str) -> Iterator[Path]:
    """A detached worktree of ``ref`` in a temporary folder, removed on the way out (error and Ctrl-C too)."""
    folder = Path(tempfile.mkdtemp(prefix="eventbus-bench-against-"))
    git("worktree", "add", "--detach", str(folder), ref)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally below runs
    try:
        yield folder
    finally:
        signal.signal(signal.SIGTERM, previous)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], capture_output=True)


def clean_env(tree: Path) -> dict[str, str]:
    """This environment minus EVENTBUS_* / dramatiq_* settings (defaults only), with ``tree`` first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTBUS_", "dramatiq_", "PYTHONPATH"))}
    if "EVENTBUS_BENCH_REDIS_URL" in os.environ:
        env["EVENTBUS_BENCH_REDIS_URL"] = os.environ["EVENTBUS_BENCH_REDIS_URL"]
    env["EVENTBUS_BENCH_TREE"] = str(tree)
    env["PYTHONPATH"] = f"{tree}{os.pathsep}{ROOT / 'scripts'}"
    return env


def run_measure(tree: Path, group: str, quick: bool) -> dict[str, Any]:
    """One measurement of ``group`` in a fresh interpreter importing ``tree``'s eventbus."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", group] + (["--quick"] if quick else [])
    proc = subprocess.Popen(
        cmd, env=clean_env(tree), cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = proc.communicate()
    except BaseException:
        # Ctrl-C or SIGTERM: let the measurement stop its worker processes and drop its keys first.
        proc.terminate()
        proc.wait(60)
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"measuring {group} in {tree} failed:\n{stderr[-3000:]}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    imported = Path(result.pop("eventbus_file")).resolve()
    if not imported.is_relative_to(tree.resolve()):
        raise RuntimeError(f"measuring {group} for {tree} imported {imported}: check PYTHONPATH")
    return result


def groups_for(sections: list[str], quick: bool) -> list[str]:
    groups = {"publish": ["publish.redis", "publish.sqlite"], "drain": ["drain.redis", "drain.sqlite"]}
    groups["latency"] = ["latency.200_per_s"] if quick else ["latency.200_per_s", "latency.1000_per_s"]
    return [g for s in sections for g in groups[s]]


def spread_pct(values: list[float]) -> float:
    middle = statistics.median(values)
    return 100 * (max(values) - min(values)) / middle if middle else float("nan")


def compare(ref: str, sections: list[str], runs: int, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Every figure of ``sections`` for ``ref`` (baseline) and this tree (current), ``runs`` interleaved rounds."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    head = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--", "eventbus"))
    groups = groups_for(sections, quick)
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {g: {"baseline": [], "current": []} for g in groups}
    with baseline_tree(commit) as base:
        trees = {"baseline": base, "current": ROOT}
        for i in range(runs):
            order = ("baseline", "current") if i % 2 == 0 else ("current", "baseline")
            for group in groups:
                for side in order:
                    log(f"bench --against: round {i + 1}/{runs} {group} {side}")
                    rows[group][side].append(run_measure(trees[side], group, quick))
    figures: dict[str, Any] = {}
    for group, name, higher_is_better in FIGURES:
        if group not in rows:
            continue
        base_vals = [r[name] for r in rows[group]["baseline"]]
        cur_vals = [r[name] for r in rows[group]["current"]]
        b, c = statistics.median(base_vals), statistics.median(cur_vals)
        ratio = (c / b if higher_is_better else b / c) if b and c else float("nan")
        figures[f"{group}.{name}"] = {
            "baseline": round(b, 3),
            "current": round(c, 3),
            "ratio": round(ratio, 3),
            "within_5pct": ratio >= 1 - TOLERANCE,
            # Rounds' range over median, the noisier side's: a verdict is no sharper than this.
            "spread_pct": round(max(spread_pct(base_vals), spread_pct(cur_vals)), 1),
            "baseline_rounds": [round(v, 3) for v in base_vals],
            "current_rounds": [round(v, 3) for v in cur_vals],
        }
    return {
        "ref": ref,
        "commit": commit,
        "current_commit": head,
        "current_eventbus_dirty": dirty,
        "runs": runs,
        "order": "rounds alternate baseline/current first (A B, B A, ...); one fresh subprocess per tree per round",
        "ratio": "> 1 means current is better: throughput current/baseline, latency and CPU baseline/current",
        "within_5pct": f"current at most {TOLERANCE:.0%} worse than baseline (ratio >= {1 - TOLERANCE})",
        "all_within_5pct": all(f["within_5pct"] for f in figures.values()),
        "figures": figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="one measurement for bench.py --against (internal)")
    parser.add_argument("--measure", required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop workers and drop keys in the finally blocks
    print(json.dumps(measure(args.measure, args.quick)))


if __name__ == "__main__":
    main()
