"""A scheduled message as a durable schedule stores it: shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass

from eventbus.brokers import Message


@dataclass(frozen=True)
class ScheduledEntry:
    """One scheduled message as stored: when it is due and what it will run."""

    message_id: str
    eta_ms: int
    queue: str
    message: Message
