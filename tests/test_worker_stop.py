"""A stop signal stops a worker promptly: an idle one within a second, a busy one once its jobs finish."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dramatiq
import pytest

from eventbus.brokers.memory import MemoryBroker
from eventbus.middleware.stop import PromptStop, _threads_given
from eventbus.settings import Settings
from tests.conftest import REDIS_URL, ROOT, wait_for

pytestmark = pytest.mark.slow


_started: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def start(tmp_path: Path, env_extra: dict[str, str], *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTBUS_", "dramatiq_", "QUEUE_"))}
    env.update(PYTHONPATH=str(ROOT), EVENTBUS_DEFAULT_SUBSCRIBERS="0", **env_extra)
    log = tmp_path / f"worker-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eventbus", "worker", "-p", "1", *args],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    _started.append(proc)
    return proc, log


def wait_ready(proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while "ready for action" not in log.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.02)


def stop_seconds(proc: subprocess.Popen[bytes], log: Path) -> float:
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    code = proc.wait(timeout=30)
    assert code == 0, log.read_text(errors="replace")
    return time.monotonic() - started


@pytest.fixture(params=["sqlite", "redis"])
def broker_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "sqlite":
        return {"EVENTBUS_BROKER_URL": f"sqlite:///{tmp_path / 'bus.db'}"}
    request.getfixturevalue("redis_client")
    return {"EVENTBUS_BROKER_URL": REDIS_URL, "EVENTBUS_NAMESPACE": request.getfixturevalue("namespace")}


@pytest.fixture
def busy_worker(tmp_path, bus, redis_client, namespace) -> Callable[[int], tuple[subprocess.Popen[bytes], Path, str]]:
    """Start a worker on Redis and publish one job of ``sleep_ms``; returns once the job has started."""
    from eventbus import publish_event

    def run(sleep_ms: int) -> tuple[subprocess.Popen[bytes], Path, str]:
        proc, log = start(tmp_path, {"EVENTBUS_BROKER_URL": REDIS_URL, "EVENTBUS_NAMESPACE": namespace,
                                     "EVENTBUS_SUBSCRIBERS": "tests.apps.slow"})  # fmt: skip
        wait_ready(proc, log)
        import tests.apps.slow  # noqa: F401  (declares the topic in this process)

        key = f"{namespace}:test:slow:{publish_event('test.slow', {'sleep_ms': sleep_ms}).id}"
        wait_for(lambda: redis_client.llen(key) >= 1, 15)
        return proc, log, key

    return run


def marks(redis_client, key: str) -> list[str]:
    return [m.decode() for m in redis_client.lrange(key, 0, -1)]


def test_an_idle_worker_exits_within_a_second_of_sigterm(tmp_path, broker_env):
    # Given an idle worker, three times
    times = []
    for _ in range(3):
        proc, log = start(tmp_path, broker_env)
        wait_ready(proc, log)
        time.sleep(0.5)
        # When it gets SIGTERM, Then it has exited (code 0) within a second
        times.append(stop_seconds(proc, log))
    assert statistics.median(times) < 1.0, times


def test_a_busy_worker_stops_as_soon_as_its_running_job_finishes(busy_worker, redis_client):
    # Given a worker running a job that takes 1.5 s
    proc, log, key = busy_worker(1500)
    # When it gets SIGTERM mid-job
    elapsed = stop_seconds(proc, log)
    # Then the job finished before the process exited, and the exit followed within a second
    done = marks(redis_client, key)
    assert [m.split()[0] for m in done] == ["started", "finished"], done
    assert time.time() - float(done[1].split()[1]) < 1.0 + 0.2
    assert elapsed < 1.5 + 1.0, elapsed


def test_queue_concurrency_sets_the_threads_of_a_worker_started_without_t(monkeypatch):
    # Given QUEUE_CONCURRENCY=3 (the seeds' per-worker default)
    settings = Settings.from_env({"QUEUE_CONCURRENCY": "3"})
    broker = MemoryBroker()
    stop = PromptStop(settings)
    # When a worker boots without -t, Then it runs 3 threads; with -t, the command line wins
    monkeypatch.setattr(sys, "argv", ["dramatiq", "eventbus.workers"])
    worker = dramatiq.Worker(broker, worker_threads=8)
    stop.before_worker_boot(broker, worker)
    assert worker.worker_threads == 3
    monkeypatch.setattr(sys, "argv", ["dramatiq", "eventbus.workers", "-t", "5"])
    worker = dramatiq.Worker(broker, worker_threads=5)
    stop.before_worker_boot(broker, worker)
    assert worker.worker_threads == 5


@pytest.mark.parametrize(
    ("argv", "given"),
    [(["-t", "4"], True), (["-t4"], True), (["--threads", "4"], True), (["--threads=4"], True),
     (["-p", "2"], False), (["--tls"], False), ([], False)],
)  # fmt: skip
def test_a_thread_count_on_the_command_line_is_recognised(argv, given):
    assert _threads_given(["dramatiq", "eventbus.workers", *argv]) is given


def test_a_bad_queue_concurrency_is_a_config_error():
    from eventbus.errors import ConfigError

    with pytest.raises(ConfigError, match="QUEUE_CONCURRENCY"):
        Settings.from_env({"QUEUE_CONCURRENCY": "many"})


def group_alive(pgid: int) -> list[str]:
    return subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()


def test_sigterm_to_the_whole_process_group_stops_an_idle_worker_at_once(tmp_path, broker_env):
    # Given an idle worker (systemd's KillMode=control-group signals every process of it)
    proc, log = start(tmp_path, broker_env)
    wait_ready(proc, log)
    # When the whole group gets SIGTERM
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    # Then every process is gone within a second, with exit code 0
    assert proc.wait(timeout=30) == 0, log.read_text(errors="replace")
    assert time.monotonic() - started < 1.0
    assert group_alive(proc.pid) == []


def test_group_sigterm_to_a_busy_worker_lets_the_job_finish(busy_worker, redis_client):
    proc, log, key = busy_worker(1000)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, log.read_text(errors="replace")
    assert [m.split()[0] for m in marks(redis_client, key)] == ["started", "finished"]
    assert group_alive(proc.pid) == []


def test_a_second_sigterm_ends_a_busy_worker_at_once_and_leaves_no_process(busy_worker):
    proc, log, _ = busy_worker(20_000)
    # When SIGTERM comes, and another one a second later
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(1)
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    # Then the worker does not wait for its 20 s job: every process is gone within a second
    proc.wait(timeout=10)
    assert time.monotonic() - started < 1.0
    assert group_alive(proc.pid) == []
    assert "second stop signal" in log.read_text(errors="replace")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_one_worker_process_alone_ends_the_whole_worker(tmp_path, signum):
    # Given an idle worker with two processes
    proc, log = start(tmp_path, {"EVENTBUS_BROKER_URL": f"sqlite:///{tmp_path / 'bus.db'}"}, "-p", "2")
    deadline = time.monotonic() + 30
    while log.read_text(errors="replace").count("ready for action") < 2:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.02)
    children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    # When one worker process alone gets the signal
    started = time.monotonic()
    os.kill(children[0], signum)
    # Then every process of the worker is gone within a few seconds (Dramatiq stops the rest)
    proc.wait(timeout=15)
    assert time.monotonic() - started < 5
    assert group_alive(proc.pid) == []
