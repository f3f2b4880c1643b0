"""Dead letters of the memory broker, per queue, named by a broker id and scored by when they died."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence

import dramatiq
from dramatiq.common import current_millis

from eventbus.stores import DeadRow


class MemoryDeadLetters:
    """The messages out of attempts, as the worker saw them last (error, traceback, attempts)."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._ids = itertools.count(1)
        self._by_queue: dict[str, dict[str, tuple[int, bytes]]] = {}  # queue -> broker id -> (dead at, data)

    def add(self, queue: str, data: bytes, dead_at_ms: int) -> str:
        """Keep one dead letter; returns its broker id."""
        with self._lock:
            broker_id = str(next(self._ids))
            self._by_queue.setdefault(queue, {})[broker_id] = (dead_at_ms, data)
        return broker_id

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {queue: len(letters) for queue, letters in self._by_queue.items()}

    def rows(self, queue: str, top: float, start: int, num: int) -> list[DeadRow]:
        """Dead letters of ``queue`` at or below score ``top``, newest first, from ``start``."""
        with self._lock:
            found = [(at, int(i), data) for i, (at, data) in self._by_queue.get(queue, {}).items() if at <= top]
        found.sort(reverse=True)
        return [(str(i), float(at), data) for at, i, data in found[start : start + num]]

    def locate(self, job_id: str) -> tuple[str, str, bytes] | None:
        """(queue, broker id, data) of the newest dead letter of ``job_id``."""
        with self._lock:
            found = [
                (int(i), queue, data)
                for queue, letters in self._by_queue.items()
                for i, (_, data) in letters.items()
                if dramatiq.Message.decode(data).message_id == job_id
            ]
        if not found:
            return None
        i, queue, data = max(found)
        return queue, str(i), data

    def score(self, queue: str, broker_id: str) -> float:
        with self._lock:
            found = self._by_queue.get(queue, {}).get(broker_id)
        return float(found[0]) if found is not None else 0.0

    def take(self, queue: str, broker_ids: Sequence[str]) -> list[bytes]:
        """Remove the named dead letters and return their data; one already gone is skipped."""
        with self._lock:
            letters = self._by_queue.get(queue, {})
            return [letters.pop(i)[1] for i in broker_ids if i in letters]

    def take_older(self, queue: str, cutoff_ms: int, limit: int = 500) -> list[bytes]:
        """Remove up to ``limit`` dead letters of ``queue`` that died at or before ``cutoff_ms``, oldest first."""
        with self._lock:
            letters = self._by_queue.get(queue, {})
            old = sorted((at, int(i)) for i, (at, _) in letters.items() if at <= cutoff_ms)[:limit]
            return [letters.pop(str(i))[1] for _, i in old]

    def put_back(self, queue: str, datas: Sequence[bytes]) -> None:
        """Restore taken dead letters (a requeue that could not enqueue)."""
        now = current_millis()
        for data in datas:
            self.add(queue, data, now)
