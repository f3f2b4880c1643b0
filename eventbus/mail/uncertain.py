"""Uncertain emails: found in ``data_sent`` (the server may have them), kept as dead letters of the email queue.

An uncertain email is not sent again on its own (at most once), and not dropped either: it is
written to the ``email`` queue's dead letters with reason ``uncertain``, as a one-email send job
that an operator can list (``eventbus mail uncertain``) and knowingly send again
(``eventbus mail uncertain --resend KEY``, which sets its record back to pending first). A plain
dead-letter requeue runs the job, which finds its record settled and sends nothing.

The letter's job id is derived from the email's key, so writing it twice (a worker that stopped
between the letter and the record write) names the same job; ``--resend`` takes every letter of a key.
"""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq
from dramatiq.common import current_millis

from eventbus.deadletter import DeadReason, dead_letter_options
from eventbus.mail.names import EMAIL_QUEUE, SEND_ACTOR
from eventbus.priority import Priority
from eventbus.send_record import UNCERTAIN

_LETTER_IDS = uuid.UUID("5d1f3f8e-8c39-4b43-9a5e-0a4f5c1b7e21")
UNCERTAIN_TYPE = "UncertainDelivery"


def letter_id(key: str) -> str:
    """The job id of the dead letter of the uncertain email ``key``."""
    return str(uuid.uuid5(_LETTER_IDS, key))


def uncertain_letter(kwargs: dict[str, Any], attempts: int, rank: int) -> dramatiq.Message[Any]:
    """The dead letter of one uncertain email: a ``send_email`` job with ``kwargs`` (template, to, key ...)."""
    key = str(kwargs["key"])
    job_id = letter_id(key)
    options = dead_letter_options(
        DeadReason.UNCERTAIN,
        attempts=attempts,
        error=f"{UNCERTAIN_TYPE}: email {key!r} to {', '.join(kwargs['to'])}: {UNCERTAIN}",
        error_type=UNCERTAIN_TYPE,
        priority=_level(rank),
        idempotency_key=key,
        redis_message_id=job_id,  # the Redis backend names its dead letters by this id
    )
    return dramatiq.Message(
        queue_name=EMAIL_QUEUE,
        actor_name=SEND_ACTOR,
        args=(),
        kwargs={k: v for k, v in kwargs.items() if v is not None},
        options=options,
        message_id=job_id,
        message_timestamp=current_millis(),
    )


def _level(rank: int) -> str:
    return next((p.value for p in Priority if p.rank == rank), Priority.NORMAL.value)
