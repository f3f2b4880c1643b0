"""Rate limits and concurrency caps on the memory broker, for the worker threads of one process.

The same algorithms as :mod:`eventbus.brokers.sqlite.limits`: GCRA "reserve the next slot" for a
rate, and leases that expire by themselves for a cap.
"""

from __future__ import annotations

import threading

from eventbus.clock import precise_ms


class MemoryLimits:
    """Rate-limit reservations and concurrency leases (same surface as ``SQLiteLimits``)."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._tat_ms: dict[str, float] = {}
        self._leases: dict[str, dict[str, float]] = {}  # queue -> token -> expires at (ms)

    def reserve(self, queue: str, interval_ms: float, max_wait_ms: float) -> tuple[bool, float]:
        """Reserve the next start slot: ``(True, wait_ms)`` to sleep, or ``(False, wait_ms)`` if too far off."""
        with self._lock:
            now = precise_ms()
            tat = max(self._tat_ms.get(queue, 0.0), now)
            wait = tat - now
            if wait > max_wait_ms:
                return False, wait
            self._tat_ms[queue] = tat + interval_ms
        return True, wait

    def acquire(self, queue: str, limit: int, token: str, ttl_ms: int) -> bool:
        """Take one of ``limit`` slots of ``queue`` for ``ttl_ms`` (renew with :meth:`renew`)."""
        with self._lock:
            now = precise_ms()
            held = {t: at for t, at in self._leases.get(queue, {}).items() if at > now}
            if len(held) >= limit and token not in held:
                self._leases[queue] = held
                return False
            held[token] = now + ttl_ms
            self._leases[queue] = held
        return True

    def release(self, queue: str, token: str) -> None:
        """Give a slot back."""
        with self._lock:
            self._leases.get(queue, {}).pop(token, None)

    def renew(self, leases: list[tuple[str, str]], ttl_ms: int, pipe: object | None = None) -> None:
        """Extend held leases ``(queue, token)`` (``pipe`` is accepted for the Redis signature and ignored)."""
        expires_at = precise_ms() + ttl_ms
        with self._lock:
            for queue, token in leases:
                held = self._leases.get(queue, {})
                if token in held:
                    held[token] = expires_at

    def running(self, queue: str) -> int:
        """How many slots of ``queue`` are held right now (expired leases excluded)."""
        now = precise_ms()
        with self._lock:
            return sum(1 for at in self._leases.get(queue, {}).values() if at > now)
