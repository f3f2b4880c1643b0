"""Wall-clock time as every store keeps it: milliseconds since the Unix epoch."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Now, in whole milliseconds (what records, scores and expiries store)."""
    return int(time.time() * 1000)


def precise_ms() -> float:
    """Now, in milliseconds with the fraction kept (rate limits space starts finer than 1 ms)."""
    return time.time() * 1000
