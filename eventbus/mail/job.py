"""The send job: an async Dramatiq actor that renders one email and hands it to SMTP at most once.

Order of one attempt: claim the send record (pending -> sending, one round trip), render, send
through a pooled connection, write the outcome (one round trip). The only window in which an email
can be sent twice is between the server's 250 reply and that last write; a job that later finds its
record still ``sending`` does not resend: it marks the email failed ("uncertain") and counts it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from email.utils import parseaddr
from typing import Any

import aiosmtplib
import dramatiq
from dramatiq.middleware import CurrentMessage

from eventbus.errors import (
    EventBusError,
    HeaderInjection,
    InvalidAddress,
    MailError,
    SmtpPermanentError,
    SmtpTemporaryError,
    TemplateError,
    TemplateNotFound,
)
from eventbus.mail.message import Attachment, mime_body, mime_headers
from eventbus.mail.record import RecordStore, SendRecord, SendState, new_fields, record_store
from eventbus.mail.sender import Outcome, get_pool, transact
from eventbus.mail.template import render_cached
from eventbus.settings import get_settings

logger = logging.getLogger("eventbus.mail")

EMAIL_QUEUE = "email"
SEND_ACTOR = "eventbus.send_email"
PERMANENT = (SmtpPermanentError, TemplateNotFound, TemplateError, HeaderInjection, InvalidAddress, MailError)
TEST_KILL_ENV = "EVENTBUS_TEST_KILL_AFTER_SEND"


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
    settings = get_settings()
    store: RecordStore = record_store(dramatiq.get_broker())
    before = await store.claim(key, new_fields(to, template, message_id))
    if before is not None and before.state in (SendState.SENT, SendState.FAILED):
        await store.count("skipped")
        logger.info("email %s already %s; not sending again", key, before.state.value)
        return
    if before is not None and before.state is SendState.SENDING:
        text = "uncertain: a worker stopped while handing this email to SMTP; not resent (at most once)"
        await store.finish(key, SendState.FAILED, {"code": "", "text": text}, "uncertain")
        logger.warning("email %s was being sent when its worker stopped; %s", key, text)
        return
    accepted_before = before.accepted if before is not None else []
    remaining = [r for r in to if r not in accepted_before]
    try:
        rendered = render_cached(template, context)
        head = mime_headers(
            sender=settings.smtp_from,
            to=to,
            subject=rendered.subject,
            message_id=message_id,
            reply_to=reply_to,
            headers=headers,
        )
        data = head + mime_body(rendered, tuple(Attachment.from_json(a) for a in attachments or ()))
    except EventBusError as exc:
        await store.finish(key, SendState.FAILED, {"code": "", "text": str(exc)}, "failed")
        raise
    try:
        async with get_pool(settings).connection() as smtp:
            outcome = await transact(smtp, parseaddr(settings.smtp_from)[1], remaining, data)
    except aiosmtplib.SMTPResponseException as exc:
        await _failed_attempt(store, key, exc.code, exc.message, accepted_before)
        return
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        await _failed_attempt(store, key, 0, f"{type(exc).__name__}: {exc}", accepted_before)
        return
    await _record_outcome(store, key, outcome, accepted_before)


async def _record_outcome(store: RecordStore, key: str, outcome: Outcome, accepted_before: list[str]) -> None:
    accepted = accepted_before + outcome.accepted
    refused = {r: list(v) for r, v in outcome.refused.items()}
    temporary = {r: v for r, v in outcome.refused.items() if v[0] < 500}
    updates = {"accepted": json.dumps(accepted), "refused": json.dumps(refused)}
    if temporary and not _final_attempt():
        code, text = next(iter(temporary.values()))
        await store.finish(key, SendState.PENDING, {**updates, "code": str(code), "text": text}, "retried")
        raise SmtpTemporaryError(code, f"{text} (for {', '.join(temporary)}; accepted so far: {len(accepted)})")
    if not accepted:
        code, text = next(iter(outcome.refused.values()))
        await store.finish(key, SendState.FAILED, {**updates, "code": str(code), "text": text}, "failed")
        raise SmtpPermanentError(code, text)
    first = next(iter(outcome.refused.values()), None)
    extra = {"code": str(first[0]), "text": first[1]} if first else {"code": "250", "text": outcome.reply}
    await store.finish(key, SendState.SENT, {**updates, **extra}, "sent")
    if os.environ.get(TEST_KILL_ENV) == "1":  # test hook: die between the record write and the ack
        os.kill(os.getpid(), signal.SIGKILL)


async def _failed_attempt(store: RecordStore, key: str, code: int, text: str, accepted_before: list[str]) -> None:
    """4xx and dropped connections retry with backoff (raise); 5xx fail at once (raise a ``throws`` error)."""
    updates = {"code": str(code) if code else "", "text": text, "accepted": json.dumps(accepted_before)}
    if 500 <= code < 600:
        await store.finish(key, SendState.FAILED, updates, "failed")
        raise SmtpPermanentError(code, text)
    if _final_attempt():
        updates["text"] = f"gave up after the last retry: {text}"
        await store.finish(key, SendState.FAILED, updates, "failed")
    else:
        await store.finish(key, SendState.PENDING, updates, "retried")
    raise SmtpTemporaryError(code, text)


def _final_attempt() -> bool:
    message = CurrentMessage.get_current_message()
    if message is None:
        return True
    retries = int(message.options.get("retries", 0))
    return retries >= int(message.options.get("max_retries", get_settings().mail_max_retries))


def install_actors(broker: dramatiq.Broker) -> None:
    """Declare the send actor on ``broker`` (idempotent); 5xx and bad input are never retried."""
    if SEND_ACTOR not in broker.actors:
        dramatiq.Actor(
            send_email_job,  # type: ignore[arg-type]
            broker=broker,
            actor_name=SEND_ACTOR,
            queue_name=EMAIL_QUEUE,
            priority=0,
            options={"throws": PERMANENT},
        )


__all__ = ["EMAIL_QUEUE", "SEND_ACTOR", "SendRecord", "install_actors", "send_email_job"]
