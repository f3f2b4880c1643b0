"""Dramatiq's RedisBroker with priority-ordered fetch, a pause flag, once-only bulk enqueue and fresh dead letters.

Each queue keeps one Dramatiq name (``email``) and four Redis lists: ``email.p0`` (CRITICAL),
``email.p1`` (HIGH), ``email`` (NORMAL) and ``email.p3`` (LOW). The patched ``fetch`` pops from
the highest non-empty list first, so priority holds in the broker, not only in a worker's memory.
Each queue's consumer is :class:`eventbus.brokers.redis.consumer.RedisConsumer`.
"""

from __future__ import annotations

import collections
import itertools
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker as _DramatiqRedisBroker
from dramatiq.brokers.redis import _RedisConsumer, _scripts
from dramatiq.common import current_millis
from redis.backoff import NoBackoff
from redis.retry import Retry

from eventbus.brokers import Message, list_suffix
from eventbus.brokers.group_commit import AckKey, GroupWriter
from eventbus.brokers.hooks import HookCache
from eventbus.brokers.redis.consumer import RedisConsumer
from eventbus.brokers.redis.direct import Direct
from eventbus.brokers.redis.doorbell import Doorbell
from eventbus.brokers.redis.limits import RedisLimits
from eventbus.brokers.redis.lua import load
from eventbus.brokers.redis.reconnect import InHand
from eventbus.brokers.redis.recovery import RedisRecovery, patch_dispatch_for_recovery
from eventbus.brokers.redis.schedule import RedisSchedule
from eventbus.brokers.redis.stores import RedisStores
from eventbus.delivery import EVENTS_QUEUE
from eventbus.ledger import Completion, make_full
from eventbus.retention import Retention
from eventbus.settings import Settings, get_settings

# Text of Dramatiq's dispatch script that the patches in lua/dispatch_*.lua replace. The fetch patch
# replaces everything from _FETCH_START to _FETCH_END; the nack patch replaces _NACK_GET.
_FETCH_START = 'elseif command == "fetch" then'
_FETCH_END = "-- Moves fetched-but-not-processed messages back"
_NACK_GET = '        local message = redis.call("hget", queue_messages, message_id)'
# Dramatiq's ack (checked at start): lua/ack_many.lua does the same for each of its acks, after
# forgetting the start mark as the recovery patch does.
_DISPATCH_ACK = """    if redis.call("srem", queue_acks, message_id) > 0 then
        redis.call("hdel", queue_messages, message_id)
    end"""
_FETCH = load("dispatch_fetch")
_NACK = load("dispatch_nack")
_ENQUEUE = load("enqueue")
_ACK_MANY = load("ack_many")

_CHUNK = 500


def _patch_dispatch(source: str) -> str:
    start, end = source.index(_FETCH_START), source.index(_FETCH_END)
    assert source.count(_NACK_GET) == 1, "dramatiq's dispatch.lua changed; re-check the nack patch"
    assert _DISPATCH_ACK in source, "dramatiq's dispatch.lua ack changed; re-check lua/ack_many.lua"
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

    def __init__(
        self, *, url: str, namespace: str, timeout_s: float = 2.0, settings: Settings | None = None, **kwargs: Any
    ) -> None:
        super().__init__(client=make_client(url, timeout_s), namespace=namespace, **kwargs)  # type: ignore[no-untyped-call]
        dispatch = patch_dispatch_for_recovery(_patch_dispatch(_scripts["dispatch"].decode()))
        self.scripts["dispatch"] = self.client.register_script(dispatch)
        self._enqueue_script = self.client.register_script(_ENQUEUE)
        self._ack_script: Any = self.client.register_script(_ACK_MANY)
        self.direct = Direct(self.client)
        self.doorbell = Doorbell(self.client, namespace)
        self.url = url
        # Queue semantics: delayed messages (delay=, at=, retry backoff) wait in a sorted set,
        # not in worker memory; crash recovery and poison detection; global rate limits and caps.
        self.schedule = RedisSchedule(self)
        self.recovery = RedisRecovery(self)
        self.limits = RedisLimits(self)
        self.stores = RedisStores(self, settings or get_settings())
        self.writes = GroupWriter(self._send_writes)
        # The ledger's completions of jobs acked by this process, written with their acks.
        self.completions: collections.deque[Completion] = collections.deque()
        # Messages a fan-out took into this process's hands, per queue, for its consumer (see write()).
        self.handed: dict[str, collections.deque[Message]] = {}
        self.consumers: dict[str, RedisConsumer] = {}

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return RedisConsumer

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> dramatiq.Consumer:
        """The events queue gets a consumer that fans events out itself (see :mod:`eventbus.brokers.redis.fanout`)."""
        if queue_name == EVENTS_QUEUE:
            from eventbus.brokers.redis.fanout import FanoutConsumer

            return FanoutConsumer(self, queue_name, prefetch, timeout)
        return RedisConsumer(self, queue_name, prefetch, timeout)

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
        writer = self.stores.ledger
        if writer is not None:
            for c in done:
                writer.add(make_full(c.write()))

    def _retention(self) -> Retention:
        """What the ledger keeps."""
        return self.stores.retention

    def close(self) -> None:
        """Close the connections of the hot paths (see :mod:`eventbus.brokers.redis.direct`)."""
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
        """See :class:`eventbus.brokers.BusBroker`: one script per 500 messages, all in one transaction.

        With ``delay_ms`` the messages go to the durable schedule (:mod:`eventbus.brokers.redis.schedule`).
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
            # One MULTI/EXEC: Redis runs every chunk, or none when it refuses writes (a full disk) or the
            # connection drops first. A failed publish_many then leaves none of its events.
            with self.client.pipeline(transaction=True) as pipe:
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
