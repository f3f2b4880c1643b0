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
job's start, without waiting: a round trip before every job would cost a third of the drain rate.
A message whose worker died before its mark was written comes back uncounted, but *careful*: its
``lost:`` key exists (at 0), the fetch reports it, and from then on its worker writes the mark
before running it. So a message that kills its worker within milliseconds of starting is counted
from its second run on: it is dead-lettered after at most ``max_lost + 1`` runs.

Extra keys: ``__ackq__.<worker>`` (queues that worker fetched from; lets the janitor find its ack
sets without KEYS) and ``__started__.<worker>`` (messages it started; cleared by ack and nack).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dramatiq

from eventbus.brokers.poison import worker_lost

if TYPE_CHECKING:
    from eventbus.brokers.redis import RedisBroker


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
# On graceful shutdown, prefetched messages go back to the head of their own priority list (Dramatiq
# pushes them to the tail of the NORMAL list, so a requeued CRITICAL message would lose its place).
_REQUEUE_PRIORITY = """elseif command == "requeue" then
    local suffixes = {critical = ".p0", high = ".p1", low = ".p3"}
    for i = #ARGS, 1, -1 do
        local message_id = ARGS[i]
        if redis.call("srem", queue_acks, message_id) > 0 then
            local data = redis.call("hget", queue_messages, message_id)
            if data then
                local list = queue_full_name
                if queue_name == queue_canonical_name then
                    local ok, decoded = pcall(cjson.decode, data)
                    if ok and type(decoded) == "table" and type(decoded.options) == "table" then
                        list = list .. (suffixes[decoded.options.priority] or "")
                    end
                end
                -- Ring when the list was empty: a consumer waiting for the doorbell takes it at once.
                if redis.call("lpush", list, message_id) == 1 then
                    redis.call("publish", namespace .. ":__bell__", queue_name)
                end
            end
        end
    end
"""
_UNSTART = '    redis.call("srem", namespace .. ":__started__." .. worker_id, message_id)\n'


# A fetch returns the messages, then one more value: the ids among them that were in the hands of
# a worker that died (comma-separated; their start marks are written before they run).
_FETCH_CAREFUL = """    if n > 0 then
        redis.call("sadd", namespace .. ":__ackq__." .. worker_id, queue_name)
        local out = redis.call("hmget", queue_messages, unpack(message_ids))
        local careful = {}
        for k = 1, n do
            if redis.call("exists", namespace .. ":lost:" .. message_ids[k]) == 1 then
                careful[#careful + 1] = message_ids[k]
            end
        end
        out[n + 1] = table.concat(careful, ",")
        return out"""


def patch_dispatch_for_recovery(source: str) -> str:
    """Record which queues a worker fetched from and which fetched messages must be marked before they
    run, forget a started message when it is acked or nacked, and requeue on shutdown to the head of
    each message's priority list."""
    for anchor in (_FETCH_DONE, _ACK, _NACK, _REQUEUE):
        assert source.count(anchor) == 1, f"dispatch.lua changed; re-check the recovery patch at {anchor!r}"
    source = source.replace(_FETCH_DONE, _FETCH_CAREFUL)
    source = source.replace(_REQUEUE, _REQUEUE_PRIORITY)
    return source.replace(_ACK, _ACK + _UNSTART).replace(_NACK, _NACK + _UNSTART)


# KEYS[1] = namespace; ARGV = now ms, timeout ms, max lost deliveries, lost-count ttl s, own worker id,
# suspect spread ms.
# Returns {recovered, dead_workers, queue, rid, lost, queue, rid, lost, ...} for poisoned messages.
_RECOVER = """
local ns = KEYS[1]
local now = tonumber(ARGV[1])
local max_lost = tonumber(ARGV[3])
local heartbeats = ns .. ":__heartbeats__"
local suffix = {critical = ".p0", high = ".p1", low = ".p3"}
local dead = redis.call("zrangebyscore", heartbeats, 0, now - tonumber(ARGV[2]))
local spread = tonumber(ARGV[6])
local out = {0, 0}
for _, worker in ipairs(dead) do
    if worker ~= ARGV[5] then
        out[2] = out[2] + 1
        local suspects = 0
        local started = ns .. ":__started__." .. worker
        local ackq = ns .. ":__ackq__." .. worker
        for _, queue in ipairs(redis.call("smembers", ackq)) do
            local acks = ns .. ":__acks__." .. worker .. "." .. queue
            local msgs = ns .. ":" .. queue .. ".msgs"
            local delayed = string.sub(queue, -3) == ".DQ"
            for _, rid in ipairs(redis.call("smembers", acks)) do
                local data = redis.call("hget", msgs, rid)
                if data then
                    local lost = 0
                    if redis.call("sismember", started, rid) == 1 then
                        lost = redis.call("incr", ns .. ":lost:" .. rid)
                        redis.call("expire", ns .. ":lost:" .. rid, tonumber(ARGV[4]))
                    else
                        -- prefetched, or started with its mark not yet written: careful from now on
                        redis.call("set", ns .. ":lost:" .. rid, 0, "NX", "EX", tonumber(ARGV[4]))
                    end
                    if lost >= max_lost then
                        local canonical = queue
                        if delayed then canonical = string.sub(queue, 1, -4) end
                        redis.call("zadd", ns .. ":" .. canonical .. ".XQ", now, rid)
                        redis.call("hset", ns .. ":" .. canonical .. ".XQ.msgs", rid, data)
                        redis.call("hdel", msgs, rid)
                        out[#out + 1] = canonical
                        out[#out + 1] = rid
                        out[#out + 1] = lost
                    else
                        local list = queue
                        local ok, decoded = pcall(cjson.decode, data)
                        if not (ok and type(decoded) == "table" and type(decoded.options) == "table") then
                            decoded = nil
                        elseif not delayed then
                            list = queue .. (suffix[decoded.options.priority] or "")
                        end
                        if lost > 0 and decoded and type(decoded.message_id) == "string" then
                            -- a suspect: it was running when its worker died. Release suspects one by
                            -- one through the schedule, so an innocent job never runs beside the
                            -- poison one again.
                            -- Counted in schedule.counts like any scheduled entry: the promoter
                            -- decrements the count when it releases one.
                            local eta = now + suspects * spread
                            if redis.call("zadd", ns .. ":schedule", eta, decoded.message_id) == 1 then
                                redis.call("hincrby", ns .. ":schedule.counts", queue, 1)
                            end
                            redis.call("hset", ns .. ":schedule.msgs", decoded.message_id,
                                queue .. "\\n" .. list .. "\\n" .. rid .. "\\n" .. data)
                            redis.call("hdel", msgs, rid)
                            suspects = suspects + 1
                        else
                            if redis.call("lpush", ns .. ":" .. list, rid) == 1 then
                                redis.call("publish", ns .. ":__bell__", queue)
                            end
                        end
                        out[1] = out[1] + 1
                    end
                end
            end
            redis.call("del", acks)
        end
        redis.call("del", ackq, started)
        redis.call("zrem", heartbeats, worker)
    end
end
return out
"""

# Replace a dead letter's stored copy only if it is still there.
_REWRITE_DEAD = """
if redis.call("hexists", KEYS[1], ARGV[1]) == 1 then
    redis.call("hset", KEYS[1], ARGV[1], ARGV[2])
    return 1
end
return 0
"""


@dataclass(frozen=True)
class Recovery:
    """What one janitor pass did."""

    recovered: int
    dead_workers: int
    poisoned: list[dramatiq.Message[object]]


class RedisRecovery:
    """Heartbeats, started-marks and the janitor for one :class:`RedisBroker`."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.heartbeats = broker.key("__heartbeats__")
        self.started = broker.key(f"__started__.{broker.broker_id}")
        self.careful: set[str] = set()  # fetched ids a dead worker held: marked before they run
        self._recover = broker.client.register_script(_RECOVER)
        self._rewrite = broker.client.register_script(_REWRITE_DEAD)

    def mark_started(self, redis_message_id: str) -> None:
        """Note that this worker started a message (ack/nack clear it in their script).

        Group-committed with other threads' marks and acks (see :mod:`eventbus.brokers.group_commit`);
        written before the job runs only for a careful message (the fetch named it).
        """
        careful = redis_message_id in self.careful
        if careful:
            self.careful.discard(redis_message_id)
        self.broker.writes.mark_started(redis_message_id, wait=careful)

    def recover(
        self, *, timeout_s: float, max_lost: int, suspect_spread_ms: int = 500, lost_ttl_s: int = 7 * 86_400
    ) -> Recovery:
        """Put back the messages of workers silent for ``timeout_s``; dead-letter those lost ``max_lost`` times.

        Messages that were running when their worker died come back ``suspect_spread_ms`` apart.
        """
        now_ms = int(time.time() * 1000)
        raw = self._recover(
            keys=[self.broker.namespace],
            args=[now_ms, int(timeout_s * 1000), max_lost, lost_ttl_s, self.broker.broker_id, suspect_spread_ms],
        )
        poisoned = []
        for i in range(2, len(raw), 3):
            message = self._mark_poisoned(raw[i].decode(), raw[i + 1].decode(), int(raw[i + 2]), now_ms)
            if message is not None:
                poisoned.append(message)
        return Recovery(recovered=int(raw[0]), dead_workers=int(raw[1]), poisoned=poisoned)

    def _mark_poisoned(self, queue: str, rid: str, lost: int, now_ms: int) -> dramatiq.Message[object] | None:
        key = self.broker.key(f"{queue}.XQ.msgs")
        data = self.broker.client.hget(key, rid)
        if data is None:
            return None
        message = worker_lost(dramatiq.Message.decode(data), lost, now_ms)
        self._rewrite(keys=[key], args=[rid, message.encode()])
        return message
