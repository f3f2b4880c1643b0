"""``send_email`` and ``send_bulk_email``: check everything now, then enqueue send jobs in pipelined batches."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from dramatiq.middleware import CurrentMessage

from eventbus import encoder
from eventbus.broker import describe, get_broker
from eventbus.brokers import BusBroker, Message
from eventbus.bus import _delay_ms
from eventbus.delivery import build_message
from eventbus.errors import MailError, PayloadNotSerializable, PublishError
from eventbus.mail.job import CHUNK_ACTOR, EMAIL_QUEUE, SEND_ACTOR
from eventbus.mail.message import (
    Attachment,
    attachments_json,
    check_address,
    check_headers,
    check_sender,
    message_id_for,
)
from eventbus.mail.record import record_store
from eventbus.mail.template import check_template, render, render_subject
from eventbus.outbox import BEHIND, BROKER_ERRORS, Outbox, get_outbox, keep, write_advice
from eventbus.priority import Priority
from eventbus.send_record import SendState, new_fields
from eventbus.settings import Settings, get_settings

_BATCH = 500
_JOB_IDS = uuid.UUID("3d0f5f0e-8d2b-4b7e-b6a3-7f6d3c2e1a90")


@dataclass(frozen=True)
class QueuedEmail:
    """What ``send_email`` did: the idempotency key, the Message-ID, and where the job went.

    ``enqueued``: the job is on the broker. ``outboxed``: the broker was down (or earlier sends of
    this process still wait in the outbox), so the job waits in the outbox (``EVENTBUS_OUTBOX``)
    until the relay enqueues it. Neither: the key was already queued or sent.
    """

    key: str
    message_id: str
    enqueued: bool
    outboxed: bool = False


@dataclass(frozen=True)
class BulkResult:
    """What ``send_bulk_email`` did: emails enqueued, recipients skipped (already queued or sent), jobs written.

    ``outboxed`` emails wait in the outbox (the broker was down) until the relay enqueues their jobs;
    one already sent is skipped when a worker takes it, not counted in ``skipped`` here.
    """

    total: int
    enqueued: int
    skipped: int
    keys: list[str]
    jobs: int = 0
    outboxed: int = 0


def send_email(
    template: str,
    to: str | Sequence[str],
    context: Mapping[str, Any],
    *,
    priority: Priority | str | int = Priority.NORMAL,
    delay: timedelta | None = None,
    at: datetime | None = None,
    idempotency_key: str | None = None,
    reply_to: str | None = None,
    headers: Mapping[str, str] | None = None,
    attachments: Sequence[Attachment | tuple[str, bytes, str]] | None = None,
    max_retries: int | None = None,
    min_backoff_ms: int | None = None,
    max_backoff_ms: int | None = None,
) -> QueuedEmail:
    """Check and render now, then enqueue one send job; the same key twice sends once.

    Raises TemplateNotFound, TemplateError, InvalidAddress, HeaderInjection or MailError before
    anything is written. The default key inside a subscriber is event id + subscription +
    recipient + template, so a redelivered event never sends the same email twice. The job retries
    by the ``email`` queue's rule (``eventbus queues``); ``max_retries`` and the backoffs replace it
    for this email.
    """
    settings = get_settings()
    retry = settings.queue_config(EMAIL_QUEUE).retry_options(
        max_retries=max_retries,
        min_backoff_ms=min_backoff_ms,
        max_backoff_ms=max_backoff_ms,
        error=MailError,
        caller="send_email",
    )
    recipients = _recipients([to] if isinstance(to, str) else to)
    level = Priority.parse(priority, Priority.NORMAL)
    extra = _extras(reply_to, headers, attachments, settings)
    render(template, context, settings)  # every error shows up here, not later in the worker
    key = idempotency_key or f"{_key_base()}:{','.join(recipients)}:{template}"
    if not isinstance(key, str) or not 0 < len(key) <= 400:
        raise MailError(f"idempotency_key must be a non-empty string of at most 400 characters, got {key!r}")
    message, row = _job(template, recipients, dict(context), key, level, extra, retry, settings)
    done, kept = _enqueue([message], [row], _delay_ms(delay, at), settings)
    return QueuedEmail(key=key, message_id=message.kwargs["message_id"], enqueued=bool(done), outboxed=bool(kept))


def send_bulk_email(
    template: str,
    recipients: Iterable[str],
    context: Mapping[str, Any],
    per_recipient: Mapping[str, Mapping[str, Any]] | Callable[[str], Mapping[str, Any]] | None = None,
    *,
    priority: Priority | str | int = Priority.LOW,
    delay: timedelta | None = None,
    at: datetime | None = None,
    idempotency_key: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_retries: int | None = None,
    min_backoff_ms: int | None = None,
    max_backoff_ms: int | None = None,
) -> BulkResult:
    """One email per distinct recipient, enqueued 500 per round trip; ``progress(done, total)`` after each batch.

    Each email has its own key, Message-ID and send record; jobs carry ``MAIL_CHUNK_SIZE`` of them,
    so a worker pays for one job per chunk, not per email. ``per_recipient`` adds context per
    address (a mapping, or a function of the address). Every address and every subject is checked
    before the first job is written. Each chunk retries by the ``email`` queue's rule unless
    ``max_retries`` or the backoffs replace it.
    """
    settings = get_settings()
    retry = settings.queue_config(EMAIL_QUEUE).retry_options(
        max_retries=max_retries,
        min_backoff_ms=min_backoff_ms,
        max_backoff_ms=max_backoff_ms,
        error=MailError,
        caller="send_bulk_email",
    )
    check_template(template, settings)
    level = Priority.parse(priority, Priority.LOW)
    addresses = _recipients(recipients)
    base = dict(context)
    extras = [dict(_extra(per_recipient, a)) for a in addresses] if per_recipient is not None else None
    if addresses:
        render(template, {**base, **extras[0]} if extras else base, settings)
        for extra in (extras or [])[1:]:
            render_subject(template, {**base, **extra}, settings)
    _check_json(base, *(extras or ()))
    base_key = idempotency_key or _key_base()
    suffix = "" if idempotency_key else f":{template}"
    emails: list[dict[str, Any]] = []
    for i, address in enumerate(addresses):
        key = f"{base_key}:{address}{suffix}"
        email: dict[str, Any] = {"to": address, "key": key, "message_id": message_id_for(key, settings.smtp_from)}
        if extras and extras[i]:
            email["context"] = extras[i]
        emails.append(email)
    delay_ms = _delay_ms(delay, at)
    enqueued = jobs = outboxed = 0
    for i in range(0, len(emails), _BATCH):
        done, chunks, kept = _enqueue_chunks(template, base, emails[i : i + _BATCH], level, retry, delay_ms, settings)
        enqueued += done
        jobs += chunks
        outboxed += kept
        if progress is not None:
            progress(min(i + _BATCH, len(emails)), len(emails))
    keys = [e["key"] for e in emails]
    skipped = len(emails) - enqueued - outboxed
    return BulkResult(len(emails), enqueued, skipped, keys, jobs=jobs, outboxed=outboxed)


def _recipients(values: Iterable[str]) -> list[str]:
    if isinstance(values, str | bytes):
        raise MailError("recipients must be a list of addresses, not one string")
    out: list[str] = []
    seen: set[str] = set()
    for value in values:
        address = check_address(value)
        if address.lower() not in seen:
            seen.add(address.lower())
            out.append(address)
    return out


def _extras(
    reply_to: str | None,
    headers: Mapping[str, str] | None,
    attachments: Sequence[Attachment | tuple[str, bytes, str]] | None,
    settings: Settings,
) -> dict[str, Any]:
    check_sender(settings.smtp_from)
    extra: dict[str, Any] = {}
    if reply_to is not None:
        extra["reply_to"] = check_address(reply_to, field="reply_to")
    if headers:
        extra["headers"] = check_headers(headers)
    if attachments:
        extra["attachments"] = attachments_json(attachments)
    return extra


def _extra(
    per_recipient: Mapping[str, Mapping[str, Any]] | Callable[[str], Mapping[str, Any]], address: str
) -> Mapping[str, Any]:
    return per_recipient(address) if callable(per_recipient) else per_recipient.get(address, {})


def _key_base() -> str:
    """Inside a delivery: event id + subscription (recipient and template follow); elsewhere a fresh id."""
    message = CurrentMessage.get_current_message()
    event_id = message.options.get("event_id") if message is not None else None
    subscription = message.options.get("subscription") if message is not None else None
    if event_id and subscription:
        return f"{event_id}:{subscription}"
    return uuid.uuid4().hex


def _job(
    template: str,
    to: list[str],
    context: dict[str, Any],
    key: str,
    level: Priority,
    extra: dict[str, Any],
    retry: dict[str, int],
    settings: Settings,
) -> tuple[Message, tuple[str, dict[str, str]]]:
    message_id = message_id_for(key, settings.smtp_from)
    kwargs = {"template": template, "to": to, "context": context, "key": key, "message_id": message_id, **extra}
    options = {"priority": level.value, **retry, "idempotency_key": key}
    message = build_message(EMAIL_QUEUE, SEND_ACTOR, kwargs, options, str(uuid.uuid5(_JOB_IDS, key)))
    return message, (key, new_fields(to, template, message_id))


def _enqueue(
    messages: list[Message], rows: list[tuple[str, dict[str, str]]], delay_ms: int | None, settings: Settings
) -> tuple[int, int]:
    """Create pending records, then enqueue the jobs whose email is not already sent or failed.

    Returns (jobs enqueued, jobs kept in the outbox).
    """
    _check_json(*(m.kwargs for m in messages))
    broker = get_broker()
    outbox = get_outbox(settings)
    keys: list[str | None] = [f"mail:{key}" for key, _ in rows]
    if outbox is not None and outbox.still_pending():
        keep(outbox, messages, keys, delay_ms=delay_ms, why=BEHIND)
        return 0, len(messages)
    try:
        states = record_store(broker).create_pending(rows)
        todo = [i for i, s in enumerate(states) if s in (None, SendState.PENDING)]
        if not todo:
            return 0, 0
        done = cast(BusBroker, broker).enqueue_many(
            [messages[i] for i in todo],
            delay_ms=delay_ms,
            once_keys=[keys[i] for i in todo],
            once_ttl_s=settings.dedup_window_s,
        )
    except BROKER_ERRORS as exc:
        problem = f"could not enqueue {len(messages)} email(s) on {describe(broker)}: {exc}"
        _keep(outbox, problem, exc, messages, keys, delay_ms)
        return 0, len(messages)
    return len(done), 0


def _enqueue_chunks(
    template: str,
    context: dict[str, Any],
    emails: list[dict[str, Any]],
    level: Priority,
    retry: dict[str, int],
    delay_ms: int | None,
    settings: Settings,
) -> tuple[int, int, int]:
    """Create pending records, then enqueue the emails not already sent or failed in chunk jobs.

    A chunk's job id comes from its emails' keys: sending the same batch again while it waits
    enqueues nothing new (and a pending email's record keeps it from being sent twice anyway).
    Returns (emails enqueued, jobs enqueued, emails kept in the outbox).
    """
    broker = get_broker()
    outbox = get_outbox(settings)
    rows = [(e["key"], new_fields([e["to"]], template, e["message_id"])) for e in emails]
    size = max(1, settings.mail_chunk_size)

    def chunks(todo: list[dict[str, Any]]) -> list[Message]:
        return [_chunk(template, context, todo[i : i + size], level, retry) for i in range(0, len(todo), size)]

    if outbox is not None and outbox.still_pending():
        behind = chunks(emails)
        keep(outbox, behind, _chunk_keys(behind), delay_ms=delay_ms, why=BEHIND)
        return 0, 0, len(emails)
    messages: list[Message] = []
    try:
        states = record_store(broker).create_pending(rows)
        messages = chunks([e for e, s in zip(emails, states) if s in (None, SendState.PENDING)])
        if not messages:
            return 0, 0, 0
        done = cast(BusBroker, broker).enqueue_many(
            messages, delay_ms=delay_ms, once_keys=_chunk_keys(messages), once_ttl_s=settings.dedup_window_s
        )
    except BROKER_ERRORS as exc:
        problem = f"could not enqueue {len(emails)} email(s) on {describe(broker)}: {exc}"
        messages = messages or chunks(emails)  # the records were not written: every email goes
        _keep(outbox, problem, exc, messages, _chunk_keys(messages), delay_ms)
        return 0, 0, sum(len(m.kwargs["emails"]) for m in messages)
    return sum(len(m.kwargs["emails"]) for m in done), len(done), 0


def _chunk_keys(messages: list[Message]) -> list[str | None]:
    return [f"mail:chunk:{m.message_id}" for m in messages]


def _keep(
    outbox: Outbox | None,
    problem: str,
    exc: Exception,
    messages: list[Message],
    keys: list[str | None],
    delay_ms: int | None,
) -> None:
    """Keep the jobs in the outbox; a worker creates a missing send record when it takes the email."""
    if outbox is None:
        raise PublishError(f"{problem}; {write_advice(exc, 'emails')}") from None
    keep(outbox, messages, keys, delay_ms=delay_ms, why=problem)


def _chunk(
    template: str, context: dict[str, Any], emails: list[dict[str, Any]], level: Priority, retry: dict[str, int]
) -> Message:
    keys = "\x00".join(e["key"] for e in emails)
    options = {"priority": level.value, **retry}
    kwargs = {"template": template, "context": context, "emails": emails}
    return build_message(EMAIL_QUEUE, CHUNK_ACTOR, kwargs, options, str(uuid.uuid5(_JOB_IDS, f"chunk\x00{keys}")))


def _check_json(*values: Any) -> None:
    """Raise PayloadNotSerializable before anything is written; shared objects are checked once."""
    checked: set[int] = set()
    for value in values:
        if id(value) in checked:
            continue
        checked.add(id(value))
        try:
            encoder.dumps(value)  # what the broker will write, by the same rules
        except (TypeError, ValueError) as exc:
            raise PayloadNotSerializable(
                f"email context cannot be written as JSON ({exc}); use str, int, float, bool, None, list, dict"
            ) from None
