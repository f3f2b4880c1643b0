"""Shared fixtures: real Redis under a per-test key prefix, and real worker processes.

With CI=true a missing Redis fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from eventbus.broker import make_broker, set_broker
from eventbus.delivery import install_actors
from eventbus.queues import with_backoff
from eventbus.settings import Settings, set_settings

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("EVENTBUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(what: str, ok: bool) -> None:
    """Skip locally, fail in CI, when a real service the test needs is missing."""
    if ok:
        return
    message = f"{what} is not available"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: tests needing it must run)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_client() -> redis.Redis:  # type: ignore[type-arg]
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
        up = True
    except redis.RedisError:
        up = False
    need(f"Redis at {REDIS_URL}", up)
    return client


@pytest.fixture
def namespace(redis_client: redis.Redis) -> Iterator[str]:  # type: ignore[type-arg]
    """A key prefix of this test's own; its keys are deleted afterwards (and nothing else)."""
    ns = f"ebtest-{uuid.uuid4().hex[:10]}"
    yield ns
    keys = list(redis_client.scan_iter(f"{ns}:*", count=1000))
    for i in range(0, len(keys), 500):
        redis_client.delete(*keys[i : i + 500])


@pytest.fixture
def settings(namespace: str) -> Settings:
    """Settings for a Redis-backed bus under this test's namespace, with quick retries on every queue."""
    base = Settings()
    return replace(
        base,
        broker_url=REDIS_URL,
        namespace=namespace,
        min_backoff_ms=100,
        max_backoff_ms=2_000,
        queues=with_backoff(base.queues, min_backoff_ms=100, max_backoff_ms=2_000),
        default_subscribers=False,
    )


@pytest.fixture
def bus(settings: Settings) -> Iterator[Any]:
    """This process as a publisher on the Redis bus of this test."""
    set_settings(settings)
    broker = make_broker(settings)
    set_broker(broker)
    install_actors(broker)
    yield broker
    set_broker(None)
    set_settings(None)


class WorkerProcess:
    """``dramatiq eventbus.workers`` (or ``command``) in a subprocess, on this test's namespace."""

    def __init__(self, env: dict[str, str], args: list[str], log: Path, *, command: list[str] | None = None) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                command or [sys.executable, "-m", "dramatiq", "eventbus.workers", *args],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def terminate(self, timeout_s: float = 30) -> int:
        """SIGTERM the main process (dramatiq forwards it to its children once) and wait."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL every process of the worker at once."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_worker(
    settings: Settings,
    redis_client: redis.Redis,
    tmp_path: Path,  # type: ignore[type-arg]
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes importing ``modules``; they are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(
        *modules: str, processes: int = 1, threads: int = 8, extra_env: dict[str, str] | None = None, wait: bool = True
    ) -> WorkerProcess:
        env = dict(
            os.environ,
            EVENTBUS_BROKER_URL=settings.broker_url,
            EVENTBUS_NAMESPACE=settings.namespace,
            EVENTBUS_SUBSCRIBERS=",".join(modules),
            EVENTBUS_DEFAULT_SUBSCRIBERS="0",
            JOB_RETRY_DELAY=str(settings.min_backoff_ms),
            PYTHONPATH=str(ROOT),
            dramatiq_worker_timeout="100",
        )
        env.update(extra_env or {})  # extra_env may override the defaults above
        args = ["-p", str(processes), "-t", str(threads), "--worker-shutdown-timeout", "20000"]
        worker = WorkerProcess(env, args, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        if wait:
            wait_for(lambda: redis_client.zcard(f"{settings.namespace}:__heartbeats__") >= processes, 30, worker)
        return worker

    yield start
    for worker in started:
        worker.terminate()


def wait_for(check: Callable[[], Any], timeout_s: float, worker: WorkerProcess | None = None) -> None:
    """Poll ``check`` every 50 ms until it is truthy; fail with the worker's log on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if worker is not None and worker.proc.poll() is not None:
            pytest.fail(f"worker exited with {worker.proc.returncode}:\n{worker.output()[-4000:]}")
        time.sleep(0.05)
    tail = worker.output()[-4000:] if worker else ""
    pytest.fail(f"condition not met within {timeout_s} s\n{tail}")
