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
    def parse(cls, value: Priority | str | int | None, default: Priority) -> Priority:
        """Accept a Priority, its name in any case, ``urgent``, a number 1-20, or None for ``default``.

        ``urgent`` is CRITICAL. Numbers follow BullMQ, where 1 is the most urgent (given as an int
        or a string of digits): 1 is CRITICAL, 2-4 HIGH, 5-10 NORMAL, 11-20 LOW.
        """
        if value is None:
            return default
        if isinstance(value, Priority):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return _from_number(value, value)
        if isinstance(value, str):
            text = value.strip().lower()
            if text.isascii() and text.isdigit():
                return _from_number(int(text), value)
            if text in _ALIASES:
                return _ALIASES[text]
            if text in cls._value2member_map_:
                return cls(text)
        raise _unknown(value)


_RANKS = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}
_ALIASES = {"urgent": Priority.CRITICAL}
# BullMQ numbers (1 is the most urgent), upper bound of each band: 1, 2-4, 5-10, 11-20.
_NUMBER_BANDS = ((1, Priority.CRITICAL), (4, Priority.HIGH), (10, Priority.NORMAL), (20, Priority.LOW))


def _from_number(number: int, given: object) -> Priority:
    for highest, level in _NUMBER_BANDS:
        if 1 <= number <= highest:
            return level
    raise _unknown(given)


def _unknown(value: object) -> ConfigError:
    names = ", ".join(p.value for p in Priority)
    return ConfigError(
        f"unknown priority {value!r}; use one of {names} (any case; urgent means critical) "
        "or a whole number 1-20 (1 critical, 2-4 high, 5-10 normal, 11-20 low)"
    )


def rank_of(message: Any) -> int:
    """The rank of a message's priority (its ``priority`` option, NORMAL when it has none)."""
    return Priority.parse(message.options.get("priority"), Priority.NORMAL).rank
