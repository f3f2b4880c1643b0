"""One attempt at one email: claim its send record, render, hand it to SMTP, write the outcome.

Both send jobs (one email, or a chunk of a bulk send) run this. The only window in which an email
can be sent twice is between the server's 250 reply and the outcome write, which is made inside
the connection block (before a naive QUIT). A later attempt that finds the record still
``sending`` does not resend: its claim marks the email failed as uncertain and counts it.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import signal
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

import aiosmtplib
import dramatiq
from dramatiq.middleware import CurrentMessage

from eventbus.errors import EventBusError
from eventbus.mail.message import Attachment, mime_body, mime_headers
from eventbus.mail.record import Coalescer, coalescer, record_store
from eventbus.mail.sender import Outcome, SmtpPool, get_pool, transact
from eventbus.mail.template import render_cached
from eventbus.priority import Priority, rank_of
from eventbus.queues import max_retries_of
from eventbus.send_record import Claim, Finish, SendRecord, SendState, claim_fields_for
from eventbus.settings import Settings, get_settings

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
    SKIPPED = "skipped"  # already sent or failed, or found mid-send after a crash (uncertain)
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
    sender: str
    final: bool  # the job's last attempt: a 4xx gives up
    retried: bool  # a retry of a job that ran before (not a first run, nor a redelivery after a crash)
    rank: int  # the job's priority rank (0: CRITICAL)

    @classmethod
    def current(cls) -> Run:
        """The run of the job being processed (call on the worker's event loop)."""
        settings = get_settings()
        return cls(
            settings=settings,
            pool=get_pool(settings),
            records=coalescer(record_store(dramatiq.get_broker())),
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
    if before is not None and before.state is not SendState.PENDING:
        _log_skip(email.key, before)
        return Attempt(Result.SKIPPED)
    accepted_before = before.accepted if before is not None else []
    remaining = [r for r in email.to if r not in accepted_before]
    try:
        data = email_bytes(email, run.settings)
    except EventBusError as exc:
        await out.finish(Finish(email.key, SendState.FAILED, {"code": "", "text": str(exc)}, "failed"))
        return Attempt(Result.FAILED, text=str(exc), error=exc)
    connected = False
    try:
        async with run.pool.connection() as smtp:
            connected = True
            outcome = await transact(smtp, run.sender, remaining, data)
            return await _record_outcome(email.key, outcome, accepted_before, run, out)
    except aiosmtplib.SMTPResponseException as exc:
        return await _failed(email.key, exc.code, exc.message, accepted_before, run, out, connected)
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        text = f"{type(exc).__name__}: {exc}"
        return await _failed(email.key, 0, text, accepted_before, run, out, connected)


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


async def _record_outcome(key: str, outcome: Outcome, accepted_before: list[str], run: Run, out: Writer) -> Attempt:
    accepted = accepted_before + outcome.accepted
    refused = {r: list(v) for r, v in outcome.refused.items()}
    temporary = {r: v for r, v in outcome.refused.items() if v[0] < 500}
    updates = {"accepted": json.dumps(accepted), "refused": json.dumps(refused)}
    if temporary and not run.final:
        code, text = next(iter(temporary.values()))
        await out.finish(Finish(key, SendState.PENDING, {**updates, "code": str(code), "text": text}, "retried"))
        return Attempt(Result.RETRY, code, f"{text} (for {', '.join(temporary)}; accepted so far: {len(accepted)})")
    if not accepted:
        code, text = next(iter(outcome.refused.values()))
        await out.finish(Finish(key, SendState.FAILED, {**updates, "code": str(code), "text": text}, "failed"))
        return Attempt(Result.FAILED, code, text)
    first = next(iter(outcome.refused.values()), None)
    extra = {"code": str(first[0]), "text": first[1]} if first else {"code": "250", "text": outcome.reply}
    await out.finish(Finish(key, SendState.SENT, {**updates, **extra}, "sent"))
    if os.environ.get(TEST_KILL_ENV) == "1":  # test hook: die between the record write and the ack
        os.kill(os.getpid(), signal.SIGKILL)
    return Attempt(Result.SENT, 250)


async def _failed(
    key: str, code: int, text: str, accepted_before: list[str], run: Run, out: Writer, connected: bool
) -> Attempt:
    """5xx fails at once; 4xx and dropped connections go back to pending, or fail on the job's last attempt.

    Without a connection the next email's claim does not ride along: it may have to wait for the retry.
    """
    if not connected:
        out.follow = None
    updates = {"code": str(code) if code else "", "text": text, "accepted": json.dumps(accepted_before)}
    if 500 <= code < 600:
        await out.finish(Finish(key, SendState.FAILED, updates, "failed"))
        return Attempt(Result.FAILED, code, text)
    if run.final:
        updates["text"] = f"gave up after the last retry: {text}"
        await out.finish(Finish(key, SendState.FAILED, updates, "failed"))
    else:
        await out.finish(Finish(key, SendState.PENDING, updates, "retried"))
    return Attempt(Result.RETRY, code, text, connected=connected)


def _log_skip(key: str, before: SendRecord) -> None:
    if before.state is SendState.SENDING:
        logger.warning("email %s was being sent when its worker stopped; not resent (at most once)", key)
    else:
        logger.info("email %s already %s; not sending again", key, before.state.value)


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
