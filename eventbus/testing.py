"""Test your own subscribers: an in-memory bus with a worker thread, ``join()`` and a record of events.

from eventbus.testing import TestBus

def test_vote_sends_confirmation():
    with TestBus() as bus:
        publish_event("vote.created", {...})
        bus.join()
        assert [e.topic for e in bus.published] == ["vote.created"]
        assert bus.control.dead_letters().items == []   # jobs, dead letters, requeue: the control plane
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import dramatiq

from eventbus import signals
from eventbus.app import declare_queues, install_extra_actors
from eventbus.broker import make_broker, set_broker
from eventbus.brokers.memory import MemoryBroker
from eventbus.control import ControlPlane
from eventbus.delivery import install_actors
from eventbus.event import Event
from eventbus.queues import with_backoff
from eventbus.settings import Settings, get_settings, set_settings


@dataclass(frozen=True)
class DeadLetter:
    """A delivery that ran out of retries inside a TestBus."""

    subscription: str | None
    event: Event
    error: str | None


class TestBus:
    """An in-memory bus (``memory://``) running a real Dramatiq worker in this process.

    Retries back off in milliseconds so failing jobs reach dead letters quickly; every queue keeps
    its number of attempts (``eventbus queues``).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, settings: Settings | None = None, *, worker_threads: int = 4) -> None:
        if settings is None:
            quick = replace(get_settings(), min_backoff_ms=5, max_backoff_ms=50, default_subscribers=False)
            settings = replace(quick, queues=with_backoff(quick.queues, min_backoff_ms=5, max_backoff_ms=50))
        base = settings
        self.settings = replace(base, broker_url="memory://")
        self.worker_threads = worker_threads
        self.published: list[Event] = []
        self.dead_letters: list[DeadLetter] = []
        self._previous: Settings | None = None
        self._worker: dramatiq.Worker | None = None
        self._control: ControlPlane | None = None

    def __enter__(self) -> TestBus:
        self._previous = get_settings()
        set_settings(self.settings)
        self.broker = make_broker(self.settings)
        set_broker(self.broker)
        install_actors(self.broker)
        install_extra_actors(self.broker)
        declare_queues(self.broker, self.settings)
        signals.published.connect(self._on_published)
        signals.dead_lettered.connect(self._on_dead)
        self._worker = dramatiq.Worker(self.broker, worker_threads=self.worker_threads, worker_timeout=20)
        self._worker.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._worker is not None:
            self._worker.stop()
        signals.published.disconnect(self._on_published)
        signals.dead_lettered.disconnect(self._on_dead)
        set_broker(None)
        set_settings(self._previous)

    def join(self, timeout_s: float = 10.0) -> None:
        """Wait until every queue and the schedule are empty and nothing runs, fan-outs, delays and retries
        included."""
        assert isinstance(self.broker, MemoryBroker) and self._worker is not None
        deadline = time.monotonic() + timeout_s
        while True:
            for queue in list(self.broker.get_declared_queues()):
                self.broker.join(queue, timeout=max(1, int((deadline - time.monotonic()) * 1000)), fail_fast=False)
            self._worker.join()
            if self.broker.stores.schedule.count() == 0 and all(
                q.unfinished_tasks == 0 for q in self.broker.queues.values()
            ):
                writer = self.broker.stores.ledger
                if writer is not None:  # the ledger shows every job as it ended
                    writer.flush()
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"TestBus.join: queues not drained within {timeout_s} s")
            time.sleep(0.005)  # a delayed message or a retry waits in the schedule

    @property
    def control(self) -> ControlPlane:
        """The control plane of this bus: list jobs, read dead letters, requeue them (after :meth:`join`)."""
        if self._control is None:
            self._control = ControlPlane(self.broker, self.settings)
        return self._control

    def _on_published(self, event: Event, **_: Any) -> None:
        self.published.append(event)

    def _on_dead(self, event: Event, **kw: Any) -> None:
        self.dead_letters.append(DeadLetter(kw.get("subscription"), event, kw.get("error")))
