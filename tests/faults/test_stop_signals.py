"""Stop signals to a busy ``eventbus worker -p 2 -t 4``: a group SIGTERM, Ctrl-C, a repeated SIGTERM.

A signal to the whole process group (systemd's KillMode=control-group, Ctrl-C in a terminal) reaches
each worker process twice: directly and forwarded by Dramatiq's main process. That is one graceful
stop. A second SIGTERM a second later is a stop that will not wait: the running jobs are cut off
and come back by crash recovery (heartbeats on Redis, leases on SQLite).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.faults.conftest import Rig, held_message_ids
from tests.faults.table import report

pytestmark = [pytest.mark.slow]

PROCESSES, THREADS = 2, 4
SHUTDOWN_TIMEOUT_S = 5
# The restarted worker's janitor takes over a killed worker's messages this long after its last heartbeat.
QUICK = {"EVENTBUS_SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S), "EVENTBUS_HEARTBEAT_TIMEOUT_S": "2"}


def alive_in_group(pgid: int) -> list[int]:
    """PIDs of the process group that still run (zombies waiting to be reaped count as gone)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            pids.append(int(stat.parent.name))
    return pids


def seconds_until_gone(pgid: int, limit_s: float) -> float:
    """Time until no process of ``pgid`` runs; fails once ``limit_s`` has passed."""
    started = time.monotonic()
    while alive_in_group(pgid):
        assert time.monotonic() - started < limit_s, f"still running after {limit_s} s: {alive_in_group(pgid)}"
        time.sleep(0.02)
    return time.monotonic() - started


def restart_and_drain(bus: Rig, expected: set[tuple[str, str]]) -> None:
    bus.start_worker(processes=PROCESSES, threads=THREADS, cli="eventbus", **QUICK)
    bus.wait_done(expected, timeout_s=60)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_a_stop_signal_to_the_whole_group_under_load_stops_every_process_gracefully(rig, kind, signum):
    # Given `eventbus worker -p 2 -t 4` (shutdown timeout 5 s) working through 600 jobs of 30 ms
    bus = rig(kind)
    worker = bus.start_worker(processes=PROCESSES, threads=THREADS, cli="eventbus", **QUICK)
    expected = bus.publish(300, sleep_ms=30)
    wait_for(lambda: bus.ledger.done() >= 100, 60, worker)
    # When the whole process group gets the signal (systemd's KillMode=control-group; Ctrl-C in a terminal)
    os.killpg(worker.proc.pid, signum)
    # Then every process of the group is gone within the shutdown timeout + 1 s, with exit code 0
    gone_s = seconds_until_gone(worker.proc.pid, SHUTDOWN_TIMEOUT_S + 1)
    assert worker.proc.wait(5) == 0, worker.output()[-3000:]
    done_at_stop = bus.ledger.total()
    assert done_at_stop < len(expected), "the backlog was already done: the stop met no load"
    assert "Traceback" not in worker.output()
    assert "second stop signal" not in worker.output()
    # ... and a new worker runs the rest: nothing lost, nothing run twice (the stop was graceful)
    restart_and_drain(bus, expected)
    report(
        f"group {signal.Signals(signum).name} under load (-p 2 -t 4)",
        kind,
        bus.ledger.count(expected),
        recovery_s=gone_s,
        note=f"stopped after {done_at_stop} jobs; exit 0; recovery: signal -> every process gone",
    )


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_a_second_sigterm_a_second_later_ends_a_busy_worker_at_once(rig, kind):
    # Given `eventbus worker -p 2 -t 4` running 8 jobs of 2.5 s with 200 jobs of 20 ms behind them
    bus = rig(kind)
    worker = bus.start_worker(processes=PROCESSES, threads=THREADS, cli="eventbus", **QUICK)
    expected = bus.publish(PROCESSES * THREADS // 2, sleep_ms=2_500) | bus.publish(100, sleep_ms=20)
    wait_for(lambda: len(held_message_ids(bus)) >= PROCESSES * THREADS, 30, worker)
    time.sleep(0.3)
    # When the main process gets SIGTERM, and another one a second later
    os.kill(worker.proc.pid, signal.SIGTERM)
    time.sleep(1)
    os.kill(worker.proc.pid, signal.SIGTERM)
    # Then the worker does not wait for its running jobs: every process is gone within a second
    gone_s = seconds_until_gone(worker.proc.pid, 1.0)
    worker.proc.wait(5)
    done_at_stop = bus.ledger.total()
    assert "second stop signal" in worker.output()
    # ... and after a restart every job runs: the cut-off ones again (at most one per thread)
    back_at = time.time()
    restart_and_drain(bus, expected)
    report(
        "second SIGTERM 1 s after the first, busy",
        kind,
        bus.ledger.count(expected),
        allowed_duplicates=PROCESSES * THREADS,
        recovery_s=gone_s,
        note=f"exit {worker.proc.returncode} after {done_at_stop} jobs; "
        f"drained {time.time() - back_at:.1f} s after restart; recovery: 2nd signal -> every process gone",
    )
