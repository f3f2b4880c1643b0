"""Dramatiq's RedisBroker with priority-ordered fetch, a pause flag, once-only bulk enqueue and fresh dead letters.

Each queue keeps one Dramatiq name (``email``) and four Redis lists: ``email.p0`` (CRITICAL),
``email.p1`` (HIGH), ``email`` (NORMAL) and ``email.p3`` (LOW). The patched ``fetch`` pops from
the highest non-empty list first, so priority holds in the broker, not only in a worker's memory.
"""

from __future__ import annotations

import collections
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker as _DramatiqRedisBroker
from dramatiq.brokers.redis import _RedisConsumer, _scripts
from dramatiq.common import current_millis
from redis.backoff import NoBackoff
from redis.retry import Retry

from eventbus.brokers import Message, list_suffix, malformed
from eventbus.brokers.doorbell import Doorbell
from eventbus.brokers.group_commit import AckKey, GroupWriter
from eventbus.brokers.hooks import HookCache
from eventbus.brokers.redis_direct import Direct
from eventbus.brokers.redis_limits import RedisLimits
from eventbus.brokers.redis_reconnect import REDIS_ERRORS, InHand
from eventbus.brokers.redis_recovery import RedisRecovery, patch_dispatch_for_recovery
from eventbus.brokers.redis_schedule import RedisSchedule
from eventbus.deadletter import nacked_options
from eventbus.delivery import EVENTS_QUEUE
from eventbus.ledger import Completion, make_full
from eventbus.ledger_redis import LEDGER_COMPLETIONS, LEDGER_EPILOGUE, LEDGER_PRELUDE, RedisLedger, Retention
from eventbus.settings import get_settings

_FETCH_START = 'elseif command == "fetch" then'
_FETCH_END = "-- Moves fetched-but-not-processed messages back"
_NACK_GET = 'local message = redis.call("hget", queue_messages, message_id)'

# Paused queues hand out nothing (their .DQ still moves due messages in); otherwise take from
# the highest priority list first.
_FETCH = """elseif command == "fetch" then
    if redis.call("sismember", namespace .. ":__paused__", queue_name) == 1 then
        return {}
    end
    local prefetch = math.min(ARGS[1], max_unpack_size)
    local lists = {queue_full_name .. ".p0", queue_full_name .. ".p1", queue_full_name, queue_full_name .. ".p3"}
    if queue_name ~= queue_canonical_name then
        lists = {queue_full_name}
    end
    local message_ids = {}
    local n = 0
    for _, list in ipairs(lists) do
        while n < prefetch do
            local message_id = redis.call("lpop", list)
            if not message_id then
                break
            end
            n = n + 1
            message_ids[n] = message_id
            redis.call("sadd", queue_acks, message_id)
        end
    end
    if n > 0 then
        return redis.call("hmget", queue_messages, unpack(message_ids))
    end
    return {}


"""

# The worker's in-memory copy (final attempt's retries, error and traceback) replaces the stale
# stored one when a message is dead-lettered.
_NACK = 'local message = ARGS[2] or redis.call("hget", queue_messages, message_id)'

# ARGV: namespace, once-key ttl s, the queue of messages to ack ("" for none), broker id, the number of
# ids to ack, those ids, the number of queues this worker takes messages of, (queue, how many) pairs,
# then 5 values per message (queue, list, broker id, data, once-key or "").
# A message of a queue this worker takes goes straight into its ack set (flag 2) instead of its list,
# but only while the queue is not paused and none of its priority lists holds anything: the worker
# that fanned an event out runs its deliveries without a ring and a fetch, and no waiting message of
# any priority is overtaken. The acks run last: a script that fails half-way has acked nothing (its
# deliveries are once-only).
_ENQUEUE = """
local ns = ARGV[1]
local ttl = tonumber(ARGV[2])
local worker = ARGV[4]
local n_acks = tonumber(ARGV[5])
local i = 6 + n_acks
local budget = {}
for _ = 1, tonumber(ARGV[i]) do
    budget[ARGV[i + 1]] = tonumber(ARGV[i + 2])
    i = i + 2
end
local function idle(queue)
    local base = ns .. ":" .. queue
    return redis.call("sismember", ns .. ":__paused__", queue) == 0 and redis.call("llen", base) == 0
        and redis.call("llen", base .. ".p0") == 0 and redis.call("llen", base .. ".p1") == 0
        and redis.call("llen", base .. ".p3") == 0
end
local flags = {}
local rung = {}
local n = 0
for j = i + 1, #ARGV, 5 do
    local ok = true
    local once = ARGV[j + 4]
    if once ~= "" then
        ok = redis.call("set", ns .. ":once:" .. once, "1", "NX", "EX", ttl)
    end
    n = n + 1
    flags[n] = 0
    if ok then
        local queue = ARGV[j]
        redis.call("hset", ns .. ":" .. queue .. ".msgs", ARGV[j + 2], ARGV[j + 3])
        if budget[queue] and budget[queue] > 0 and idle(queue) then
            budget[queue] = budget[queue] - 1
            redis.call("sadd", ns .. ":__acks__." .. worker .. "." .. queue, ARGV[j + 2])
            redis.call("sadd", ns .. ":__ackq__." .. worker, queue)
            flags[n] = 2
        else
            budget[queue] = 0  -- keep order: nothing after a queued message is taken
            local waiting = redis.call("rpush", ns .. ":" .. ARGV[j + 1], ARGV[j + 2])
            flags[n] = 1
            -- Ring only when the list was empty: a backlog means its consumers are busy fetching anyway.
            if waiting == 1 and not rung[queue] then
                rung[queue] = true
                redis.call("publish", ns .. ":__bell__", queue)
            end
        end
    end
end
if n_acks > 0 then
    local acks = ns .. ":__acks__." .. worker .. "." .. ARGV[3]
    local msgs = ns .. ":" .. ARGV[3] .. ".msgs"
    for j = 6, 5 + n_acks do
        redis.call("srem", acks, ARGV[j])
        redis.call("hdel", msgs, ARGV[j])
    end
end
return flags
"""

# Acks of one group commit in one call (Dramatiq's dispatch script takes one ack per call, and its
# preamble costs more than the ack), with the ledger's completions of those jobs (see
# eventbus.ledger_redis). ARGV: namespace, broker id, now ms, the number of acks, (queue, message id)
# pairs, the six ledger retention values, then 8 values per completion. Returns the ids of
# completions whose job has no record yet.
# What dispatch's ack does (``_DISPATCH_ACK``, checked at start), with this package's recovery patch:
# forget the start mark, then drop the message if it was still this worker's.
_DISPATCH_ACK = """    if redis.call("srem", queue_acks, message_id) > 0 then
        redis.call("hdel", queue_messages, message_id)
    end"""
_ACK_MANY = (
    """
local ns, worker = ARGV[1], ARGV[2]
redis.call("zadd", ns .. ":__heartbeats__", ARGV[3], worker)
local started = ns .. ":__started__." .. worker
local acks = ns .. ":__acks__." .. worker .. "."
local n = tonumber(ARGV[4])
for i = 5, 4 + 2 * n, 2 do
    local queue, message_id = ARGV[i], ARGV[i + 1]
    redis.call("srem", started, message_id)
    if redis.call("srem", acks .. queue, message_id) > 0 then
        redis.call("hdel", ns .. ":" .. queue .. ".msgs", message_id)
    end
end
local r = 5 + 2 * n
local c0 = r + 6
"""
    + LEDGER_PRELUDE
    + """
-- The acks are written: whatever goes wrong in the ledger's part must not fail them. The caller
-- then writes every completion of this call in full, on the ledger's own path.
local ok = pcall(function()
"""
    + LEDGER_COMPLETIONS
    + LEDGER_EPILOGUE
    + """
end)
if not ok then
    missing = {}
    for i = c0, #ARGV, 8 do
        missing[#missing + 1] = ARGV[i]
    end
end
return missing
"""
)

logger = logging.getLogger("eventbus.redis")

_CHUNK = 500
_COALESCE_S = 0.002
# An idle consumer wakes every worker_timeout (to notice a stop) but fetches without a ring only this
# often: the doorbell brings new work, and this poll only covers a ring lost to a reconnection.
_IDLE_POLL_S = 2.0


def _patch_dispatch(source: str) -> str:
    start, end = source.index(_FETCH_START), source.index(_FETCH_END)
    assert source.count(_NACK_GET) == 1, "dramatiq's dispatch.lua changed; re-check the nack patch"
    assert _DISPATCH_ACK in source, "dramatiq's dispatch.lua ack changed; re-check _ACK_MANY"
    return source[:start] + _FETCH + source[end:].replace(_NACK_GET, _NACK)


def make_client(url: str, timeout_s: float) -> redis.Redis:  # type: ignore[type-arg]
    """A client whose calls fail within ``timeout_s`` instead of hanging.

    A dropped connection (e.g. after a Redis restart) is retried once at once; a timeout is not,
    so a stalled server costs at most one connect plus one read timeout.
    """
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_s * 0.45,
        socket_timeout=timeout_s * 0.45,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        health_check_interval=30,
    )


class RedisBroker(HookCache, _DramatiqRedisBroker):
    """The production broker; keys live under ``namespace`` (one prefix per app or test run)."""

    def __init__(self, *, url: str, namespace: str, timeout_s: float = 2.0, **kwargs: Any) -> None:
        super().__init__(client=make_client(url, timeout_s), namespace=namespace, **kwargs)  # type: ignore[no-untyped-call]
        dispatch = patch_dispatch_for_recovery(_patch_dispatch(_scripts["dispatch"].decode()))
        self.scripts["dispatch"] = self.client.register_script(dispatch)
        self._enqueue_script = self.client.register_script(_ENQUEUE)
        self._ack_script: Any = self.client.register_script(_ACK_MANY)
        self.direct = Direct(self.client)
        self.doorbell = Doorbell(self.client, namespace)
        self.url = url
        # Queue semantics (issue 4): delayed messages (delay=, at=, retry backoff) wait in a sorted set,
        # not in worker memory; crash recovery and poison detection; global rate limits and caps.
        self.schedule = RedisSchedule(self)
        self.recovery = RedisRecovery(self)
        self.limits = RedisLimits(self)
        self.writes = GroupWriter(self._send_writes)
        # The ledger's completions of jobs acked by this process, written with their acks.
        self.completions: collections.deque[Completion] = collections.deque()
        # Messages a fan-out took into this process's hands, per queue, for its consumer (see write()).
        self.handed: dict[str, collections.deque[Message]] = {}
        self.consumers: dict[str, _Consumer] = {}

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _Consumer

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> dramatiq.Consumer:
        """The events queue gets a consumer that fans events out itself (see :mod:`eventbus.brokers.redis_fanout`)."""
        if queue_name == EVENTS_QUEUE:
            from eventbus.brokers.redis_fanout import FanoutConsumer

            return FanoutConsumer(self, queue_name, prefetch, timeout)
        return _Consumer(self, queue_name, prefetch, timeout)

    def _dispatch(self, command: str) -> Callable[..., Any]:
        """Dramatiq's dispatch script (fetch, ack, nack, requeue...), sent on a direct connection."""
        dispatch = self.scripts["dispatch"]

        def do_dispatch(queue_name: str, *args: Any) -> Any:
            return self.direct.evalsha(dispatch, *self._dispatch_args(command, queue_name), *args, keys=1)

        return do_dispatch

    def _dispatch_args(self, command: str, queue_name: str) -> list[Any]:
        return [
            self.namespace,
            command,
            current_millis(),
            queue_name,
            self.broker_id,
            self.heartbeat_timeout,
            self.dead_message_ttl,
            self._should_do_maintenance(command),
            self._max_unpack_size(),  # type: ignore[no-untyped-call]
        ]

    def _send_writes(self, marks: list[Any], acks: list[AckKey]) -> None:
        """One round trip of start marks and acks (see :mod:`eventbus.brokers.group_commit`).

        The acks, and the ledger completions waiting for them, go out as bare EVALSHA, ``_CHUNK`` per
        call; after a Redis restart the batch fails with NOSCRIPT once, and is sent again after
        :meth:`reload_scripts` (SADD, ack and completion are idempotent).
        """
        done = [self.completions.popleft() for _ in range(len(self.completions))]
        retention = self._retention().args()
        try:
            for attempt in (1, 2):
                commands: list[tuple[Any, ...]] = [("SADD", self.recovery.started, *marks)] if marks else []
                head = ("EVALSHA", self._ack_script.sha, 0, self.namespace, self.broker_id, current_millis())
                for i in range(0, max(len(acks), len(done)), _CHUNK):
                    pairs = acks[i : i + _CHUNK]
                    flat = itertools.chain.from_iterable(c.flat() for c in done[i : i + _CHUNK])
                    commands.append((*head, len(pairs), *itertools.chain.from_iterable(pairs), *retention, *flat))
                try:
                    replies = self.direct.pipeline(commands)
                    break
                except redis.exceptions.NoScriptError:  # Redis restarted and forgot the script
                    if attempt == 2:
                        raise
                    self.reload_scripts()
        except BaseException:
            self.completions.extendleft(reversed(done))  # they go with the next commit
            raise
        missing = {job_id.decode() for reply in replies[1 if marks else 0 :] for job_id in reply}
        if missing:  # their enqueue's ledger write is still on its way: write these in full instead
            self._complete_in_full([c for c in done if c.job_id in missing])

    def _complete_in_full(self, done: list[Completion]) -> None:
        from eventbus.middleware.ledger import ledger_writer

        writer = ledger_writer(self)
        if writer is not None:
            for c in done:
                writer.add(make_full(c.write()))

    def _retention(self) -> Retention:
        """What the ledger keeps: the Ledger middleware's own settings (the global ones without it)."""
        from eventbus.middleware.ledger import ledger_writer

        writer = ledger_writer(self)
        store = writer.store if writer is not None else None
        return store.retention if isinstance(store, RedisLedger) else Retention.from_settings(get_settings())

    def close(self) -> None:
        """Close the connections of the hot paths (see :mod:`eventbus.brokers.redis_direct`)."""
        self.direct.close()
        super().close()

    def reload_scripts(self) -> None:
        """Load the scripts sent as bare EVALSHA again (a restarted Redis forgot them)."""
        scripts: tuple[Any, ...] = (self.scripts["dispatch"], self._ack_script)
        for script in scripts:
            script.sha = self.client.script_load(script.script)

    def key(self, *parts: str) -> str:
        """A key under this broker's namespace."""
        return ":".join((self.namespace, *parts))

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        """Route to the message's priority list (retries and due delayed messages come through here)."""
        return self.enqueue_many([message], delay_ms=delay)[0]

    def enqueue_many(
        self,
        messages: Sequence[Message],
        *,
        delay_ms: int | None = None,
        once_keys: Sequence[str | None] | None = None,
        once_ttl_s: int = 86_400,
    ) -> list[Message]:
        """See :class:`eventbus.brokers.BusBroker`: one pipelined round trip per 500 messages.

        With ``delay_ms`` the messages go to the durable schedule (:mod:`eventbus.brokers.redis_schedule`).
        """
        keys = list(once_keys) if once_keys is not None else [None] * len(messages)
        if delay_ms is not None:
            return self.schedule.add(messages, delay_ms, keys, once_ttl_s)
        return self.write(messages, keys, once_ttl_s)[0]

    def write(
        self,
        messages: Sequence[Message],
        once_keys: Sequence[str | None],
        once_ttl_s: int,
        *,
        ack: tuple[str, Sequence[str]] | None = None,
        take: Mapping[str, int] | None = None,
    ) -> tuple[list[Message], list[Message]]:
        """Enqueue ``messages`` (those whose once-key is fresh), then ack ``ack`` = (queue, broker ids).

        The acks ride in the script call that writes the last messages, so a fan-out's deliveries and
        the ack of its events are one round trip; nothing is acked unless every message was written.
        ``take`` maps queues this process consumes to how many messages each can start now: messages
        of an idle one are taken into this process's hands (see ``_ENQUEUE``) and returned second, for
        the caller to give to the local consumer. Returns (queued, taken).
        """
        staged: list[tuple[Message, list[Any]]] = []
        for message, key in zip(messages, once_keys):
            # A fresh event is stored under its own id (see bus.py); any other message gets a new one,
            # never an earlier attempt's, whose ack would delete this copy.
            rid = message.options.get("redis_message_id")
            if rid != message.message_id:
                message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
            target = message.queue_name + list_suffix(message)
            staged.append(
                (
                    message,
                    [message.queue_name, target, message.options["redis_message_id"], message.encode(), key or ""],
                )
            )
        for message, _ in staged:
            self.emit_before("enqueue", message, None)
        ack_queue, ack_ids = ack if ack is not None else ("", ())
        head = [self.namespace, once_ttl_s]
        chunks = [[arg for _, row in staged[i : i + _CHUNK] for arg in row] for i in range(0, len(staged), _CHUNK)]
        flags: list[int] = []
        if len(chunks) <= 1:
            take = {q: n for q, n in (take or {}).items() if n > 0}
            # Held before the script runs: a reconciliation never requeues a message being taken.
            candidates: dict[str, list[str]] = {}
            for m, _ in staged:
                if m.queue_name in take:
                    candidates.setdefault(m.queue_name, []).append(m.options["redis_message_id"])
            for queue, rids in candidates.items():
                InHand.of(self.broker_id, queue).reserve(*rids)
            budget = [x for pair in take.items() for x in pair]
            try:
                flags = self.direct.evalsha(
                    self._enqueue_script,
                    *head,
                    ack_queue,
                    self.broker_id,
                    len(ack_ids),
                    *ack_ids,
                    len(take),
                    *budget,
                    *(chunks[0] if chunks else ()),
                    resend=not take,  # a resent take finds its once-keys and would hand out nothing
                )
            except Exception:
                for queue in candidates:  # the script may have taken some: look at the ack sets soon
                    InHand.of(self.broker_id, queue).connection_lost()
                raise
            finally:
                for queue, rids in candidates.items():
                    in_hand = InHand.of(self.broker_id, queue)
                    in_hand.add(*(m.options["redis_message_id"] for (m, _), f in zip(staged, flags) if f == 2
                                  and m.queue_name == queue))  # fmt: skip
                    in_hand.release(*rids)
        else:
            with self.client.pipeline(transaction=False) as pipe:
                for args in chunks:
                    self._enqueue_script(args=[*head, "", self.broker_id, 0, 0, *args], client=pipe)
                for chunk in pipe.execute():  # raises if any chunk failed: then nothing is acked
                    flags.extend(chunk)
            if ack_ids:
                self._enqueue_script(args=[*head, ack_queue, self.broker_id, len(ack_ids), *ack_ids, 0])
        for (message, _), flag in zip(staged, flags):
            if flag:
                self.emit_after("enqueue", message, None)
        queued = [message for (message, _), flag in zip(staged, flags) if flag == 1]
        taken = [message for (message, _), flag in zip(staged, flags) if flag == 2]
        return queued, taken


class _Consumer(_RedisConsumer):
    """Dramatiq's consumer, waiting on the doorbell instead of sleeping, and nacking fresh copies.

    Malformed messages are dead-lettered at the decode step (see ``eventbus.brokers.malformed``);
    connection errors *and* timeouts surface as ``ConnectionClosed`` (the worker retries acks and
    restarts the consumer); fetches orphaned by a connection error are requeued (see
    ``eventbus.brokers.redis_reconnect``).
    """

    def __init__(self, broker: RedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]
        self.bell = broker.doorbell.bell(queue_name)
        self.seen_rings = -1
        self.poll_at = 0.0
        self.full = False
        self.emptied = False
        self.refilling = False
        # Fetch again once this many slots are free: the worker threads never run dry, and a fetch
        # still brings several messages per round trip.
        self.batch = max(1, self.prefetch // 4)
        self.max_message_bytes = get_settings().max_message_bytes
        self.in_hand = InHand.of(broker.broker_id, queue_name)
        self.acks_key = broker.key(f"__acks__.{broker.broker_id}.{queue_name}")
        if queue_name.endswith(".DQ"):
            self.in_hand.clear()  # Dramatiq drops a .DQ consumer's delayed messages when it restarts
        else:
            broker.consumers[queue_name] = self
        self.handed = broker.handed.setdefault(queue_name, collections.deque())

    @property
    def outstanding_message_count(self) -> int:
        return len(self.queued_message_ids) + len(self.message_cache) + len(self.handed)

    def room(self) -> int:
        """How many more messages this consumer could hand to the worker now."""
        return int(self.prefetch) - self.outstanding_message_count

    def wake(self) -> None:
        """Messages were handed over: hand them out at once (no coalescing wait, no fetch)."""
        self.refilling = True
        self.bell.event.set()

    def __next__(self) -> dramatiq.MessageProxy | None:
        try:
            while True:
                if self.handed:
                    return self._hand_out(self.handed.popleft())
                if self.message_cache:
                    proxy = self._take()
                    if proxy is not None:
                        return proxy
                    continue
                if self.in_hand.due():
                    self.in_hand.reconcile(
                        self.broker.client, self.acks_key, lambda ids: self.broker.do_requeue(self.queue_name, *ids)
                    )
                if self._fetch_due() and self._fetch():
                    continue
                if self.handed:  # handed over while this thread fetched (that wake was cleared)
                    continue
                self._wait()
                return None
        except REDIS_ERRORS as e:
            self.in_hand.connection_lost()
            raise dramatiq.errors.ConnectionClosed(e) from None  # type: ignore[no-untyped-call]

    def _fetch_due(self) -> bool:
        """Fetch unless the lists were found empty and nothing rang since (then the next message rings)."""
        return not self.emptied or self.bell.rings != self.seen_rings

    def _fetch(self) -> bool:
        """Fetch as many as there is room for (once a batch of slots is free); True if any came."""
        self.bell.event.clear()  # before fetching: a ring that lands after the fetch is not lost
        self.seen_rings = self.bell.rings
        self.poll_at = time.monotonic() + _IDLE_POLL_S
        free = self.prefetch - self.outstanding_message_count
        self.full = free < self.batch
        if self.full:
            return False
        fetched = self.broker.do_fetch(self.queue_name, free)
        if fetched:  # the last value names the careful ones (see eventbus.brokers.redis_recovery)
            careful = fetched.pop()
            if careful:
                self.broker.recovery.careful.update(careful.decode().split(","))
        self.message_cache = fetched
        # Fewer than asked for: the lists are empty now, so the next message rings. Wait for that
        # ring instead of fetching a trickle one message at a time.
        self.emptied = len(self.message_cache) < free
        return bool(self.message_cache)

    def _wait(self) -> None:
        """Sleep until a ring, a refill, a handover or the idle timeout."""
        if not self.bell.event.wait(self.timeout / 1000):
            if time.monotonic() >= self.poll_at:
                self.emptied = False  # no ring for a while: look once anyway
        else:
            self.bell.event.clear()  # taken; a ring after this still shows in ``rings``
            if self.bell.rings != self.seen_rings and not self.refilling and self.outstanding_message_count:
                # Work is in hand, so latency is not at stake: let rings coalesce into one fetch.
                time.sleep(_COALESCE_S)
        self.refilling = False

    def _take(self) -> dramatiq.MessageProxy | None:
        """The next fetched message for a worker thread (None: it was unusable and is dead-lettered)."""
        data = self.message_cache.pop(0)
        message = self._decode(data) if data is not None else None
        return self._hand_out(message) if message is not None else None

    def _hand_out(self, message: Message) -> dramatiq.MessageProxy:
        self.in_hand.add(message.options["redis_message_id"])
        self.queued_message_ids.add(message.message_id)
        return dramatiq.MessageProxy(message)

    def _decode(self, data: bytes) -> Message | None:
        """The message in ``data``, or None after moving unusable bytes to the dead letters."""
        try:
            message = malformed.decode(data, self.max_message_bytes)
        except malformed.MalformedMessage as exc:
            redis_id = self._find_id(data)
            if redis_id is not None:
                dead = malformed.dead_letter(data, self.queue_name, str(exc), redis_id)
                self.broker.do_nack(self.queue_name, redis_id, dead.encode())
            malformed.log_malformed(self.queue_name, str(exc))
            return None
        if "redis_message_id" not in message.options:  # pushed by hand: find its id so it can be acked
            redis_id = self._find_id(data)
            if redis_id is None:
                return None
            message = message.copy(options={"redis_message_id": redis_id})
        return message

    def _find_id(self, data: bytes) -> str | None:
        # Rare path: look the bytes up among this consumer's unacked messages (at most its prefetch).
        ids = list(self.broker.client.smembers(self.acks_key))
        if ids:
            values = self.broker.client.hmget(self.broker.key(f"{self.queue_name}.msgs"), ids)
            for redis_id, value in zip(ids, values):
                if value == data:
                    return redis_id.decode() if isinstance(redis_id, bytes) else str(redis_id)
        return None

    def ack(self, message: dramatiq.MessageProxy) -> None:
        """Group-committed with job starts (see :mod:`eventbus.brokers.group_commit`), and with the job's
        ledger completion, if the ledger left one on the message."""
        done = message.__dict__.get("_ledger_done")
        if done is not None:
            self.broker.completions.append(done)
        self.broker.writes.ack(self.queue_name, message.options["redis_message_id"], self.in_hand.discard_ids)
        self.queued_message_ids.discard(message.message_id)
        self._refill()

    def close(self) -> None:
        """Give back messages handed over or fetched but not handed out; write the acks still pending.

        The consumer thread stops between two messages of a fetch, so some may still be in the cache.
        """
        left = [self.handed.popleft().options["redis_message_id"] for _ in range(len(self.handed))]
        if left or self.message_cache:
            try:
                left += self._cached_ids()
                self._requeue_ids(left)
            except (dramatiq.errors.ConnectionClosed, *REDIS_ERRORS) as e:
                # Not in hand any more: the next consumer's reconciliation requeues them (or, if this
                # process is stopping, the janitor of another one).
                self.in_hand.discard(*left)
                self.in_hand.connection_lost()
                logger.warning("could not give back %d message(s) at close (%s); they will be requeued", len(left), e)
        try:
            self.broker.writes.flush()
        except redis.RedisError as e:
            n = len(self.broker.writes)
            logger.warning("could not write %d pending ack(s) at close (%s); those jobs will run again", n, e)

    def _cached_ids(self) -> list[str]:
        """Ids of the fetched messages still in the cache, which is left empty."""
        cached, self.message_cache = self.message_cache, []
        decoded = (self._decode(data) for data in cached if data is not None)
        return [message.options["redis_message_id"] for message in decoded if message is not None]

    def _refill(self) -> None:
        # A full consumer waits for a batch of slots to free up, then fetches at once (no coalescing:
        # its worker threads are about to run out of work).
        if self.full and self.prefetch - self.outstanding_message_count >= self.batch:
            self.refilling = True
            self.emptied = False
            self.bell.event.set()

    def nack(self, message: dramatiq.MessageProxy) -> None:
        exception = getattr(message, "_exception", None)
        data = message._message.copy(options=nacked_options(message.options, exception)).encode()
        redis_id = message.options["redis_message_id"]
        try:
            self.broker.writes.flush()  # its start mark first: the nack script clears it
            self.broker.do_nack(self.queue_name, redis_id, data)
        except REDIS_ERRORS as e:
            raise dramatiq.errors.ConnectionClosed(e) from None  # type: ignore[no-untyped-call]
        finally:
            self.queued_message_ids.discard(message.message_id)
            self._refill()
        self.in_hand.discard(redis_id)

    def requeue(self, messages: Iterable[dramatiq.MessageProxy]) -> None:
        self._requeue_ids([m.options["redis_message_id"] for m in messages])

    def _requeue_ids(self, redis_ids: Sequence[str]) -> None:
        if not redis_ids:
            return
        try:
            self.broker.do_requeue(self.queue_name, *redis_ids)
        except REDIS_ERRORS as e:
            raise dramatiq.errors.ConnectionClosed(e) from None  # type: ignore[no-untyped-call]
        self.in_hand.discard(*redis_ids)
        self.broker.recovery.careful.difference_update(redis_ids)  # unstarted: the next fetch decides again
