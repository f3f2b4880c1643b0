"""The dead letter of a message that kept killing its worker (reason ``worker_lost``), on every broker."""

from __future__ import annotations

from typing import Any

import dramatiq

from eventbus.deadletter import DeadReason, worker_lost_options

WORKER_LOST = DeadReason.WORKER_LOST


def worker_lost(message: dramatiq.Message[Any], lost: int, now_ms: int | None = None) -> dramatiq.Message[Any]:
    """``message`` as dead-lettered after its worker died ``lost`` times while running it."""
    return message.copy(options=worker_lost_options(message.options, lost, now_ms))
