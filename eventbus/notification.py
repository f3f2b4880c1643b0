"""The notification: what ``notify`` creates and every channel receives."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from eventbus.event import new_event_id


@dataclass(frozen=True)
class Notification:
    """One message for one user; ``id`` is unique, ``created_us`` is Unix microseconds (the inbox order).

    ``read`` (inbox state) and ``outboxed`` (``notify`` kept the jobs in the outbox because the broker
    was down) are not part of the stored form.
    """

    user_id: str
    title: str
    body: str
    kind: str = "info"
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_event_id)
    created_us: int = field(default_factory=lambda: time.time_ns() // 1000)
    read: bool = False
    outboxed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON form carried in jobs, stored in the inbox and posted to webhooks."""
        return {
            "id": self.id,
            "user_id": self.user_id,
            "title": self.title,
            "body": self.body,
            "kind": self.kind,
            "data": self.data,
            "created_us": self.created_us,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, read: bool = False) -> Notification:
        """Inverse of :meth:`to_dict`."""
        return cls(
            user_id=str(raw["user_id"]),
            title=raw["title"],
            body=raw["body"],
            kind=raw.get("kind", "info"),
            data=dict(raw.get("data") or {}),
            id=raw["id"],
            created_us=int(raw["created_us"]),
            read=read,
        )
