"""Send records as the mail worker uses them: the backend's store (``broker.stores.send_records``) and
the :class:`Coalescer` that batches the operations of one event-loop tick.

The record and its operations are in :mod:`eventbus.send_record`. Operations issued in the same
event-loop tick (the concurrent sends of a bulk chunk) go to the store together, in one round trip;
nothing waits for a later tick, so a record is written as soon as the SMTP reply it records has arrived.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

import dramatiq

from eventbus.brokers import BusBroker
from eventbus.send_record import (
    Op,
    RecordStore,
    SendRecord,
)


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
    """The send-record store of ``broker`` (default: the process-wide one)."""
    from eventbus.broker import get_broker

    return cast(BusBroker, broker or get_broker()).stores.send_records


def mail_stats() -> dict[str, int]:
    """Send counters: sent, failed, retried, skipped (already sent) and uncertain (data sent, no reply recorded)."""
    return record_store().stats()


def get_send_record(key: str) -> SendRecord | None:
    """The send record for an idempotency key (for operators, admin pages and tests)."""
    return record_store().get(key)
