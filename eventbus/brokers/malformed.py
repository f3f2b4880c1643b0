"""Messages a consumer cannot use: decoded safely, or wrapped into a dead letter that records why.

A consumer hands every raw message to :func:`decode`. Anything that is not a well-formed
Dramatiq message in JSON (invalid JSON, pickle bytes, missing or mistyped fields, a body larger
than ``EVENTBUS_MAX_MESSAGE_BYTES``) raises :class:`MalformedMessage`. The consumer then moves
the raw bytes to its dead letters as :func:`dead_letter`: a valid message of the pseudo-actor
``eventbus.malformed`` whose options carry ``reason="malformed"``, the error and the raw bytes
(base64, at most ``RAW_KEEP_BYTES``), so dead-letter listings can always decode it. The worker
keeps running; nothing is ever unpickled (the only decoder is JSON).
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from typing import Any

import dramatiq

from eventbus.brokers import Message
from eventbus.deadletter import DeadReason, dead_letter_options
from eventbus.errors import MalformedMessage as MalformedMessage  # re-exported for the consumers

logger = logging.getLogger("eventbus.malformed")

MALFORMED_ACTOR = "eventbus.malformed"
MALFORMED = DeadReason.MALFORMED
RAW_KEEP_BYTES = 64 * 1024

_FIELDS: dict[str, type | tuple[type, ...]] = {
    "queue_name": str,
    "actor_name": str,
    "args": (list, tuple),
    "kwargs": dict,
    "options": dict,
    "message_id": str,
    "message_timestamp": int,
}


def decode(data: bytes | str, max_bytes: int) -> Message:
    """The message in ``data``; raises MalformedMessage (naming what is wrong) instead of anything else."""
    if isinstance(data, str):
        data = data.encode()
    if max_bytes and len(data) > max_bytes:
        raise MalformedMessage(
            f"message of {len(data)} bytes exceeds EVENTBUS_MAX_MESSAGE_BYTES={max_bytes}; "
            "send large payloads by reference (an id or URL), or raise the limit"
        )
    try:
        message = dramatiq.Message.decode(data)
    except dramatiq.errors.DecodeError as exc:
        cause = exc.__cause__
        raise MalformedMessage(f"not a JSON Dramatiq message ({type(cause).__name__}: {cause})") from None
    for name, kind in _FIELDS.items():
        value = getattr(message, name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise MalformedMessage(f"field {name!r} is {type(value).__name__}, not {_names(kind)}")
    return message


def dead_letter(data: bytes | str, queue_name: str, error: str, message_id: str | None = None) -> Message:
    """The dead letter recording unusable ``data`` found on ``queue_name``."""
    raw = data.encode() if isinstance(data, str) else data
    return dramatiq.Message(
        queue_name=queue_name,
        actor_name=MALFORMED_ACTOR,
        args=(),
        kwargs={},
        options=dead_letter_options(
            DeadReason.MALFORMED,
            attempts=0,  # never ran: no worker could read it
            error=f"MalformedMessage: {error}",
            error_type="MalformedMessage",
            raw_bytes=len(raw),
            raw_b64=base64.b64encode(raw[:RAW_KEEP_BYTES]).decode(),
            raw_truncated=len(raw) > RAW_KEEP_BYTES,
            **_redis_id(message_id),
        ),
        message_id=message_id or str(uuid.uuid4()),
        message_timestamp=int(time.time() * 1000),
    )


def _redis_id(message_id: str | None) -> dict[str, Any]:
    return {"redis_message_id": message_id} if message_id else {}


def log_malformed(queue_name: str, error: str) -> None:
    """One warning per malformed message (never the raw bytes: they may be huge or hostile)."""
    logger.warning("dead-lettered a malformed message on queue %r: %s", queue_name, error)


def raw_of(message: Any) -> bytes:
    """The raw bytes kept in a malformed dead letter (possibly truncated)."""
    return base64.b64decode(message.options.get("raw_b64", ""))


def _names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)
