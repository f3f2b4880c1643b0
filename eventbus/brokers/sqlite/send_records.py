"""Send records on the SQLite broker: the table of :mod:`eventbus.brokers.sqlite.records`, batched.

A batch of claims, handovers and finishes is one ``BEGIN IMMEDIATE`` transaction, run in a thread
so a busy file never blocks the worker's event loop; a claim is atomic across every process on the file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from eventbus.brokers.sqlite.records import _COUNT, SQLiteRecords, _read, _write
from eventbus.clock import now_ms
from eventbus.send_record import Claim, Finish, Handover, Op, Peek, SendRecord, claim_fields, handover_fields, holds


class SQLiteSendRecords(SQLiteRecords):
    """``SQLiteRecords`` plus :meth:`apply` (see :mod:`eventbus.send_record` for each operation)."""

    async def claim(self, key: str, fields: dict[str, str]) -> SendRecord | None:
        """See :class:`eventbus.send_record.Claim`."""
        return (await self.apply([Claim(key, fields)]))[0]

    async def apply(self, ops: Sequence[Op]) -> list[SendRecord | None]:
        """Run ``ops`` in order in one transaction."""
        return await asyncio.to_thread(self._apply, ops)

    def _apply(self, ops: Sequence[Op]) -> list[SendRecord | None]:
        out: list[SendRecord | None] = []
        with self.store.transaction() as conn:
            now = now_ms()
            expires_at = now + self.ttl_s * 1000
            for op in ops:
                old = _read(conn, op.key, now)
                before = SendRecord.from_hash(op.key, old) if old is not None else None
                if isinstance(op, Peek):
                    out.append(before)
                elif isinstance(op, Handover):
                    if old is not None and handover_fields(old, op.attempt):
                        _write(conn, op.key, old, None)
                    out.append(before)
                elif isinstance(op, Finish):
                    if holds(old, op.attempt):
                        fields = old or {}
                        fields.update(op.updates)
                        fields.update(state=op.state.value, updated_ms=str(now))
                        _write(conn, op.key, fields, expires_at)
                        conn.execute(_COUNT, (op.counter,))
                    out.append(None)
                else:
                    fields = dict(old) if old is not None else dict(op.fields)
                    counter = claim_fields(fields)
                    if counter:
                        conn.execute(_COUNT, (counter,))
                    if counter != "skipped":
                        _write(conn, op.key, fields, expires_at if old is None else None)
                    out.append(before)
        return out
