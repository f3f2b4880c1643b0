"""Send records in a dict, for ``memory://`` (TestBus): the same operations as on Redis and SQLite."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from eventbus.clock import now_ms
from eventbus.send_record import (
    Claim,
    Finish,
    Handover,
    Op,
    Peek,
    SendRecord,
    SendState,
    claim_fields,
    handover_fields,
    holds,
)


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

    def reset(self, key: str) -> SendRecord | None:
        with self._lock:
            fields = self.records.get(key)
            if fields is None:
                return None
            before = SendRecord.from_hash(key, fields)
            fields.update(state=SendState.PENDING.value, code="", text="", updated_ms=str(now_ms()))
            return before

    async def claim(self, key: str, fields: dict[str, str]) -> SendRecord | None:
        return (await self.apply([Claim(key, fields)]))[0]

    async def apply(self, ops: Sequence[Op]) -> list[SendRecord | None]:
        out: list[SendRecord | None] = []
        with self._lock:
            for op in ops:
                old = self.records.get(op.key)
                before = SendRecord.from_hash(op.key, old) if old else None
                if isinstance(op, Peek):
                    out.append(before)
                elif isinstance(op, Handover):
                    if old is not None:
                        handover_fields(old, op.attempt)
                    out.append(before)
                elif isinstance(op, Finish):
                    if holds(old, op.attempt):
                        fields = self.records.setdefault(op.key, {})
                        fields.update(op.updates, state=op.state.value, updated_ms=str(now_ms()))
                        self._count(op.counter)
                    out.append(None)
                else:
                    counter = claim_fields(self.records.setdefault(op.key, dict(op.fields)))
                    if counter:
                        self._count(counter)
                    out.append(before)
        return out

    def _count(self, counter: str) -> None:
        self.counters[counter] = self.counters.get(counter, 0) + 1

    async def aclose(self) -> None:
        return None
