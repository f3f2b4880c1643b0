"""Priority levels for events, deliveries and sends."""

from __future__ import annotations

import enum
from typing import Any

from eventbus.errors import ConfigError


class Priority(enum.StrEnum):
    """Four levels; a higher level overtakes a backlog of lower ones in the broker."""

    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for CRITICAL … 3 for LOW: lower runs first."""
        return _RANKS[self]

    @classmethod
    def parse(cls, value: Priority | str | None, default: Priority) -> Priority:
        """Accept a Priority, its name in any case, or None for ``default``."""
        if value is None:
            return default
        if isinstance(value, Priority):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            names = ", ".join(p.value for p in cls)
            raise ConfigError(f"unknown priority {value!r}; use one of {names}") from None


_RANKS = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}


def rank_of(message: Any) -> int:
    """The rank of a message's priority (its ``priority`` option, NORMAL when it has none)."""
    return Priority.parse(message.options.get("priority"), Priority.NORMAL).rank
