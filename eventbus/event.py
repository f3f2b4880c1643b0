"""The event: what ``publish_event`` writes and what every subscriber receives."""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# RFC 4648 base32 letters mapped onto Crockford's alphabet (no I, L, O, U), as ULIDs use.
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def new_event_id() -> str:
    """A ULID: 26 characters, 48 bits of milliseconds then 80 random bits, so ids sort by time."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    # A ULID is 130 bits of base32 (two leading zeros, then the 128-bit value): in 17 bytes
    # shifted left by one, those bits are exactly characters 1-26 of the encoding.
    return base64.b32encode((value << 1).to_bytes(17, "big"))[1:27].translate(_TO_CROCKFORD).decode()


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
