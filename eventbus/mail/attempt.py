"""One attempt at one email: claim its send record, render, hand it to SMTP, write the outcome.

Both send jobs (one email, or a chunk of a bulk send) run this. The claim marks the record
``connecting``; after MAIL and RCPT, the handover marks it ``data_sent`` (durably, before the first
byte of the message goes out); the outcome write ends the window, inside the connection block
(before a naive QUIT). An attempt that finds its email ``connecting`` sends it: nothing reached
the server. One that finds it ``data_sent`` does not: the email is uncertain, counted, and kept
as a dead letter (:mod:`eventbus.mail.uncertain`), as is one whose server did not answer the
end of its data in time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import logging
import os
import signal
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any, cast

import aiosmtplib
import dramatiq
from dramatiq.middleware import CurrentMessage

from eventbus.brokers import BusBroker
from eventbus.errors import EventBusError
from eventbus.mail.message import Attachment, mime_body, mime_headers
from eventbus.mail.names import EMAIL_QUEUE
from eventbus.mail.record import Coalescer, coalescer, record_store
from eventbus.mail.sender import Outcome, SmtpPool, get_pool, transact
from eventbus.mail.template import render_cached
from eventbus.mail.uncertain import uncertain_letter
from eventbus.priority import Priority, rank_of
from eventbus.queues import max_retries_of
from eventbus.send_record import (
    BEFORE_DATA,
    IN_DOUBT,
    UNCERTAIN,
    Claim,
    Finish,
    Handover,
    SendRecord,
    SendState,
    claim_fields_for,
)
from eventbus.settings import Settings, get_settings
from eventbus.stores import ControlStore

logger = logging.getLogger("eventbus.mail")

TEST_KILL_ENV = "EVENTBUS_TEST_KILL_AFTER_SEND"


@dataclass(frozen=True)
class Email:
    """One email as a send job carries it."""

    template: str
    to: list[str]
    context: dict[str, Any]
    key: str
    message_id: str
    reply_to: str | None = None
    headers: dict[str, str] | None = None
    attachments: list[dict[str, str]] | None = None


class Result(enum.StrEnum):
    """How an attempt ended."""

    SENT = "sent"
    SKIPPED = "skipped"  # already sent or failed, found uncertain, or claimed meanwhile by another attempt
    RETRY = "retry"  # 4xx or a dropped connection: the record is pending again
    FAILED = "failed"  # 5xx, bad input, or a 4xx on the job's last attempt


@dataclass(frozen=True)
class Attempt:
    """The result of :func:`attempt`; ``error`` is set when the email itself is bad (render, headers)."""

    result: Result
    code: int = 0
    text: str = ""
    error: EventBusError | None = None
    connected: bool = True  # False: no connection could be opened (the server is down or refusing)


@dataclass(frozen=True)
class Run:
    """What every attempt of one job shares: settings, the pool, the record writes, the retry budget."""

    settings: Settings
    pool: SmtpPool
    records: Coalescer
    dead_letters: ControlStore  # where an uncertain email is kept
    sender: str
    final: bool  # the job's last attempt: a 4xx gives up
    retried: bool  # a retry of a job that ran before (not a first run, nor a redelivery after a crash)
    rank: int  # the job's priority rank (0: CRITICAL)

    @classmethod
    def current(cls) -> Run:
        """The run of the job being processed (call on the worker's event loop)."""
        settings = get_settings()
        broker = dramatiq.get_broker()
        return cls(
            settings=settings,
            pool=get_pool(settings),
            records=coalescer(record_store(broker)),
            dead_letters=cast(BusBroker, broker).stores.control,
            sender=parseaddr(settings.smtp_from)[1],
            final=_final_attempt(settings),
            retried=_retries() > 0,
            rank=_rank(),
        )


class Writer:
    """Writes one email's outcome; ``follow`` (the next email's claim) rides in the same round trip."""

    def __init__(self, records: Coalescer, follow: Claim | None = None) -> None:
        self.records = records
        self.follow = follow
        self.followed: SendRecord | None = None
        self.took = False  # True once ``follow`` was applied and ``followed`` holds its result

    async def finish(self, op: Finish) -> None:
        """Write ``op`` (and the follow claim) now."""
        if self.follow is None:
            await self.records.run(op)
            return
        _, self.followed = await self.records.run(op, self.follow)
        self.took = True


def claim_of(email: Email) -> Claim:
    """The claim of ``email``'s send record."""
    return Claim(email.key, claim_fields_for(email.to, email.template, email.message_id))


async def attempt(email: Email, run: Run, before: SendRecord | None, out: Writer) -> Attempt:
    """Send ``email`` unless its record says it was already sent (or may have been); never raises for SMTP.

    The record was just claimed; ``before`` is the record as it was (None: missing). Run by a lane
    of :mod:`eventbus.mail.dispatch`, which bounds how many emails are in flight.
    """
    if before is not None and before.state in IN_DOUBT:
        return await settle_uncertain(email, run, out, before.attempts)
    if before is not None and before.state not in BEFORE_DATA:
        logger.info("email %s already %s; not sending again", email.key, before.state.value)
        return Attempt(Result.SKIPPED)
    if before is not None and before.state is SendState.CONNECTING:
        logger.info("email %s: its last attempt stopped before the message data; sending it", email.key)
    mine = (before.attempts if before is not None else 0) + 1  # the claim's attempt: fences every write
    accepted_before = before.accepted if before is not None else []
    remaining = [r for r in email.to if r not in accepted_before]
    try:
        data = email_bytes(email, run.settings)
    except EventBusError as exc:
        await out.finish(Finish(email.key, SendState.FAILED, {"code": "", "text": str(exc)}, "failed", mine))
        return Attempt(Result.FAILED, text=str(exc), error=exc)
    handover = _Handover(run.records, email.key, mine)
    connected = False
    try:
        async with run.pool.connection() as smtp:
            connected = True
            outcome = await transact(smtp, run.sender, remaining, data, handover)
            if outcome.abandoned:
                logger.warning("email %s was claimed by another attempt while this one ran; left to it", email.key)
                return Attempt(Result.SKIPPED)
            return await _record_outcome(email.key, outcome, accepted_before, run, out, mine)
    except aiosmtplib.SMTPResponseException as exc:
        return await _failed(email.key, exc.code, exc.message, accepted_before, run, out, connected, mine)
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        if handover.done and isinstance(exc, TimeoutError):  # the server has the data and may still accept it
            return await settle_uncertain(email, run, out, mine)
        text = f"{type(exc).__name__}: {exc}"
        return await _failed(email.key, 0, text, accepted_before, run, out, connected, mine)


class _Handover:
    """Marks the email ``data_sent`` before its data goes out; False if another attempt holds the claim."""

    def __init__(self, records: Coalescer, key: str, attempt: int) -> None:
        self.records = records
        self.op = Handover(key, attempt)
        self.done = False

    async def __call__(self) -> bool:
        [was] = await self.records.run(self.op)
        self.done = was is not None and was.state is SendState.CONNECTING and was.attempts == self.op.attempt
        return self.done


async def settle_uncertain(email: Email, run: Run, out: Writer, attempt: int) -> Attempt:
    """Keep ``email`` as an uncertain dead letter, then mark its record failed as uncertain (counted)."""
    letter = uncertain_letter(dataclasses.asdict(email), attempt, run.rank)
    await asyncio.to_thread(run.dead_letters.put_back_dead, EMAIL_QUEUE, [letter.encode()])
    await out.finish(Finish(email.key, SendState.FAILED, {"code": "", "text": UNCERTAIN}, "uncertain", attempt))
    logger.warning(
        "email %s may have reached the SMTP server (its data went out, no reply was recorded); not resent, "
        "kept as dead letter %s (reason uncertain)",
        email.key,
        letter.message_id,
    )
    return Attempt(Result.SKIPPED, text=UNCERTAIN)


def email_bytes(email: Email, settings: Settings) -> bytes:
    """The message as sent: headers for this email, the body rendered once per distinct context."""
    rendered = render_cached(email.template, email.context, settings)
    head = mime_headers(
        sender=settings.smtp_from,
        to=email.to,
        subject=rendered.subject,
        message_id=email.message_id,
        reply_to=email.reply_to,
        headers=email.headers,
    )
    return head + mime_body(rendered, tuple(Attachment.from_json(a) for a in email.attachments or ()))


async def _record_outcome(
    key: str, outcome: Outcome, accepted_before: list[str], run: Run, out: Writer, mine: int
) -> Attempt:
    accepted = accepted_before + outcome.accepted
    refused = {r: list(v) for r, v in outcome.refused.items()}
    temporary = {r: v for r, v in outcome.refused.items() if v[0] < 500}
    updates = {"accepted": json.dumps(accepted), "refused": json.dumps(refused)}
    if temporary and not run.final:
        code, text = next(iter(temporary.values()))
        await out.finish(Finish(key, SendState.PENDING, {**updates, "code": str(code), "text": text}, "retried", mine))
        return Attempt(Result.RETRY, code, f"{text} (for {', '.join(temporary)}; accepted so far: {len(accepted)})")
    if not accepted:
        code, text = next(iter(outcome.refused.values()))
        await out.finish(Finish(key, SendState.FAILED, {**updates, "code": str(code), "text": text}, "failed", mine))
        return Attempt(Result.FAILED, code, text)
    first = next(iter(outcome.refused.values()), None)
    extra = {"code": str(first[0]), "text": first[1]} if first else {"code": "250", "text": outcome.reply}
    await out.finish(Finish(key, SendState.SENT, {**updates, **extra}, "sent", mine))
    if os.environ.get(TEST_KILL_ENV) == "1":  # test hook: die between the record write and the ack
        os.kill(os.getpid(), signal.SIGKILL)
    return Attempt(Result.SENT, 250)


async def _failed(
    key: str, code: int, text: str, accepted_before: list[str], run: Run, out: Writer, connected: bool, mine: int
) -> Attempt:
    """5xx fails at once; 4xx and dropped connections go back to pending, or fail on the job's last attempt.

    Without a connection the next email's claim does not ride along: it may have to wait for the retry.
    """
    if not connected:
        out.follow = None
    updates = {"code": str(code) if code else "", "text": text, "accepted": json.dumps(accepted_before)}
    if 500 <= code < 600:
        await out.finish(Finish(key, SendState.FAILED, updates, "failed", mine))
        return Attempt(Result.FAILED, code, text)
    if run.final:
        updates["text"] = f"gave up after the last retry: {text}"
        await out.finish(Finish(key, SendState.FAILED, updates, "failed", mine))
    else:
        await out.finish(Finish(key, SendState.PENDING, updates, "retried", mine))
    return Attempt(Result.RETRY, code, text, connected=connected)


def _rank() -> int:
    message = CurrentMessage.get_current_message()
    return rank_of(message) if message is not None else Priority.NORMAL.rank


def _retries() -> int:
    message = CurrentMessage.get_current_message()
    return int(message.options.get("retries", 0)) if message is not None else 0


def _final_attempt(settings: Settings) -> bool:
    """True on the attempt after which the Retries middleware gives up (the same rule it applies)."""
    message = CurrentMessage.get_current_message()
    if message is None:
        return True
    return _retries() >= max_retries_of(message.options, settings.queue_config(message.queue_name))
