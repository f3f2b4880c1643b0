"""EVENTBUS_PIN_WORKERS: each worker process on a CPU of its own, the rest unpinned (eventbus.affinity)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from eventbus.errors import ConfigError
from eventbus.settings import Settings
from tests.conftest import WorkerProcess, wait_for


def _worker_pids(worker: WorkerProcess, n: int) -> list[int]:
    """The pids of the ``n`` worker processes under dramatiq's main process (forked: the same command line)."""
    main = worker.proc.pid
    command = Path(f"/proc/{main}/cmdline").read_text()

    def children() -> list[int]:
        pids = [int(p) for p in Path(f"/proc/{main}/task/{main}/children").read_text().split()]
        return [p for p in pids if Path(f"/proc/{p}/cmdline").read_text() == command]

    wait_for(lambda: len(children()) >= n, 30, worker)
    return children()


def _thread_affinities(pid: int) -> set[frozenset[int]]:
    return {frozenset(os.sched_getaffinity(int(tid))) for tid in os.listdir(f"/proc/{pid}/task")}


def test_pinned_workers_each_hold_one_cpu_and_a_process_beyond_the_cpus_stays_unpinned(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    cpus = frozenset(os.sched_getaffinity(0))
    n = len(cpus) + 1
    worker = start_worker(processes=n, threads=2, extra_env={"EVENTBUS_PIN_WORKERS": "1"})
    wait_for(lambda: "not pinned" in worker.output(), 10, worker)
    by_process = [_thread_affinities(pid) for pid in _worker_pids(worker, n)]
    assert all(len(threads) == 1 for threads in by_process), by_process  # every thread of a process alike
    affinities = [next(iter(threads)) for threads in by_process]
    pinned = sorted(next(iter(a)) for a in affinities if len(a) == 1)
    assert pinned == sorted(cpus)  # each CPU held by exactly one process
    assert affinities.count(cpus) == 1
    assert worker.output().count("pinned to CPU") == len(cpus)


def test_separately_started_workers_take_different_cpus(start_worker: Callable[..., WorkerProcess]) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.fail("this test needs a machine with 2 CPUs or more")
    first, second = (start_worker(processes=1, threads=2, extra_env={"EVENTBUS_PIN_WORKERS": "1"}) for _ in "ab")
    for worker in (first, second):  # the second's boot wait sees the first's heartbeat: wait for its log
        wait_for(lambda: "pinned to CPU" in worker.output(), 30, worker)  # noqa: B023
    (a,), (b,) = (_thread_affinities(_worker_pids(w, 1)[0]) for w in (first, second))
    assert len(a) == len(b) == 1 and a != b


def test_workers_are_not_pinned_by_default(start_worker: Callable[..., WorkerProcess]) -> None:
    worker = start_worker(processes=1, threads=2)
    (pid,) = _worker_pids(worker, 1)
    assert _thread_affinities(pid) == {frozenset(os.sched_getaffinity(0))}
    assert "pinned to CPU" not in worker.output()


def test_a_bad_pin_flag_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="EVENTBUS_PIN_WORKERS='maybe' is not a flag"):
        Settings.from_env({"EVENTBUS_PIN_WORKERS": "maybe"})


def test_eventbus_worker_pin_pins_its_process(tmp_path: Path) -> None:
    env = dict(os.environ, EVENTBUS_BROKER_URL=f"sqlite:///{tmp_path}/pin.db", EVENTBUS_DEFAULT_SUBSCRIBERS="0",
               EVENTBUS_PIN_WORKERS="0", dramatiq_worker_timeout="100")  # fmt: skip
    command = [sys.executable, "-m", "eventbus", "worker", "--pin", "-p", "1", "-t", "1"]
    worker = WorkerProcess(env, [], tmp_path / "worker.log", command=command)
    try:
        wait_for(lambda: "pinned to CPU" in worker.output(), 30, worker)
        (pid,) = _worker_pids(worker, 1)
        (affinity,) = _thread_affinities(pid)
        assert len(affinity) == 1
    finally:
        worker.terminate()
