"""The dead letter of a message that kept killing its worker (reason ``worker_lost``), on every broker."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.common import current_millis

WORKER_LOST = "worker_lost"


def worker_lost(message: dramatiq.Message[Any], lost: int, now_ms: int | None = None) -> dramatiq.Message[Any]:
    """``message`` as dead-lettered after its worker died ``lost`` times while running it."""
    return message.copy(
        options={
            "dead_reason": WORKER_LOST,
            "error_type": "WorkerLost",
            "error": (
                f"WorkerLost: the worker running this message died {lost} times (SIGKILL, out of memory or "
                "a crash); it was dead-lettered instead of being delivered again"
            ),
            "lost_deliveries": lost,
            "dead_at": current_millis() if now_ms is None else now_ms,
        }
    )
