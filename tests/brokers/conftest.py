"""Real ``dramatiq eventbus.workers`` processes on a temporary SQLite file (no Redis involved)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from eventbus.broker import make_broker, set_broker
from eventbus.brokers.sqlite.broker import SQLiteBroker
from eventbus.delivery import install_actors
from eventbus.queues import with_backoff
from eventbus.settings import Settings, set_settings
from tests.conftest import ROOT, WorkerProcess, wait_for


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """This test's own bus file (leases of 2 s, so a killed worker's messages return quickly)."""
    return f"sqlite:///{tmp_path / 'bus.db'}?lease_s=2"


@pytest.fixture
def sqlite_settings(sqlite_url: str) -> Settings:
    base = Settings()
    quick = with_backoff(base.queues, min_backoff_ms=100, max_backoff_ms=2_000)
    return replace(
        base, broker_url=sqlite_url, min_backoff_ms=100, max_backoff_ms=2_000, queues=quick, default_subscribers=False
    )


@pytest.fixture
def sqlite_bus(sqlite_settings: Settings) -> Iterator[SQLiteBroker]:
    """This process as a publisher on the test's SQLite file."""
    set_settings(sqlite_settings)
    broker = make_broker(sqlite_settings)
    assert isinstance(broker, SQLiteBroker)
    set_broker(broker)
    install_actors(broker)
    yield broker
    broker.close()
    set_broker(None)
    set_settings(None)


@pytest.fixture
def start_sqlite_worker(sqlite_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``dramatiq eventbus.workers`` on the test's file; each is stopped after the test.

    With ``wait`` it returns once every process has loaded the app (logged its broker line).
    """
    started: list[WorkerProcess] = []

    def start(
        *modules: str, processes: int = 1, threads: int = 8, extra_env: dict[str, str] | None = None, wait: bool = True
    ) -> WorkerProcess:
        env = dict(
            os.environ,
            EVENTBUS_BROKER_URL=sqlite_settings.broker_url,
            EVENTBUS_SUBSCRIBERS=",".join(modules),
            EVENTBUS_DEFAULT_SUBSCRIBERS="0",
            JOB_RETRY_DELAY=str(sqlite_settings.min_backoff_ms),
            PYTHONPATH=str(ROOT),
            dramatiq_worker_timeout="100",
            **(extra_env or {}),
        )
        env.pop("REDIS_URL", None)
        args = ["-p", str(processes), "-t", str(threads), "--worker-shutdown-timeout", "20000"]
        worker = WorkerProcess(env, args, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        if wait:
            wait_for(lambda: worker.output().count("eventbus worker: broker SQLiteBroker") >= processes, 60, worker)
        return worker

    yield start
    for worker in started:
        worker.terminate()
