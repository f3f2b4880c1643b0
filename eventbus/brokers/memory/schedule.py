"""Scheduled work on the memory broker: delayed messages wait here, not in a worker, until due.

A queue's consumer releases its due messages before it fetches (:meth:`MemorySchedule.release_due`),
as the SQLite broker's consumers hand out due rows, so there is nothing to promote; until it is due
a scheduled message can be listed and cancelled by id.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping

import dramatiq
from dramatiq.common import current_millis

from eventbus.brokers import Message
from eventbus.ledger import canonical_queue
from eventbus.scheduled import ScheduledEntry


class MemorySchedule:
    """Delayed messages by due time, and the cron registry (same surface as ``RedisSchedule``)."""

    def __init__(self, lock: threading.RLock, release: Callable[[Message], None]) -> None:
        self._lock = lock
        self._release = release
        self._entries: dict[str, tuple[int, int, ScheduledEntry]] = {}  # message id -> (eta, order, entry)
        self._order = itertools.count()
        self._definitions: dict[str, str] = {}
        self._ticks: dict[str, int] = {}
        self._soonest: dict[str, int] = {}  # queue -> no entry of it is due before this (ms)

    def add(self, message: Message, eta_ms: int) -> None:
        """Keep ``message`` (as enqueued: ``.DQ`` queue, ``eta`` option) until ``eta_ms``."""
        stored = _without_eta(message, canonical_queue(message.queue_name))
        with self._lock:
            entry = ScheduledEntry(message.message_id, eta_ms, stored.queue_name, stored)
            self._entries[message.message_id] = (eta_ms, next(self._order), entry)
            self._soonest[entry.queue] = min(self._soonest.get(entry.queue, _NEVER), eta_ms)

    def release_due(self, queue: str) -> int:
        """Put the due messages of ``queue`` in it, soonest first; returns when the next entry is due (ms)."""
        now = current_millis()
        with self._lock:
            soonest = self._soonest.get(queue, _NEVER)
            if now < soonest:
                return soonest
            mine = sorted(item for item in self._entries.values() if item[2].queue == queue)
            for eta, _, entry in mine:
                if eta > now:
                    self._soonest[queue] = eta
                    return eta
                del self._entries[entry.message_id]
                self._release(entry.message)
            self._soonest.pop(queue, None)
            return _NEVER

    def promote(self, limit: int = 1_000) -> list[Message]:
        """Nothing to release: consumers release due messages themselves."""
        return []

    def cancel(self, message_id: str) -> bool:
        """Remove a scheduled message; False if it is not scheduled (unknown, already due, or cancelled)."""
        with self._lock:
            return self._entries.pop(message_id, None) is not None

    def find(self, message_id: str) -> Message | None:
        """The scheduled message ``message_id``, left in place."""
        with self._lock:
            item = self._entries.get(message_id)
        return item[2].message if item is not None else None

    def count(self) -> int:
        """How many messages wait for their eta."""
        with self._lock:
            return len(self._entries)

    def counts(self) -> dict[str, int]:
        """Scheduled messages per queue."""
        out: dict[str, int] = {}
        with self._lock:
            for _, _, entry in self._entries.values():
                out[entry.queue] = out.get(entry.queue, 0) + 1
        return out

    def page(self, offset: int, limit: int) -> list[ScheduledEntry]:
        """Scheduled messages by eta (then enqueue order), ``limit`` from ``offset``."""
        with self._lock:
            items = sorted(self._entries.values())
        return [entry for _, _, entry in items[offset : offset + limit]]

    # -- recurring schedules (cron) ------------------------------------------------------------

    def register_schedules(self, definitions: Mapping[str, str]) -> None:
        """Record the JSON definitions of the schedules a worker runs (for the control plane)."""
        with self._lock:
            self._definitions.update(definitions)

    def schedule_definitions(self) -> dict[str, str]:
        """name -> JSON definition of every schedule a worker registered."""
        with self._lock:
            return dict(self._definitions)

    def record_tick(self, name: str, tick_ms: int) -> None:
        """Remember the latest tick ``name`` published (never moves backwards)."""
        with self._lock:
            self._ticks[name] = max(tick_ms, self._ticks.get(name, tick_ms))

    def last_ticks(self) -> dict[str, int]:
        """name -> the latest tick published."""
        with self._lock:
            return dict(self._ticks)


_NEVER = 2**62


def _without_eta(message: Message, queue: str) -> Message:
    options = {k: v for k, v in message.options.items() if k != "eta"}
    return dramatiq.Message(**{**message.asdict(), "queue_name": queue, "options": options})
