"""The lanes of a worker process: ``SMTP_POOL_SIZE`` tasks that send the emails of every running job.

A lane takes the next email from queues shared by all send jobs on the worker's event loop (by
the job's priority, so a CRITICAL email overtakes the backlog of a bulk send), claims its record,
sends it over a connection of the pool, and writes the outcome. The write of one email's outcome
carries the claim of the lane's next email, so a busy lane pays one record round trip per email;
and an email is claimed (marked ``connecting``) only when a lane is about to send it, so a crash
leaves at most one claimed record per lane behind (sent again if its data had not gone out yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from dataclasses import dataclass, field

from eventbus.mail.attempt import Attempt, Email, Result, Run, Writer, attempt, claim_of
from eventbus.priority import Priority
from eventbus.send_record import SendRecord

logger = logging.getLogger("eventbus.mail")


@dataclass(eq=False)
class Batch:
    """Tickets of one job: once a lane finds the SMTP server unreachable, the ones not taken are left."""

    stopped: bool = False


@dataclass(eq=False)
class Ticket:
    """One submitted email; ``result`` resolves to its Attempt, or None if it was withdrawn untried."""

    email: Email
    run: Run
    result: asyncio.Future[Attempt | None]
    batch: Batch | None = None
    taken: bool = field(default=False)
    withdrawn: bool = field(default=False)


class Dispatcher:
    """Lanes on the running event loop, started on first use; one per pool slot."""

    def __init__(self, lanes: int) -> None:
        self.size = lanes
        self._queues: tuple[deque[Ticket], ...] = tuple(deque() for _ in Priority)  # by rank: CRITICAL first
        self._ready = asyncio.Event()
        self._lanes: list[asyncio.Task[None]] = []

    def submit(self, email: Email, run: Run, batch: Batch | None = None) -> Ticket:
        """Queue ``email``; await ``ticket.result``."""
        if not self._lanes:
            self._lanes = [asyncio.get_running_loop().create_task(self._lane()) for _ in range(self.size)]
        ticket = Ticket(email, run, asyncio.get_running_loop().create_future(), batch)
        self._queues[run.rank].append(ticket)
        self._ready.set()
        return ticket

    def withdraw(self, tickets: list[Ticket]) -> int:
        """Take back the tickets no lane has taken yet (they resolve to None); returns how many."""
        n = 0
        for ticket in tickets:
            if not ticket.taken and not ticket.withdrawn:
                ticket.withdrawn = True
                _resolve(ticket, None)
                n += 1
        return n

    def _take(self) -> Ticket | None:
        """The next ticket, highest priority first: a CRITICAL email overtakes a bulk backlog here too."""
        for queue in self._queues:
            while queue:
                ticket = queue.popleft()
                if _stopped(ticket):
                    ticket.withdrawn = True
                    _resolve(ticket, None)
                elif not ticket.withdrawn:
                    ticket.taken = True
                    return ticket
        return None

    async def _lane(self) -> None:
        while True:
            ticket = self._take()
            if ticket is None:
                self._ready.clear()
                await self._ready.wait()
                continue
            try:
                [before] = await ticket.run.records.run(claim_of(ticket.email))
            except Exception as exc:
                _fail(ticket, exc)
                continue
            try:
                await self._stream(ticket, before)
            except Exception:  # a bug, not an email's outcome: keep the lane alive
                logger.exception("an email lane failed; it goes on with the next email")

    async def _stream(self, ticket: Ticket | None, before: SendRecord | None) -> None:
        """Send ``ticket``, then the next ones while the queue has any, each claim riding on the last write."""
        while ticket is not None:
            follow = self._take()
            same_store = follow is not None and follow.run.records is ticket.run.records
            out = Writer(ticket.run.records, claim_of(follow.email) if follow is not None and same_store else None)
            try:
                done = await attempt(ticket.email, ticket.run, before, out)
            except Exception as exc:  # a record write failed: the email stays as its record says
                _fail(ticket, exc)
                if follow is not None and out.follow is not None:
                    _fail(follow, exc)  # its claim went with the failed write: it is not sent now
                elif follow is not None:
                    follow.taken = False
                    self._queues[follow.run.rank].appendleft(follow)
                return
            _resolve(ticket, done)
            if ticket.batch is not None and done.result is Result.RETRY and not done.connected:
                ticket.batch.stopped = True  # the server cannot be reached: the job's other emails wait
            if follow is not None and not out.took and _stopped(follow):
                follow.withdrawn = True
                _resolve(follow, None)
                follow = self._take()
            if follow is not None and not out.took:
                try:
                    [out.followed] = await follow.run.records.run(claim_of(follow.email))
                except Exception as exc:
                    _fail(follow, exc)
                    return
            ticket, before = follow, out.followed

    async def close(self) -> None:
        """Stop the lanes (worker shutdown, once the jobs are done)."""
        lanes, self._lanes = self._lanes, []
        for task in lanes:
            task.cancel()
        for task in lanes:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _stopped(ticket: Ticket) -> bool:
    return ticket.batch is not None and ticket.batch.stopped


def _resolve(ticket: Ticket, value: Attempt | None) -> None:
    if not ticket.result.done():
        ticket.result.set_result(value)


def _fail(ticket: Ticket, exc: Exception) -> None:
    if not ticket.result.done():
        ticket.result.set_exception(exc)


_dispatchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Dispatcher] = weakref.WeakKeyDictionary()


def get_dispatcher(run: Run) -> Dispatcher:
    """The dispatcher of the running event loop, with one lane per slot of ``run.pool``."""
    loop = asyncio.get_running_loop()
    dispatcher = _dispatchers.get(loop)
    if dispatcher is None:
        dispatcher = _dispatchers[loop] = Dispatcher(run.pool.size)
    return dispatcher


async def close_dispatcher() -> None:
    """Stop the lanes of the running loop (called on worker shutdown, before the pool closes)."""
    dispatcher = _dispatchers.pop(asyncio.get_running_loop(), None)
    if dispatcher is not None:
        await dispatcher.close()
