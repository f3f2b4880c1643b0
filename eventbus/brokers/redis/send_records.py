"""Send records in Redis, under the broker namespace.

``mail:send:<key>`` is a hash (state, to, template, message_id, attempts, code, text, accepted,
refused, timestamps) with a TTL; ``mail:stats`` counts sent, failed, retried, skipped and uncertain.
The worker path uses an asyncio client on the worker's event loop: a batch of claims, handovers
and finishes is one Lua call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref
from collections.abc import Sequence

import redis
import redis.asyncio
from redis.exceptions import NoScriptError

from eventbus.brokers.redis.lua import load
from eventbus.clock import now_ms
from eventbus.send_record import Claim, Finish, Handover, Op, Peek, SendRecord, SendState

_CREATE = load("send_records_create")
_APPLY = load("send_records_apply")


class RedisRecords:
    """Send records in Redis under the broker's namespace."""

    def __init__(self, client: redis.Redis, url: str, namespace: str, ttl_s: int) -> None:  # type: ignore[type-arg]
        self.client = client
        self.url = url
        self.namespace = namespace
        self.ttl_s = ttl_s
        self._create = client.register_script(_CREATE)
        self._apply_sha = hashlib.sha1(_APPLY.encode()).hexdigest()
        self._aio: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis]  # type: ignore[type-arg]
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

    def reset(self, key: str) -> SendRecord | None:
        before = self.get(key)
        if before is not None:
            self.client.hset(
                self.key(key),
                mapping={"state": SendState.PENDING.value, "code": "", "text": "", "updated_ms": now_ms()},
            )
        return before

    async def claim(self, key: str, fields: dict[str, str]) -> SendRecord | None:
        """See :class:`eventbus.send_record.Claim` (the record returned carries only state, accepted and attempts)."""
        return (await self.apply([Claim(key, fields)]))[0]

    async def apply(self, ops: Sequence[Op]) -> list[SendRecord | None]:
        """One EVALSHA for the whole batch (loading the script once if the server does not have it)."""
        if not ops:
            return []
        now = now_ms()
        args: list[str | int] = [self.ttl_s, now]
        for op in ops:
            if isinstance(op, Claim):
                args += ["claim", "", json.dumps(op.fields)]
            elif isinstance(op, Peek):
                args += ["peek", "", "{}"]
            elif isinstance(op, Handover):
                args += ["handover", "", json.dumps({"attempt": str(op.attempt)})]
            else:
                fields = {**op.updates, "state": op.state.value, "updated_ms": str(now), "attempt": str(op.attempt)}
                args += ["finish", op.counter, json.dumps(fields)]
        keys = [self.stats_key, *(self.key(op.key) for op in ops)]
        client = self._client()
        try:
            raw = await client.evalsha(self._apply_sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
        except NoScriptError:
            await client.script_load(_APPLY)  # type: ignore[no-untyped-call]
            raw = await client.evalsha(self._apply_sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
        out: list[SendRecord | None] = []
        for op, result in zip(ops, raw):
            if isinstance(op, Finish) or not result or result[0] is None:
                out.append(None)
                continue
            accepted = json.loads(result[1]) if len(result) > 1 and result[1] else []
            attempts = int(result[2]) if len(result) > 2 and result[2] else 0
            out.append(SendRecord(op.key, SendState(result[0].decode()), accepted=accepted, attempts=attempts))
        return out

    def _client(self) -> redis.asyncio.Redis:  # type: ignore[type-arg]
        """One asyncio client per event loop (the worker's loop thread), created on first use."""
        loop = asyncio.get_running_loop()
        client = self._aio.get(loop)
        if client is None:
            client = self._aio[loop] = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=5, socket_connect_timeout=5
            )
        return client

    async def aclose(self) -> None:
        """Close the asyncio client of the running loop (worker shutdown)."""
        client = self._aio.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()  # type: ignore[attr-defined]
