"""The send record: one per idempotency key, pending -> sending -> sent | failed, in the broker's store.

SQLite keeps them in the broker's file (:mod:`eventbus.brokers.sqlite_records`).
Redis layout (under the broker namespace): ``mail:send:<key>`` is a hash (state, to, template,
message_id, attempts, code, text, accepted, refused, timestamps) with a TTL; ``mail:stats`` counts
sent, failed, retried, skipped (already sent) and uncertain (found in ``sending`` after a crash).
The worker path uses an asyncio Redis client on the worker's event loop, one round trip per step.
"""

from __future__ import annotations

import asyncio
import enum
import json
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import dramatiq
import redis
import redis.asyncio


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


def new_fields(to: Sequence[str], template: str, message_id: str) -> dict[str, str]:
    """The fields of a fresh pending record."""
    now = str(_now_ms())
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

    async def finish(self, key: str, state: SendState, updates: dict[str, str], counter: str) -> None:
        """Write the outcome of an attempt and bump ``counter`` in one round trip."""
        ...

    async def count(self, counter: str) -> None:
        """Bump a counter."""
        ...

    async def aclose(self) -> None:
        """Release clients bound to the running event loop (worker shutdown)."""
        ...


# KEYS[1] record; ARGV: ttl, then field/value pairs. Returns the old state or false.
_CREATE = """
local old = redis.call("hget", KEYS[1], "state")
if old then return old end
redis.call("hset", KEYS[1], unpack(ARGV, 2))
redis.call("expire", KEYS[1], ARGV[1])
return false
"""

# KEYS[1] record; ARGV: ttl, now_ms, then field/value pairs for a missing record. Returns the old hash.
_CLAIM = """
local old = redis.call("hgetall", KEYS[1])
local state = redis.call("hget", KEYS[1], "state")
if not state then
    redis.call("hset", KEYS[1], unpack(ARGV, 3))
    redis.call("expire", KEYS[1], ARGV[1])
    state = "pending"
end
if state == "pending" then
    redis.call("hset", KEYS[1], "state", "sending", "updated_ms", ARGV[2])
    redis.call("hincrby", KEYS[1], "attempts", 1)
end
return old
"""


class RedisRecords:
    """Send records in Redis under the broker's namespace."""

    def __init__(self, client: redis.Redis, url: str, namespace: str, ttl_s: int) -> None:  # type: ignore[type-arg]
        self.client = client
        self.url = url
        self.namespace = namespace
        self.ttl_s = ttl_s
        self._create = client.register_script(_CREATE)
        self._aio: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[redis.asyncio.Redis, Any]]  # type: ignore[type-arg]
        self._aio = weakref.WeakKeyDictionary()

    def key(self, key: str) -> str:
        return f"{self.namespace}:mail:send:{key}"

    @property
    def stats_key(self) -> str:
        return f"{self.namespace}:mail:stats"

    def create_pending(self, rows: Sequence[tuple[str, dict[str, str]]]) -> list[SendState | None]:
        if not rows:
            return []
        with self.client.pipeline(transaction=False) as pipe:
            for key, fields in rows:
                flat = [x for kv in fields.items() for x in kv]
                self._create(keys=[self.key(key)], args=[self.ttl_s, *flat], client=pipe)
            results = pipe.execute()
        return [SendState(r.decode()) if r else None for r in results]

    def get(self, key: str) -> SendRecord | None:
        raw = self.client.hgetall(self.key(key))
        if not raw:
            return None
        return SendRecord.from_hash(key, {k.decode(): v.decode() for k, v in raw.items()})

    def stats(self) -> dict[str, int]:
        raw = self.client.hgetall(self.stats_key)
        return {k.decode(): int(v) for k, v in raw.items()}

    def _client(self) -> tuple[redis.asyncio.Redis, Any]:  # type: ignore[type-arg]
        """One asyncio client per event loop (the worker's loop thread), created on first use."""
        loop = asyncio.get_running_loop()
        if loop not in self._aio:
            client = redis.asyncio.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
            self._aio[loop] = (client, client.register_script(_CLAIM))
        return self._aio[loop]

    async def claim(self, key: str, fields: dict[str, str]) -> SendRecord | None:
        _, script = self._client()
        flat = [x for kv in fields.items() for x in kv]
        raw = await script(keys=[self.key(key)], args=[self.ttl_s, _now_ms(), *flat])
        if not raw:
            return None
        pairs = [x.decode() for x in raw]
        return SendRecord.from_hash(key, dict(zip(pairs[::2], pairs[1::2])))

    async def finish(self, key: str, state: SendState, updates: dict[str, str], counter: str) -> None:
        client, _ = self._client()
        async with client.pipeline(transaction=True) as pipe:
            mapping: dict[str | bytes, str] = {"state": state.value, "updated_ms": str(_now_ms())}
            mapping.update(updates)
            pipe.hset(self.key(key), mapping=mapping)
            pipe.hincrby(self.stats_key, counter, 1)
            await pipe.execute()

    async def count(self, counter: str) -> None:
        client, _ = self._client()
        await client.hincrby(self.stats_key, counter, 1)

    async def aclose(self) -> None:
        """Close the asyncio clients of the running loop (worker shutdown)."""
        entry = self._aio.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[0].aclose()  # type: ignore[attr-defined]


class MemoryRecords:
    """Send records in a dict, for ``memory://`` (TestBus)."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, str]] = {}
        self.counters: dict[str, int] = {}
        self._lock = threading.Lock()

    def create_pending(self, rows: Sequence[tuple[str, dict[str, str]]]) -> list[SendState | None]:
        out: list[SendState | None] = []
        with self._lock:
            for key, fields in rows:
                old = self.records.get(key)
                out.append(SendState(old["state"]) if old else None)
                if old is None:
                    self.records[key] = dict(fields)
        return out

    def get(self, key: str) -> SendRecord | None:
        with self._lock:
            raw = self.records.get(key)
            return SendRecord.from_hash(key, raw) if raw else None

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)

    async def claim(self, key: str, fields: dict[str, str]) -> SendRecord | None:
        with self._lock:
            old = self.records.get(key)
            before = SendRecord.from_hash(key, old) if old else None
            if old is None:
                old = self.records[key] = dict(fields)
            if old["state"] == SendState.PENDING:
                old.update(state=SendState.SENDING.value, attempts=str(int(old.get("attempts") or 0) + 1))
            return before

    async def finish(self, key: str, state: SendState, updates: dict[str, str], counter: str) -> None:
        with self._lock:
            self.records.setdefault(key, {}).update(state=state.value, updated_ms=str(_now_ms()), **updates)
            self.counters[counter] = self.counters.get(counter, 0) + 1

    async def count(self, counter: str) -> None:
        with self._lock:
            self.counters[counter] = self.counters.get(counter, 0) + 1

    async def aclose(self) -> None:
        return None


def record_store(broker: dramatiq.Broker | None = None) -> RecordStore:
    """The send-record store of ``broker`` (default: the process-wide one): Redis, the SQLite file, or memory."""
    from eventbus.broker import get_broker
    from eventbus.brokers.redis import RedisBroker
    from eventbus.brokers.sqlite import SQLiteBroker
    from eventbus.brokers.sqlite_records import SQLiteRecords
    from eventbus.settings import get_settings

    broker = broker or get_broker()
    store: RecordStore | None = getattr(broker, "_eventbus_send_records", None)
    if store is None:
        if isinstance(broker, RedisBroker):
            store = RedisRecords(broker.client, broker.url, broker.namespace, get_settings().mail_record_ttl_s)
        elif isinstance(broker, SQLiteBroker):
            store = SQLiteRecords(broker.store, get_settings().mail_record_ttl_s)
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


def _now_ms() -> int:
    return int(time.time() * 1000)
