"""Subscribers for the control-plane contract tests; they run in the test process (in-process worker).

- ``cc.happened``: ``cc_ok`` (queue ``cc_ok``) succeeds; ``cc_broken`` (queue ``cc_dead``, max_retries=2)
  fails until ``FIXED`` is set.
- ``cc.flaky``: ``cc_flaky`` (queue ``cc_flaky``) takes 0.3 s per attempt and fails the first one.
- ``cc.slow``: ``cc_slow`` (queue ``cc_slow``) records when it starts, then sleeps ``sleep_ms``.
- ``cc.poison``: ``cc_poison`` (queue ``cc_poison``) runs in a worker process: it appends its run to the
  file named by ``CC_RUNS_FILE``, then SIGKILLs its worker (``kill_after_ms`` later) if the payload says so.

:func:`runs` counts the runs of every subscription, in this process and in those worker processes.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

from eventbus import Event, declare_topic, subscribe

declare_topic("cc.happened")
declare_topic("cc.flaky")
declare_topic("cc.slow")
declare_topic("cc.poison")

RUNS_FILE_ENV = "CC_RUNS_FILE"

CALLS: Counter[str] = Counter()
STARTS: list[float] = []
FIXED = threading.Event()
_lock = threading.Lock()


def record(name: str, event: Event) -> int:
    with _lock:
        CALLS[f"{name}|{event.id}"] += 1
        return CALLS[f"{name}|{event.id}"]


def runs() -> Counter[str]:
    """Runs per ``"<subscription>|<event id>"``: this process's, and those worker processes appended to the runs file."""
    with _lock:
        counted = Counter(CALLS)
    path = os.environ.get(RUNS_FILE_ENV)
    if path and Path(path).exists():
        counted.update(line for line in Path(path).read_text().splitlines() if line)
    return counted


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


@subscribe("cc.poison", name="cc_poison", queue="cc_poison", max_retries=0)
def cc_poison(event: Event) -> None:
    with open(os.environ[RUNS_FILE_ENV], "a") as runs_file:
        runs_file.write(f"cc_poison|{event.id}\n")
        runs_file.flush()
        os.fsync(runs_file.fileno())
    if event.payload.get("kill"):
        time.sleep(float(event.payload.get("kill_after_ms", 0)) / 1000)
        os.kill(os.getpid(), signal.SIGKILL)
