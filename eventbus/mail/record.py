"""The send record: one per idempotency key, pending -> sending -> sent | failed, in the broker's store.

Redis keeps them in hashes (:mod:`eventbus.brokers.redis.send_records`), SQLite in the broker's file
(:mod:`eventbus.brokers.sqlite.send_records`), ``memory://`` in a dict (:mod:`eventbus.mail.record_memory`). Counters:
sent, failed, retried, skipped (already sent) and uncertain (found in ``sending`` after a crash).

The worker moves records with two operations, :class:`Claim` and :class:`Finish` (and reads them
with :class:`Peek`). Those issued in
the same event-loop tick (the concurrent sends of a bulk chunk) go to the store together, in one
round trip (:class:`Coalescer`); nothing waits for a later tick, so a record is written as soon as
the SMTP reply it records has arrived.
"""

from __future__ import annotations

import asyncio
import enum
import json
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import dramatiq

UNCERTAIN = "uncertain: a worker stopped while handing this email to SMTP; not resent (at most once)"


class SendState(enum.StrEnum):
    """Where one email is: waiting, being handed to SMTP, accepted by SMTP, or given up."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclass
class SendRecord:
    """What an operator sees for one email."""

    key: str
    state: SendState
    to: list[str] = field(default_factory=list)
    template: str = ""
    message_id: str = ""
    attempts: int = 0
    code: int | None = None
    text: str = ""
    accepted: list[str] = field(default_factory=list)
    refused: dict[str, Any] = field(default_factory=dict)
    created_ms: int = 0
    updated_ms: int = 0

    @classmethod
    def from_hash(cls, key: str, raw: Mapping[str, str]) -> SendRecord:
        """Decode the stored hash."""
        code = raw.get("code", "")
        return cls(
            key=key,
            state=SendState(raw.get("state", "pending")),
            to=json.loads(raw.get("to") or "[]"),
            template=raw.get("template", ""),
            message_id=raw.get("message_id", ""),
            attempts=int(raw.get("attempts") or 0),
            code=int(code) if code not in ("", None) else None,
            text=raw.get("text", ""),
            accepted=json.loads(raw.get("accepted") or "[]"),
            refused=json.loads(raw.get("refused") or "{}"),
            created_ms=int(raw.get("created_ms") or 0),
            updated_ms=int(raw.get("updated_ms") or 0),
        )


def claim_fields_for(to: Sequence[str], template: str, message_id: str) -> dict[str, str]:
    """What a claim needs to create a record that is missing (expired, or written by an older version)."""
    return {"to": json.dumps(list(to)), "template": template, "message_id": message_id, "created_ms": str(now_ms())}


def new_fields(to: Sequence[str], template: str, message_id: str) -> dict[str, str]:
    """The fields of a fresh pending record."""
    now = str(now_ms())
    return {
        "state": SendState.PENDING.value,
        "to": json.dumps(list(to)),
        "template": template,
        "message_id": message_id,
        "attempts": "0",
        "accepted": "[]",
        "created_ms": now,
        "updated_ms": now,
    }


@dataclass(frozen=True)
class Claim:
    """Take an email for sending; the result is the record as it was before (None: it was missing).

    pending or missing -> sending (attempts + 1); sending -> failed as uncertain (counted), because a
    worker stopped while handing it to SMTP; sent or failed -> unchanged (counted as skipped).
    ``fields`` create a missing record.
    """

    key: str
    fields: dict[str, str]


@dataclass(frozen=True)
class Finish:
    """Write the outcome of an attempt and bump ``counter``."""

    key: str
    state: SendState
    updates: dict[str, str]
    counter: str


@dataclass(frozen=True)
class Peek:
    """Read a record without changing it: a retried chunk leaves out the emails already settled."""

    key: str


Op = Claim | Finish | Peek


class RecordStore(Protocol):
    """Where send records live; one implementation per broker kind."""

    def create_pending(self, rows: Sequence[tuple[str, dict[str, str]]]) -> list[SendState | None]:
        """Create records that do not exist yet (publisher side); returns the prior state of each (None: new)."""
        ...

    def get(self, key: str) -> SendRecord | None:
        """The record for ``key``, if any."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters: sent, failed, retried, skipped, uncertain."""
        ...

    async def claim(self, key: str, fields: dict[str, str]) -> SendRecord | None:
        """Move pending (or missing) to sending; returns the record as it was before (None: missing)."""
        ...

    async def apply(self, ops: Sequence[Op]) -> list[SendRecord | None]:
        """Run ``ops`` in order in one round trip; one result per op (None for a Finish)."""
        ...

    async def aclose(self) -> None:
        """Release clients bound to the running event loop (worker shutdown)."""
        ...


class Coalescer:
    """Ops submitted during one event-loop tick are applied together at the start of the next.

    A batch never waits for an earlier one to finish: each is its own round trip.
    """

    def __init__(self, apply: Callable[[Sequence[Op]], Awaitable[list[SendRecord | None]]]) -> None:
        self._apply = apply
        self._queued: list[tuple[Op, asyncio.Future[SendRecord | None]]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def run(self, *ops: Op) -> list[SendRecord | None]:
        """Apply ``ops`` (in order, in one batch) with whatever else was submitted in this tick."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[SendRecord | None]] = []
        if not self._queued:
            loop.call_soon(self._flush)
        for op in ops:
            future: asyncio.Future[SendRecord | None] = loop.create_future()
            self._queued.append((op, future))
            futures.append(future)
        return list(await asyncio.gather(*futures))

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _send(self, batch: list[tuple[Op, asyncio.Future[SendRecord | None]]]) -> None:
        try:
            results = await self._apply([op for op, _ in batch])
        except BaseException as exc:  # every waiter learns it; a cancelled waiter is simply skipped
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)


def claim_fields(fields: dict[str, str]) -> str:
    """Apply a claim to a record's fields in place (memory and SQLite); returns the counter to bump, or ''."""
    state = fields.get("state", SendState.PENDING.value)
    if state == SendState.PENDING.value:
        attempts = str(int(fields.get("attempts") or 0) + 1)
        fields.update(state=SendState.SENDING.value, attempts=attempts, updated_ms=str(now_ms()))
        return ""
    if state == SendState.SENDING.value:
        fields.update(state=SendState.FAILED.value, code="", text=UNCERTAIN, updated_ms=str(now_ms()))
        return "uncertain"
    return "skipped"


_coalescers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, tuple[RecordStore, Coalescer]]]
_coalescers = weakref.WeakKeyDictionary()


def coalescer(store: RecordStore) -> Coalescer:
    """The coalescer of ``store`` on the running event loop (the worker's loop thread)."""
    per_loop = _coalescers.setdefault(asyncio.get_running_loop(), {})
    entry = per_loop.get(id(store))
    if entry is None or entry[0] is not store:
        entry = per_loop[id(store)] = (store, Coalescer(store.apply))
    return entry[1]


def record_store(broker: dramatiq.Broker | None = None) -> RecordStore:
    """The send-record store of ``broker`` (default: the process-wide one): Redis, the SQLite file, or memory."""
    from eventbus.broker import get_broker
    from eventbus.brokers.redis.broker import RedisBroker
    from eventbus.brokers.redis.send_records import RedisRecords
    from eventbus.brokers.sqlite.broker import SQLiteBroker
    from eventbus.brokers.sqlite.send_records import SQLiteSendRecords
    from eventbus.mail.record_memory import MemoryRecords
    from eventbus.settings import get_settings

    broker = broker or get_broker()
    store: RecordStore | None = getattr(broker, "_eventbus_send_records", None)
    if store is None:
        if isinstance(broker, RedisBroker):
            store = RedisRecords(broker.client, broker.url, broker.namespace, get_settings().mail_record_ttl_s)
        elif isinstance(broker, SQLiteBroker):
            store = SQLiteSendRecords(broker.store, get_settings().mail_record_ttl_s)
        else:
            store = MemoryRecords()
        broker._eventbus_send_records = store  # type: ignore[attr-defined]
    return store


def mail_stats() -> dict[str, int]:
    """Send counters: sent, failed, retried, skipped (already sent) and uncertain (crash between 250 and record)."""
    return record_store().stats()


def get_send_record(key: str) -> SendRecord | None:
    """The send record for an idempotency key (for operators, admin pages and tests)."""
    return record_store().get(key)


def now_ms() -> int:
    """Wall-clock milliseconds, as stored in records."""
    return int(time.time() * 1000)
