"""Pause and resume a queue across every worker.

The broker's fetch already hands out nothing for a paused queue (Redis: listed in
``<ns>:__paused__``; SQLite: a row in ``paused``; memory: the broker's paused set). This gate
covers messages a worker fetched before the pause: when one reaches a worker thread, it goes back
to the head of its priority (Redis list / SQLite row made visible at once / memory queue) with its
data kept, and is skipped. Each process refreshes
its copy of the paused set every 100 ms, so no job of a paused queue starts more than ~100 ms
after the pause; a message of a queue the copy still shows paused reads the set again before it is
handed back, so a resume takes effect with the next fetch, not up to 100 ms later.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, cast

import dramatiq
from dramatiq.middleware import SkipMessage

from eventbus.brokers import BusBroker
from eventbus.stores import PauseStore

logger = logging.getLogger("eventbus.pause")

REFRESH_INTERVAL_S = 0.1


class _SkippedFilter(logging.Filter):
    """Drop Dramatiq's "Message … was skipped" warning for messages of a queue the gate holds paused."""

    def __init__(self, gate: PauseGate) -> None:
        super().__init__()
        self.gate = gate

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (args and getattr(args[0], "queue_name", None) in self.gate.paused)


class PauseGate(dramatiq.Middleware):
    """Hands prefetched messages of paused queues back to the broker's store instead of running them."""

    def __init__(self) -> None:
        self.paused: frozenset[str] = frozenset()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store: PauseStore | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Read the paused set now, then keep it fresh."""
        self._store = cast(BusBroker, broker).stores.pause
        logging.getLogger("dramatiq.worker.WorkerThread").addFilter(_SkippedFilter(self))
        self._refresh()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="eventbus-pause", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()

    def before_process_message(self, broker: Any, message: Any) -> None:
        """Put a message of a paused queue back at the head of its queue and skip it."""
        if message.queue_name not in self.paused or self._store is None:
            return
        self._refresh()  # resumed since the last refresh? then it runs: a resume takes effect at once
        if message.queue_name not in self.paused:
            return
        self._store.put_back(message)
        raise SkipMessage(f"queue {message.queue_name!r} is paused")

    def _refresh(self) -> None:
        assert self._store is not None
        try:
            paused = frozenset(self._store.paused())
        except Exception as exc:  # keep the last known set while the store is away
            logger.warning("cannot read paused queues (%s)", exc)
            return
        if paused != self.paused:
            self._store.forget(set(paused))
            self.paused = paused

    def _run(self) -> None:
        while not self._stop.wait(REFRESH_INTERVAL_S):
            self._refresh()
