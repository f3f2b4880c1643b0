"""Durable scheduling on Redis: delayed messages wait in a sorted set, not in worker memory.

Keys (under the broker's namespace):

- ``schedule``: ZSET, message_id -> eta in ms (Redis clock).
- ``schedule.msgs``: HASH, message_id -> ``queue \\n list \\n redis_message_id \\n encoded message``.
- ``schedule.counts``: HASH, queue -> how many of its messages are scheduled (for stats and metrics).

Every worker runs a promoter (:func:`promote`) that moves due entries to their queue's priority list
in one Lua call, so each is released exactly once however many workers run. Scheduling a message id
that is already scheduled replaces it (a reschedule). Retry backoffs take the same path.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.common import current_millis

from eventbus.brokers import Message, list_suffix
from eventbus.brokers.redis.lua import load
from eventbus.scheduled import ScheduledEntry

if TYPE_CHECKING:
    from eventbus.brokers.redis.broker import RedisBroker

SCHEDULE_KEY = "schedule"
SCHEDULE_COUNTS_KEY = SCHEDULE_KEY + ".counts"
_CHUNK = 500

_SCHEDULE = load("schedule_add")
_PROMOTE = load("schedule_promote")
_CANCEL = load("schedule_cancel")


class RedisSchedule:
    """The scheduled-message store of one :class:`RedisBroker`."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.zkey = broker.key(SCHEDULE_KEY)
        self.hkey = broker.key(SCHEDULE_KEY + ".msgs")
        self.ckey = broker.key(SCHEDULE_COUNTS_KEY)  # queue -> how many of its messages wait here
        self._schedule = broker.client.register_script(_SCHEDULE)
        self._promote = broker.client.register_script(_PROMOTE)
        self._cancel = broker.client.register_script(_CANCEL)

    def add(
        self, messages: Sequence[Message], delay_ms: int, once_keys: Sequence[str | None], once_ttl_s: int
    ) -> list[Message]:
        """Store ``messages`` due in ``delay_ms``; one script per 500, in one transaction. Returns those written."""
        eta = current_millis() + max(0, delay_ms)
        staged: list[tuple[Message, list[Any]]] = []
        for message, key in zip(messages, once_keys):
            rid = str(uuid.uuid4())  # never the previous attempt's id: its ack would delete this copy
            options = {k: v for k, v in message.options.items() if k != "eta"}
            options["redis_message_id"] = rid
            stored: Message = dramatiq.Message(
                queue_name=message.queue_name.removesuffix(".DQ"),
                actor_name=message.actor_name,
                args=message.args,
                kwargs=message.kwargs,
                options=options,
                message_id=message.message_id,
                message_timestamp=message.message_timestamp,
            )
            target = stored.queue_name + list_suffix(stored)
            entry = f"{stored.queue_name}\n{target}\n{rid}\n{stored.encode().decode()}"
            staged.append((stored.copy(options={"eta": eta}), [stored.message_id, entry, key or ""]))
        for message, _ in staged:
            self.broker.emit_before("enqueue", message, delay_ms)
        flags: list[int] = []
        with self.broker.client.pipeline(transaction=True) as pipe:  # every chunk or none (see RedisBroker.write)
            for i in range(0, len(staged), _CHUNK):
                args = [arg for _, row in staged[i : i + _CHUNK] for arg in row]
                self._schedule(args=[self.broker.namespace, once_ttl_s, max(0, delay_ms), *args], client=pipe)
            for chunk in pipe.execute():
                flags.extend(chunk)
        out = [message for (message, _), flag in zip(staged, flags) if flag]
        for message in out:
            self.broker.emit_after("enqueue", message, delay_ms)
        return out

    def promote(self, limit: int = 1_000) -> list[Message]:
        """Release due messages to their lists (atomic: each goes to exactly one caller)."""
        rows = self._promote(keys=[self.broker.namespace], args=[limit])
        return [dramatiq.Message.decode(row) for row in rows]

    def cancel(self, message_id: str) -> bool:
        """Remove a scheduled message; False if it is not scheduled (unknown, already due, or cancelled)."""
        return bool(self._cancel(keys=[self.zkey, self.hkey, self.ckey], args=[message_id]))

    def count(self) -> int:
        """How many messages wait in the schedule."""
        return int(self.broker.client.zcard(self.zkey))

    def counts_key(self) -> str:
        """The hash of scheduled messages per queue (read it in a pipeline with other stats)."""
        return self.ckey

    def page(self, offset: int, limit: int) -> list[ScheduledEntry]:
        """Scheduled messages by eta, ``limit`` from ``offset`` (two round trips)."""
        rows = self.broker.client.zrange(self.zkey, offset, offset + limit - 1, withscores=True)
        if not rows:
            return []
        entries = self.broker.client.hmget(self.hkey, [member for member, _ in rows])
        out = []
        for (member, score), entry in zip(rows, entries):
            if entry is None:  # promoted or cancelled between the two calls
                continue
            queue, _target, _rid, data = entry.decode().split("\n", 3)
            out.append(ScheduledEntry(member.decode(), int(score), queue, dramatiq.Message.decode(data.encode())))
        return out

    # -- recurring schedules (cron) ------------------------------------------------------------

    def register_schedules(self, definitions: Mapping[str, str]) -> None:
        """Record the JSON definitions of the schedules a worker runs (for the control plane)."""
        if definitions:
            self.broker.client.hset(self.broker.key("schedules"), mapping=definitions)  # type: ignore[arg-type]

    def schedule_definitions(self) -> dict[str, str]:
        """name -> JSON definition of every schedule a worker registered."""
        raw = self.broker.client.hgetall(self.broker.key("schedules"))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def record_tick(self, name: str, tick_ms: int) -> None:
        """Remember the latest tick ``name`` published."""
        self.broker.client.hset(self.broker.key("schedules.last"), name, tick_ms)

    def last_ticks(self) -> dict[str, int]:
        """name -> the latest tick published."""
        raw = self.broker.client.hgetall(self.broker.key("schedules.last"))
        return {k.decode(): int(v) for k, v in raw.items()}
