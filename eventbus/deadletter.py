"""Why a message is a dead letter, and the one builder of a dead letter's options.

Every backend writes a dead letter as the message with the options built here: ``reason`` (a
:class:`DeadReason`), ``attempts`` (how many times the message ran), ``error``, ``error_type``,
``traceback`` and ``dead_at``. Neutral on purpose: brokers, middleware and the control plane import
it, and it imports none of them.
"""

from __future__ import annotations

import enum
import time
import traceback as tb
from collections.abc import Mapping
from typing import Any

from dramatiq.errors import ActorNotFound
from dramatiq.middleware import SkipMessage

from eventbus.errors import MalformedMessage


class DeadReason(enum.StrEnum):
    """Why a message stopped being delivered."""

    FAILED = "failed"  # it raised on its last allowed attempt (or raised an exception it may not retry)
    WORKER_LOST = "worker_lost"  # its worker died while running it, ``max_lost_deliveries`` times
    MALFORMED = "malformed"  # undecodable, oversized, or for an actor no worker declares
    EXPIRED = "expired"  # older than its ``max_age`` when a worker took it
    UNCERTAIN = "uncertain"  # an email whose data went to SMTP with no reply recorded: not resent on its own


WORKER_LOST_TYPE = "WorkerLost"


def dead_letter_options(
    reason: DeadReason,
    *,
    attempts: int,
    error: str | None = None,
    error_type: str | None = None,
    traceback: str | None = None,
    dead_at_ms: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The options a dead letter carries on top of its message's own (``extra``: backend details)."""
    options: dict[str, Any] = {
        "reason": DeadReason(reason).value,
        "attempts": max(0, int(attempts)),
        "dead_at": int(time.time() * 1000) if dead_at_ms is None else dead_at_ms,
    }
    if error is not None:
        options["error"] = error
        options["error_type"] = error_type or error.split(":", 1)[0]
    if traceback is not None:
        options["traceback"] = traceback
    options.update(extra)
    return options


def nacked_options(
    options: Mapping[str, Any], exception: BaseException | None, dead_at_ms: int | None = None
) -> dict[str, Any]:
    """The dead-letter options of a message a worker gave up on (nack), ``exception`` its last error."""
    reason = reason_for(exception)
    if exception is None:
        return dead_letter_options(reason, attempts=attempts_of(options, reason), dead_at_ms=dead_at_ms)
    return dead_letter_options(
        reason,
        attempts=attempts_of(options, reason),
        error=f"{type(exception).__name__}: {exception}",
        error_type=type(exception).__name__,
        traceback=options.get("traceback") or "".join(tb.format_exception(exception, limit=30)),
        dead_at_ms=dead_at_ms,
    )


def worker_lost_options(options: Mapping[str, Any], lost: int, dead_at_ms: int | None = None) -> dict[str, Any]:
    """The dead-letter options of a message whose worker died ``lost`` times while running it.

    Runs that died are not counted in ``retries`` (no middleware outlives a SIGKILL): they are added.
    """
    return dead_letter_options(
        DeadReason.WORKER_LOST,
        attempts=int(options.get("retries") or 0) + lost,
        error=(
            f"{WORKER_LOST_TYPE}: the worker running this message died {lost} times (SIGKILL, out of memory or "
            "a crash); it was dead-lettered instead of being delivered again"
        ),
        error_type=WORKER_LOST_TYPE,
        dead_at_ms=dead_at_ms,
        lost_deliveries=lost,
    )


def reason_for(exception: BaseException | None) -> DeadReason:
    """The reason a worker nacks a message that raised ``exception`` (None: failed by a middleware)."""
    if isinstance(exception, (ActorNotFound, MalformedMessage)):
        return DeadReason.MALFORMED
    if isinstance(exception, SkipMessage):  # AgeLimit fails a message too old to run, then skips it
        return DeadReason.EXPIRED
    return DeadReason.FAILED


def attempts_of(options: Mapping[str, Any], reason: DeadReason = DeadReason.FAILED) -> int:
    """How many times a message ran, from its options.

    The ledger stores the attempt that failed as ``attempts``; without it, Dramatiq's ``retries``
    counts the runs that raised. A failed message ran at least once; a malformed or expired one may
    never have run.
    """
    if options.get("attempts") is not None:
        return int(options["attempts"])
    retries = int(options.get("retries") or 0)
    return max(retries, 1) if reason == DeadReason.FAILED else retries


def reason_of(options: Mapping[str, Any], actor_name: str = "") -> DeadReason:
    """The reason of a stored dead letter; letters written before reasons were stored get one derived."""
    for key in ("reason", "dead_reason"):
        try:
            return DeadReason(options[key])
        except (KeyError, ValueError):
            pass
    if options.get("error_type") == WORKER_LOST_TYPE:
        return DeadReason.WORKER_LOST
    if options.get("error_type") in ("MalformedMessage", "ActorNotFound") or actor_name == "eventbus.malformed":
        return DeadReason.MALFORMED
    return DeadReason.FAILED
