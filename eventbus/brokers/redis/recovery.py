"""Deterministic crash recovery and poison detection on Redis.

Dramatiq recovers a dead worker's unacked messages only on a 0.1% maintenance roll after 60 s,
and never if no one touches that queue. Here every worker heartbeats from its own thread, and a
janitor in every worker calls :func:`recover` every few seconds: one Lua script that, for each
worker whose heartbeat is older than the timeout, puts its fetched-but-unacked messages back at the
head of their priority lists, atomically, so exactly one janitor recovers each.

A message that was *running* (not just prefetched) when its worker died counts one lost delivery
(``lost:<redis_message_id>``). At ``max_lost`` it is dead-lettered with reason ``worker_lost``
instead: a message that kills its worker is not redelivered forever. Such suspects come back one
at a time (``suspect_spread_ms`` apart, through the schedule), so innocent jobs that happened to run
beside a poison message do not die with it again and again. Messages only prefetched come back at
once, at the head of their list, and count nothing.

A worker writes its start marks like its acks, group-committed within a few milliseconds of the
job's start, without waiting: a round trip before every job would hold up every start, and so the drain.
A message whose worker died before its mark was written comes back uncounted, but *careful*: its
``lost:`` key exists (at 0), the fetch reports it, and from then on its worker writes the mark
before running it. So a message that kills its worker within milliseconds of starting is counted
from its second run on: it is dead-lettered after at most ``max_lost + 1`` runs.

Extra keys: ``__ackq__.<worker>`` (queues that worker fetched from; lets the janitor find its ack
sets without KEYS) and ``__started__.<worker>`` (messages it started; cleared by ack and nack).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.common import current_millis

from eventbus.brokers.poison import worker_lost
from eventbus.brokers.redis.lua import load
from eventbus.clock import now_ms
from eventbus.stores import Recovered

if TYPE_CHECKING:
    from eventbus.brokers.redis.broker import RedisBroker

# Text of Dramatiq's dispatch script (as the broker's fetch patch leaves it) that the patches in
# lua/dispatch_*.lua replace or follow.
_FETCH_DONE = '    if n > 0 then\n        return redis.call("hmget", queue_messages, unpack(message_ids))'
_ACK = 'elseif command == "ack" then\n    local message_id = ARGS[1]\n'
_NACK = 'elseif command == "nack" then\n    local message_id = ARGS[1]\n'
_REQUEUE = """elseif command == "requeue" then
    for i=1,#ARGS do
        local message_id = ARGS[i]

        if redis.call("srem", queue_acks, message_id) > 0 then
            if redis.call("hexists", queue_messages, message_id) > 0 then
                redis.call("rpush", queue_full_name, message_id)
            end
        end
    end
"""
_FETCH_CAREFUL = load("dispatch_fetch_careful")
_REQUEUE_PRIORITY = load("dispatch_requeue")
_UNSTART = load("dispatch_unstart")


def patch_dispatch_for_recovery(source: str) -> str:
    """Record which queues a worker fetched from and which fetched messages must be marked before they
    run, forget a started message when it is acked or nacked, and requeue on shutdown to the head of
    each message's priority list."""
    for anchor in (_FETCH_DONE, _ACK, _NACK, _REQUEUE):
        assert source.count(anchor) == 1, f"dispatch.lua changed; re-check the recovery patch at {anchor!r}"
    source = source.replace(_FETCH_DONE, _FETCH_CAREFUL)
    source = source.replace(_REQUEUE, _REQUEUE_PRIORITY)
    return source.replace(_ACK, _ACK + _UNSTART).replace(_NACK, _NACK + _UNSTART)


_RECOVER = load("recovery_recover")
_REWRITE_DEAD = load("recovery_rewrite_dead")


class RedisRecovery:
    """Heartbeats, started-marks and the janitor for one :class:`RedisBroker`."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.heartbeats = broker.key("__heartbeats__")
        self.started = broker.key(f"__started__.{broker.broker_id}")
        self.careful: set[str] = set()  # fetched ids a dead worker held: marked before they run
        self._recover = broker.client.register_script(_RECOVER)
        self._rewrite = broker.client.register_script(_REWRITE_DEAD)

    def mark_started(self, message: Any) -> None:
        """Note that this worker started ``message`` (ack/nack clear it in their script).

        Group-committed with other threads' marks and acks (see :mod:`eventbus.brokers.group_commit`);
        written before the job runs only for a careful message (the fetch named it).
        """
        redis_message_id = message.options.get("redis_message_id")
        if not redis_message_id:
            return
        careful = redis_message_id in self.careful
        if careful:
            self.careful.discard(redis_message_id)
        self.broker.writes.mark_started(redis_message_id, wait=careful)

    def beat(self, ttl_ms: int, leases: Iterable[tuple[str, str]]) -> None:
        """Store this worker's heartbeat and renew its concurrency leases, in one round trip."""
        broker = self.broker
        with broker.client.pipeline(transaction=False) as pipe:
            pipe.zadd(self.heartbeats, {broker.broker_id: current_millis()})
            broker.limits.renew(list(leases), ttl_ms, pipe)
            pipe.execute()

    def recover(
        self, *, timeout_s: float, max_lost: int, suspect_spread_ms: int = 500, lost_ttl_s: int = 7 * 86_400
    ) -> Recovered:
        """Put back the messages of workers silent for ``timeout_s``; dead-letter those lost ``max_lost`` times.

        Messages that were running when their worker died come back ``suspect_spread_ms`` apart.
        """
        now = now_ms()
        raw = self._recover(
            keys=[self.broker.namespace],
            args=[now, int(timeout_s * 1000), max_lost, lost_ttl_s, self.broker.broker_id, suspect_spread_ms],
        )
        poisoned = []
        for i in range(2, len(raw), 3):
            message = self._mark_poisoned(raw[i].decode(), raw[i + 1].decode(), int(raw[i + 2]), now)
            if message is not None:
                poisoned.append(message)
        return Recovered(recovered=int(raw[0]), dead_workers=int(raw[1]), poisoned=poisoned)

    def _mark_poisoned(self, queue: str, rid: str, lost: int, now_ms: int) -> dramatiq.Message[object] | None:
        key = self.broker.key(f"{queue}.XQ.msgs")
        data = self.broker.client.hget(key, rid)
        if data is None:
            return None
        message = worker_lost(dramatiq.Message.decode(data), lost, now_ms)
        self._rewrite(keys=[key], args=[rid, message.encode()])
        return message
