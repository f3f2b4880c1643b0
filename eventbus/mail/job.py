"""The send jobs: async Dramatiq actors on the worker's event loop, each email sent at most once.

``eventbus.send_email`` carries one email (``send_email``). ``eventbus.send_email_chunk`` carries up
to ``MAIL_CHUNK_SIZE`` emails of a bulk send, one recipient each, and sends them concurrently over
the pooled connections: the cost of a job (fetch, middleware, ledger, ack) is paid once per chunk
instead of once per email. Every email keeps its own key, Message-ID and send record, so a retried
or redelivered chunk only sends the emails still pending (see :mod:`eventbus.mail.attempt`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import dramatiq

from eventbus.errors import (
    HeaderInjection,
    InvalidAddress,
    MailError,
    SmtpPermanentError,
    SmtpTemporaryError,
    TemplateError,
    TemplateNotFound,
)
from eventbus.mail.attempt import Attempt, Email, Result, Run
from eventbus.mail.dispatch import Batch, Ticket, get_dispatcher
from eventbus.mail.names import CHUNK_ACTOR, EMAIL_QUEUE, SEND_ACTOR
from eventbus.mail.pace import Pacer
from eventbus.send_record import Peek, SendRecord, SendState

logger = logging.getLogger("eventbus.mail")

_SETTLED = (SendState.SENT, SendState.FAILED)
PERMANENT = (SmtpPermanentError, TemplateNotFound, TemplateError, HeaderInjection, InvalidAddress, MailError)


async def send_email_job(
    template: str,
    to: list[str],
    context: dict[str, Any],
    key: str,
    message_id: str,
    reply_to: str | None = None,
    headers: dict[str, str] | None = None,
    attachments: list[dict[str, str]] | None = None,
) -> None:
    """Send one email unless its record says it was already sent (or may have been)."""
    email = Email(template, to, context, key, message_id, reply_to, headers, attachments)
    run = Run.current()
    dispatcher = get_dispatcher(run)
    ticket = dispatcher.submit(email, run)
    try:
        done = await ticket.result
    finally:
        dispatcher.withdraw([ticket])  # cancelled (worker stopping): not sent if no lane took it yet
    if done is None or done.result in (Result.SENT, Result.SKIPPED):
        return
    if done.error is not None:
        raise done.error
    if done.result is Result.FAILED:
        raise SmtpPermanentError(done.code, done.text)
    raise SmtpTemporaryError(done.code, done.text)


async def send_email_chunk_job(template: str, context: dict[str, Any], emails: list[dict[str, Any]]) -> None:
    """Send each email of a bulk chunk unless already sent; raise after all were tried if any must be retried.

    ``emails`` items are ``{"to", "key", "message_id"}`` plus ``"context"`` (added to the shared one)
    when the bulk send had per-recipient context. A 5xx fails only its email (recorded, not raised).
    """
    run = Run.current()
    pacer = Pacer.current(run.settings)
    dispatcher = get_dispatcher(run)
    total = len(emails)
    if run.retried:  # what an earlier attempt settled is left out (a skip is news only after a crash)
        records = await run.records.run(*(Peek(item["key"]) for item in emails))
        emails = [item for item, r in zip(emails, records) if r is None or r.state not in _SETTLED]
    todo = deque(emails)
    results: list[Attempt] = []
    tickets: list[Ticket] = []
    try:
        if pacer.lanes == 1:  # the queue's limits count emails: one at a time, each with its start slot
            while todo and await pacer.wait():
                done = await dispatcher.submit(_email(template, context, todo.popleft()), run).result
                if done is not None:
                    results.append(done)
                if _unreachable(done):
                    break  # the rest waits for the retry
        else:  # a lane that cannot reach the server stops the batch: the rest waits for the retry
            batch = Batch()
            tickets = [dispatcher.submit(_email(template, context, item), run, batch) for item in todo]
            todo.clear()
            results = [done for done in await asyncio.gather(*(t.result for t in tickets)) if done is not None]
    finally:
        dispatcher.withdraw(tickets)  # cancelled (worker stopping): what no lane took yet stays pending
    untried = len(todo) + sum(1 for t in tickets if t.withdrawn)
    retry = [r for r in results if r.result is Result.RETRY]
    if retry:  # emails not tried ride along; the retried chunk only touches records still pending
        left = f"{len(retry) + untried} of the chunk's {total} emails to retry"
        raise SmtpTemporaryError(retry[0].code, f"{retry[0].text} ({left})")
    if todo:  # only the rate limit stopped the chunk: the rest goes back to the schedule
        await pacer.defer(list(todo))
    bad = [r.error for r in results if r.error is not None]
    if bad:
        raise bad[0]
    failed = [r for r in results if r.result is Result.FAILED]
    if failed:
        logger.warning("%d email(s) of a bulk chunk failed (a 5xx, or a 4xx on the last attempt), e.g. SMTP %s %s",
                       len(failed), failed[0].code, failed[0].text)  # fmt: skip


def _unreachable(done: Attempt | None) -> bool:
    """True when no connection to the SMTP server could be opened."""
    return done is not None and done.result is Result.RETRY and not done.connected


def _email(template: str, context: dict[str, Any], item: dict[str, Any]) -> Email:
    own = item.get("context")
    return Email(template, [item["to"]], {**context, **own} if own else context, item["key"], item["message_id"])


def install_actors(broker: dramatiq.Broker) -> None:
    """Declare the send actors on ``broker`` (idempotent); 5xx and bad input are never retried."""
    for fn, name in ((send_email_job, SEND_ACTOR), (send_email_chunk_job, CHUNK_ACTOR)):
        if name not in broker.actors:
            dramatiq.Actor(
                fn,  # type: ignore[arg-type]
                broker=broker,
                actor_name=name,
                queue_name=EMAIL_QUEUE,
                priority=0,
                options={"throws": PERMANENT},
            )


__all__ = ["CHUNK_ACTOR", "EMAIL_QUEUE", "SEND_ACTOR", "SendRecord", "install_actors", "send_email_job"]
