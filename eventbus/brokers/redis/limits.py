"""Global rate limits and concurrency caps on Redis, shared by every worker process and host.

Rate limit (``rate:<queue>``): GCRA "reserve the next slot". One Lua call reads the Redis clock,
takes ``tat = max(tat, now)``, returns ``wait = tat - now`` and moves ``tat`` on by one interval;
a wait longer than ``max_wait_ms`` reserves nothing. The caller sleeps ``wait``: jobs start evenly
spaced at the configured rate, and a limited job never fails.

Concurrency cap (``cap:<queue>``): a ZSET of leases scored by expiry. Acquiring drops expired leases
and adds one if fewer than the cap are held; the holder renews its leases with its heartbeat, so
the slots of a killed worker free themselves when their lease runs out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventbus.brokers.redis.lua import load
from eventbus.clock import now_ms

if TYPE_CHECKING:
    from eventbus.brokers.redis.broker import RedisBroker

_RESERVE = load("limits_reserve")
_ACQUIRE = load("limits_acquire")
_RENEW = load("limits_renew")


class RedisLimits:
    """Rate-limit reservations and concurrency leases for one :class:`RedisBroker`."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self._reserve = broker.client.register_script(_RESERVE)
        self._acquire = broker.client.register_script(_ACQUIRE)
        self._renew = broker.client.register_script(_RENEW)

    def rate_key(self, queue: str) -> str:
        return self.broker.key(f"rate:{queue}")

    def cap_key(self, queue: str) -> str:
        return self.broker.key(f"cap:{queue}")

    def reserve(self, queue: str, interval_ms: float, max_wait_ms: float) -> tuple[bool, float]:
        """Reserve the next start slot: ``(True, wait_ms)`` to sleep, or ``(False, wait_ms)`` if too far off."""
        ok, wait = self._reserve(keys=[self.rate_key(queue)], args=[interval_ms, max_wait_ms])
        return bool(ok), float(wait)

    def acquire(self, queue: str, limit: int, token: str, ttl_ms: int) -> bool:
        """Take one of ``limit`` slots of ``queue`` for ``ttl_ms`` (renew with :meth:`renew`)."""
        return bool(self._acquire(keys=[self.cap_key(queue)], args=[limit, token, ttl_ms]))

    def release(self, queue: str, token: str) -> None:
        """Give a slot back."""
        self.broker.client.zrem(self.cap_key(queue), token)

    def renew(self, leases: list[tuple[str, str]], ttl_ms: int, pipe: object | None = None) -> None:
        """Extend held leases ``(queue, token)``; pass ``pipe`` to ride on another round trip."""
        if not leases:
            return
        args: list[object] = [ttl_ms]
        for queue, token in leases:
            args += [self.cap_key(queue), token]
        self._renew(args=args, client=pipe)

    def running(self, queue: str) -> int:
        """How many slots of ``queue`` are held right now (expired leases excluded)."""
        return int(self.broker.client.zcount(self.cap_key(queue), now_ms(), "+inf"))
