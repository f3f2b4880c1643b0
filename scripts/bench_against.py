"""``scripts/bench --against REF``: publish, drain and latency of this tree beside a git revision's, in one run.

The baseline is checked out with ``git worktree add --detach`` into a temporary folder (removed at the end,
also on an error or Ctrl-C). Each measurement runs in a fresh subprocess whose working directory and
``PYTHONPATH`` put one tree first (EVENTBUS_BENCH_TREE tells this tree's bench code which one), so the two
versions of ``eventbus`` never share a process. Both trees run this tree's measurement code, which uses only
the public API (``eventbus.broker``, ``eventbus.settings``, ``publish_event``/``publish_many``, the workers
module and ``bench_apps``; the SQLite drain also counts waiting messages with the broker's ``queue_size``,
the same in both layouts). Rounds interleave the trees (A B, B A, A B, ...) so machine noise hits both.

Each figure: baseline and current medians over the rounds, ``ratio`` oriented so that > 1 means the current
tree is better (throughput: current / baseline; latency and CPU: baseline / current), and ``within_5pct``:
the current tree is at most 5% worse (ratio >= 0.95; being faster passes). ``ratio_paired`` is the median
of each round's own ratio (``within_5pct_paired`` its verdict): the two trees of a round ran at the same
moment, so it is steadier than the ratio of medians. ``spread_pct`` shows how much the rounds of the noisier
tree disagree. Publish figures alternate blocks of 300 calls between the two trees' processes within a round,
both pinned to one CPU; drain and latency run one tree after the other, each with its own worker process.
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
from contextlib import ExitStack, contextmanager
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
    """One round of a drain or latency ``group`` for the tree on sys.path (imported here, so it is the tree's)."""
    import bench
    import eventbus

    out: dict[str, Any] = {"eventbus_file": eventbus.__file__}
    section, kind = group.split(".")
    ns = bench.Namespaces()
    try:
        if section == "drain":
            n = 1000 if quick else 5000
            out["deliveries_per_s"] = redis_drain(ns, n) if kind == "redis" else sqlite_drain(n)
        else:
            rate = int(kind.removesuffix("_per_s"))
            seconds = 2 if quick else (10 if rate == 200 else 5)
            out.update(latency(ns, rate, seconds))
    finally:
        ns.cleanup()
    return out


def serve_publish(kind: str) -> None:
    """Answer the parent's commands on stdin, one JSON line each: ``event`` times a block of publish_event
    calls, ``many`` one publish_many of 10,000. The parent alternates blocks between two such processes."""
    import bench
    import eventbus

    ns = bench.Namespaces()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bench.install_bus(ns, bench.REDIS_URL if kind == "redis" else f"sqlite:///{Path(tmp) / 'publish.db'}")
            print(json.dumps({"eventbus_file": eventbus.__file__}), flush=True)
            for line in sys.stdin:
                if line.strip() == "event":
                    print(json.dumps(bench.timed_loop(bench.PUBLISH_BLOCK, bench.publish_one)), flush=True)
                else:
                    print(json.dumps({"per_s": bench.publish_many_per_s()}), flush=True)
    finally:
        ns.cleanup()


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


def start(tree: Path, args: list[str], stderr: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    """This script with ``args`` in a fresh interpreter whose cwd and PYTHONPATH put ``tree`` first."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    return subprocess.Popen(
        cmd, env=clean_env(tree), cwd=tree, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True
    )


def check_import(tree: Path, line: str) -> None:
    """Fail unless the subprocess's first line says it imported ``tree``'s eventbus."""
    imported = Path(json.loads(line)["eventbus_file"]).resolve()
    if not imported.is_relative_to(tree.resolve()):
        raise RuntimeError(f"the subprocess for {tree} imported {imported}: check PYTHONPATH")


@contextmanager
def stopping(procs: list[subprocess.Popen[str]]) -> Iterator[None]:
    """On Ctrl-C or SIGTERM, let each measurement stop its worker processes and drop its keys first."""
    try:
        yield
    except BaseException:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(60)
        raise


def run_measure(tree: Path, group: str, quick: bool) -> dict[str, Any]:
    """One drain or latency measurement of ``group`` in a fresh interpreter importing ``tree``'s eventbus."""
    proc = start(tree, ["--measure", group] + (["--quick"] if quick else []))
    with stopping([proc]):
        stdout, stderr = proc.communicate("")
    if proc.returncode != 0:
        raise RuntimeError(f"measuring {group} in {tree} failed:\n{stderr[-3000:]}")
    last = stdout.strip().splitlines()[-1]
    check_import(tree, last)
    return {k: v for k, v in json.loads(last).items() if k != "eventbus_file"}


def run_publish(trees: dict[str, Path], order: tuple[str, str], kind: str, quick: bool) -> dict[str, dict[str, Any]]:
    """One round of publish figures: a fresh process per tree, blocks of calls alternating between them."""
    blocks: dict[str, list[dict[str, float]]] = {side: [] for side in order}
    bulk: dict[str, float] = {}
    with ExitStack() as stack:
        logs = {side: stack.enter_context(tempfile.TemporaryFile("w+")) for side in order}  # stderr, read on failure
        procs = {side: start(trees[side], ["--serve-publish", kind], stderr=logs[side]) for side in order}
        # Both on one CPU: unpinned, a process that lands beside redis-server publishes up to twice as fast as
        # one that does not, for its whole life; pinned together, both trees meet the same placement.
        cpu = max(os.sched_getaffinity(0))
        for proc in procs.values():
            os.sched_setaffinity(proc.pid, {cpu})

        def read(side: str) -> str:
            stdout = procs[side].stdout
            assert stdout is not None
            line = stdout.readline()
            if not line:
                logs[side].seek(0)
                raise RuntimeError(f"publish subprocess for {trees[side]} failed:\n{logs[side].read()[-3000:]}")
            return line

        def ask(side: str, command: str) -> dict[str, float]:
            stdin = procs[side].stdin
            assert stdin is not None
            stdin.write(command + "\n")
            stdin.flush()
            answer: dict[str, float] = json.loads(read(side))
            return answer

        with stopping(list(procs.values())):
            for side in order:
                check_import(trees[side], read(side))
            for b in range(2 if quick else 10):
                for side in order if b % 2 == 0 else order[::-1]:
                    blocks[side].append(ask(side, "event"))
            for side in order:
                bulk[side] = ask(side, "many")["per_s"]
            for proc in procs.values():
                proc.communicate("")
    return {
        side: {
            "publish_event_per_s": statistics.median(r["per_s"] for r in blocks[side]),
            "publish_event_p50_ms": statistics.median(r["p50_ms"] for r in blocks[side]),
            "publish_many_10k_per_s": round(bulk[side]),
        }
        for side in order
    }


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
                log(f"bench --against: round {i + 1}/{runs} {group} ({' then '.join(order)})")
                if group.startswith("publish."):
                    for side, row in run_publish(trees, order, group.split(".")[1], quick).items():
                        rows[group][side].append(row)
                else:
                    for side in order:
                        rows[group][side].append(run_measure(trees[side], group, quick))
    figures: dict[str, Any] = {}
    for group, name, higher_is_better in FIGURES:
        if group not in rows:
            continue
        base_vals = [r[name] for r in rows[group]["baseline"]]
        cur_vals = [r[name] for r in rows[group]["current"]]
        b, c = statistics.median(base_vals), statistics.median(cur_vals)
        ratio = (c / b if higher_is_better else b / c) if b and c else float("nan")
        pairs = [(cv / bv if higher_is_better else bv / cv) for bv, cv in zip(base_vals, cur_vals, strict=True)]
        figures[f"{group}.{name}"] = {
            "baseline": round(b, 3),
            "current": round(c, 3),
            "ratio": round(ratio, 3),
            "within_5pct": ratio >= 1 - TOLERANCE,
            # Median of each round's own ratio: both trees measured at the same moment, so drift between
            # rounds (CPU placement, other load) cancels; usually much tighter than the ratio of medians.
            "ratio_paired": round(statistics.median(pairs), 3),
            "within_5pct_paired": statistics.median(pairs) >= 1 - TOLERANCE,
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
        "all_within_5pct_paired": all(f["within_5pct_paired"] for f in figures.values()),
        "figures": figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="one measurement for bench.py --against (internal)")
    parser.add_argument("--measure", help="one round of a drain or latency group, e.g. drain.redis")
    parser.add_argument("--serve-publish", choices=("redis", "sqlite"), help="publish blocks on request")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop workers and drop keys in the finally blocks
    if args.serve_publish:
        serve_publish(args.serve_publish)
    else:
        print(json.dumps(measure(args.measure, args.quick)))


if __name__ == "__main__":
    main()
