"""Drain throughput with the job ledger on vs off (issue 5: ledger on must reach >= 85% of off).

    .venv/bin/python scripts/bench_control.py [N] [ROUNDS] [redis|sqlite]

``bench_drain(ledger, n, kind, pin)`` enqueues ``n`` no-op deliveries to a paused queue, starts one
worker process with 8 threads (pinned to a CPU with ``pin``, see ``eventbus.affinity``), resumes the
queue and times until every message is acked.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("EVENTBUS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from bench_keys import drop_namespace  # noqa: E402

from eventbus.broker import make_broker, set_broker  # noqa: E402
from eventbus.control import ControlPlane  # noqa: E402
from eventbus.delivery import delivery_message, install_actors  # noqa: E402
from eventbus.event import Event  # noqa: E402
from eventbus.settings import Settings, set_settings  # noqa: E402
from eventbus.subscriber import get_subscription  # noqa: E402


def _wait(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: {what} not reached within {timeout_s} s")
        time.sleep(0.01)


def bench_drain(ledger: bool, n: int = 5000, kind: str = "redis", pin: bool = True) -> dict[str, Any]:
    """Jobs/s of ``n`` no-op deliveries drained by one worker process x 8 threads (ledger on or off).

    ``kind`` "redis" uses the configured Redis (own namespace); "sqlite" a new file in a temporary folder.
    """
    import bench_control_app  # noqa: F401  registers the subscription in this process

    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    settings = replace(Settings.from_env(), namespace=namespace, ledger=ledger, default_subscribers=False)
    folder = tempfile.mkdtemp(prefix="eventbus-bench-") if kind == "sqlite" else None
    url = f"sqlite:///{folder}/bench.db" if folder is not None else REDIS_URL
    settings = replace(settings, broker_url=url)
    set_settings(settings)
    broker: Any = make_broker(settings)
    set_broker(broker)
    install_actors(broker)
    env = dict(
        os.environ,
        EVENTBUS_BROKER_URL=settings.broker_url,
        EVENTBUS_NAMESPACE=namespace,
        EVENTBUS_SUBSCRIBERS="bench_control_app",
        EVENTBUS_DEFAULT_SUBSCRIBERS="0",
        EVENTBUS_LEDGER="1" if ledger else "0",
        EVENTBUS_PIN_WORKERS="1" if pin else "0",
        EVENTBUS_STATS_INTERVAL_S="0",
        PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'scripts'}",
        dramatiq_worker_timeout="100",
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "eventbus.workers", "-p", "1", "-t", "8"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    cp = ControlPlane(broker, settings)
    try:
        _wait(lambda: cp.workers() and "bench" in cp.queues(), 60, "worker boot")
        cp.pause("bench")
        sub = get_subscription("bench_noop")
        assert sub is not None
        messages = [delivery_message(Event("bench.noop", {"i": i}).to_dict(), sub, None, settings) for i in range(n)]
        broker.enqueue_many(messages)
        writer = broker.stores.ledger
        if writer is not None:
            writer.flush()
        started = time.monotonic()
        cp.resume("bench")
        if folder is not None:
            _wait(lambda: broker.queue_size("bench") == 0, 600, "drain")
        else:
            _wait(lambda: broker.client.hlen(f"{namespace}:bench.msgs") == 0, 600, "drain")
        drained_s = time.monotonic() - started
        if ledger:
            _wait(lambda: cp.stats().queue("bench").completed >= min(n, settings.keep_completed), 60, "ledger")
        return {
            "broker": kind,
            "ledger": ledger,
            "pinned": pin,
            "n": n,
            "seconds": round(drained_s, 3),
            "jobs_per_s": round(n / drained_s, 1),
        }
    finally:
        os.kill(worker.pid, signal.SIGTERM)  # the main process forwards it once; a second one kills mid-shutdown
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
        if folder is not None:
            broker.close()
            shutil.rmtree(folder, ignore_errors=True)
        else:
            drop_namespace(broker.client, namespace)
        set_broker(None)
        set_settings(None)


def compare(n: int, rounds: int, kind: str, pins: tuple[bool, ...] = (True,)) -> dict[str, Any]:
    """``rounds`` drains with the ledger off and on, back to back, the order swapped every round.

    ``ratio_on_vs_off`` is the median of the rounds' on/off ratios: each on-drain against the off-drain
    beside it, so a machine that slows down for a minute moves both halves of a ratio, not one median.
    ``ratio_of_medians`` is there too. With ``pins`` (True, False) each round drains pinned and
    unpinned workers too: the unpinned figures go under ``unpinned``, with ``pinned_vs_unpinned``,
    the median of the rounds' pinned/unpinned ratios with the ledger off.
    """
    pairs: dict[bool, list[tuple[float, float]]] = {pin: [] for pin in pins}
    for i in range(rounds):
        order = (False, True) if i % 2 == 0 else (True, False)
        for pin in pins:
            by_ledger = {ledger: bench_drain(ledger, n, kind, pin) for ledger in order}
            pairs[pin].append((by_ledger[False]["jobs_per_s"], by_ledger[True]["jobs_per_s"]))
    out = {**_ratios(pairs[pins[0]]), "n": n, "pinned": pins[0]}
    if len(pins) > 1:
        out["unpinned"] = _ratios(pairs[pins[1]])
        ratios = [p[0] / u[0] for p, u in zip(pairs[pins[0]], pairs[pins[1]])]
        out["pinned_vs_unpinned"] = round(statistics.median(ratios), 3)
    return out


def _ratios(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    off = statistics.median(p[0] for p in pairs)
    on = statistics.median(p[1] for p in pairs)
    return {
        "ledger_off_jobs_per_s": off,
        "ledger_on_jobs_per_s": on,
        "ratio_on_vs_off": round(statistics.median(p[1] / p[0] for p in pairs), 3),
        "ratio_of_medians": round(on / off, 3),
        "rounds": [{"off": p[0], "on": p[1], "ratio": round(p[1] / p[0], 3)} for p in pairs],
    }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    kind = sys.argv[3] if len(sys.argv) > 3 else "redis"
    if kind not in ("redis", "sqlite"):
        raise SystemExit(f"unknown broker kind {kind!r}; use redis or sqlite")
    pins = (True, False) if os.environ.get("BENCH_UNPINNED") == "1" else (True,)
    print(json.dumps({"broker": kind, **compare(n, rounds, kind, pins)}, indent=2))


if __name__ == "__main__":
    main()
