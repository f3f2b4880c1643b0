"""The event: what ``publish_event`` writes and what every subscriber receives."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every 10-bit value as its two Crockford base32 characters: a ULID is 13 lookups.
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_DIGITS = {c: i for i, c in enumerate(_CROCKFORD)} | {c.lower(): i for i, c in enumerate(_CROCKFORD)}


def new_event_id() -> str:
    """A ULID: 26 characters, 48 bits of milliseconds then 80 random bits, so ids sort by time."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    # 130 bits of base32 (two leading zeros, then the 128-bit value), 10 bits per lookup.
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(120, -1, -10)])


def event_time_ms(event_id: str) -> int | None:
    """The millisecond timestamp of a ULID event id (None for an id that is not a ULID, e.g. one a caller chose)."""
    if len(event_id) != 26:
        return None
    value = 0
    for char in event_id:
        digit = _DIGITS.get(char)
        if digit is None:
            return None
        value = value * 32 + digit
    return value >> 80 if value < 1 << 128 else None


@dataclass(frozen=True)
class Event:
    """One published fact: ``id`` is unique and time-sortable, ``published_at`` is UTC."""

    topic: str
    payload: dict[str, Any]
    id: str = field(default_factory=new_event_id)
    published_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    headers: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form carried in messages."""
        return {
            "id": self.id,
            "topic": self.topic,
            "payload": self.payload,
            "published_at": self.published_at.isoformat(),
            "headers": self.headers,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """Inverse of :meth:`to_dict`."""
        return cls(
            topic=data["topic"],
            payload=data["payload"],
            id=data["id"],
            published_at=datetime.fromisoformat(data["published_at"]),
            headers=dict(data.get("headers") or {}),
        )
