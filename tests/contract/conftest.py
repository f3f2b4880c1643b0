"""The contract bus: the same behaviour on ``memory``, ``sqlite`` and ``redis`` (one parametrized fixture).

Each test gets a fresh bus (its own SQLite file or Redis namespace) and an in-process Dramatiq
worker it starts when it wants (``bus.start()``), so a backlog can be built first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dramatiq
import pytest

from eventbus import cron
from eventbus.app import declare_queues
from eventbus.broker import make_broker, set_broker
from eventbus.delivery import install_actors
from eventbus.queues import QueueConfig, Rate, with_backoff
from eventbus.settings import Settings, set_settings
from tests.apps import contract as app

# Queues of the limits contract: c_limited starts at most 10 jobs a second, c_capped runs 2 at once.
LIMITED_QUEUES = (QueueConfig("c_limited", rate_limit=Rate(10, 1)), QueueConfig("c_capped", concurrency=2))


@dataclass
class ContractBus:
    kind: str
    broker: Any
    settings: Settings
    workers: list[dramatiq.Worker] = field(default_factory=list)

    def start(self, threads: int = 4) -> None:
        """An in-process Dramatiq worker on every declared queue."""
        worker = dramatiq.Worker(self.broker, worker_threads=threads, worker_timeout=50)
        worker.start()
        self.workers.append(worker)

    def pause(self, queue: str) -> None:
        self.broker.stores.control.pause(queue)

    def resume(self, queue: str) -> None:
        self.broker.stores.control.resume(queue)

    def dead_letters(self, queue: str) -> list[dramatiq.Message[Any]]:
        """The dead letters of ``queue`` as stored, newest first (read through the store contract)."""
        rows = self.broker.stores.control.dead_rows(queue, float("inf"), 0, 10_000)
        return [dramatiq.Message.decode(data) for _, _, data in rows if data is not None]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def contract_bus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ContractBus]:
    """A bus of each kind (a test may narrow the kinds with an indirect parametrization)."""
    kind = request.param
    quick = with_backoff(Settings().queues, min_backoff_ms=10, max_backoff_ms=200)
    base = replace(Settings(), min_backoff_ms=10, max_backoff_ms=200, queues=quick, default_subscribers=False)
    if kind == "redis":
        settings = replace(request.getfixturevalue("settings"), min_backoff_ms=10, max_backoff_ms=200, queues=quick)
    elif kind == "sqlite":
        settings = replace(base, broker_url=f"sqlite:///{tmp_path / 'bus.db'}")
    else:
        settings = replace(base, broker_url="memory://")
    settings = replace(settings, queues=(*settings.queues, *LIMITED_QUEUES))
    set_settings(settings)
    broker = make_broker(settings)
    set_broker(broker)
    install_actors(broker)
    declare_queues(broker, settings)
    app.CALLS.clear()
    app.RUNNING.update(now=0, max=0)
    app.RETRIES.clear()
    bus = ContractBus(kind, broker, settings)
    # Schedules other test modules registered at import would tick in this bus's worker: park them.
    parked = cron.all_schedules()
    for found in parked:
        cron.remove_schedule(found.name)
    yield bus
    for worker in bus.workers:
        worker.stop()
    for found in parked:
        cron.add_schedule(
            found.name,
            topic=found.topic,
            cron=found.cron,
            every_s=found.every_s,
            payload=found.payload,
            tz=found.tz,
            priority=found.priority,
        )
    broker.close()
    set_broker(None)
    set_settings(None)
