"""The dead letter of a message that kept killing its worker (reason ``worker_lost``), on every broker."""

from __future__ import annotations

from typing import Any

import dramatiq

from eventbus.deadletter import DeadReason, worker_lost_options
from eventbus.ledger import JobState, LedgerWrite, transition

WORKER_LOST = DeadReason.WORKER_LOST


def worker_lost(message: dramatiq.Message[Any], lost: int, now_ms: int | None = None) -> dramatiq.Message[Any]:
    """``message`` as dead-lettered after its worker died ``lost`` times while running it."""
    return message.copy(options=worker_lost_options(message.options, lost, now_ms))


def dead_record(dead: dramatiq.Message[Any]) -> LedgerWrite:
    """The ledger write that moves the job of a worker-lost letter from ``active`` (its last run) to ``dead``.

    No worker survives to write it: whoever dead-letters the message does.
    """
    options = dead.options
    return transition(
        dead, JobState.DEAD, int(options["attempts"]), finished_at_ms=options["dead_at"], error=options["error"]
    )
