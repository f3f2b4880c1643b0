"""The send record: one per idempotency key, pending -> sending -> sent | failed, in the backend's store.

The record, its operations (:class:`Claim`, :class:`Finish`, :class:`Peek`) and the store protocol
every backend implements (Redis hashes, a table of the SQLite file, a dict in memory). Counters:
sent, failed, retried, skipped (already sent) and uncertain (found in ``sending`` after a crash).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventbus.clock import now_ms

UNCERTAIN = "uncertain: a worker stopped while handing this email to SMTP; not resent (at most once)"


class SendState(enum.StrEnum):
    """Where one email is: waiting, being handed to SMTP, accepted by SMTP, or given up."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclass
class SendRecord:
    """What an operator sees for one email."""

    key: str
    state: SendState
    to: list[str] = field(default_factory=list)
    template: str = ""
    message_id: str = ""
    attempts: int = 0
    code: int | None = None
    text: str = ""
    accepted: list[str] = field(default_factory=list)
    refused: dict[str, Any] = field(default_factory=dict)
    created_ms: int = 0
    updated_ms: int = 0

    @classmethod
    def from_hash(cls, key: str, raw: Mapping[str, str]) -> SendRecord:
        """Decode the stored hash."""
        code = raw.get("code", "")
        return cls(
            key=key,
            state=SendState(raw.get("state", "pending")),
            to=json.loads(raw.get("to") or "[]"),
            template=raw.get("template", ""),
            message_id=raw.get("message_id", ""),
            attempts=int(raw.get("attempts") or 0),
            code=int(code) if code not in ("", None) else None,
            text=raw.get("text", ""),
            accepted=json.loads(raw.get("accepted") or "[]"),
            refused=json.loads(raw.get("refused") or "{}"),
            created_ms=int(raw.get("created_ms") or 0),
            updated_ms=int(raw.get("updated_ms") or 0),
        )


def claim_fields_for(to: Sequence[str], template: str, message_id: str) -> dict[str, str]:
    """What a claim needs to create a record that is missing (expired, or written by an older version)."""
    return {"to": json.dumps(list(to)), "template": template, "message_id": message_id, "created_ms": str(now_ms())}


def new_fields(to: Sequence[str], template: str, message_id: str) -> dict[str, str]:
    """The fields of a fresh pending record."""
    now = str(now_ms())
    return {
        "state": SendState.PENDING.value,
        "to": json.dumps(list(to)),
        "template": template,
        "message_id": message_id,
        "attempts": "0",
        "accepted": "[]",
        "created_ms": now,
        "updated_ms": now,
    }


@dataclass(frozen=True)
class Claim:
    """Take an email for sending; the result is the record as it was before (None: it was missing).

    pending or missing -> sending (attempts + 1); sending -> failed as uncertain (counted), because a
    worker stopped while handing it to SMTP; sent or failed -> unchanged (counted as skipped).
    ``fields`` create a missing record.
    """

    key: str
    fields: dict[str, str]


@dataclass(frozen=True)
class Finish:
    """Write the outcome of an attempt and bump ``counter``."""

    key: str
    state: SendState
    updates: dict[str, str]
    counter: str


@dataclass(frozen=True)
class Peek:
    """Read a record without changing it: a retried chunk leaves out the emails already settled."""

    key: str


Op = Claim | Finish | Peek


class RecordStore(Protocol):
    """Where send records live; one implementation per broker kind."""

    def create_pending(self, rows: Sequence[tuple[str, dict[str, str]]]) -> list[SendState | None]:
        """Create records that do not exist yet (publisher side); returns the prior state of each (None: new)."""
        ...

    def get(self, key: str) -> SendRecord | None:
        """The record for ``key``, if any."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters: sent, failed, retried, skipped, uncertain."""
        ...

    async def claim(self, key: str, fields: dict[str, str]) -> SendRecord | None:
        """Move pending (or missing) to sending; returns the record as it was before (None: missing)."""
        ...

    async def apply(self, ops: Sequence[Op]) -> list[SendRecord | None]:
        """Run ``ops`` in order in one round trip; one result per op (None for a Finish)."""
        ...

    async def aclose(self) -> None:
        """Release clients bound to the running event loop (worker shutdown)."""
        ...


def claim_fields(fields: dict[str, str]) -> str:
    """Apply a claim to a record's fields in place (memory and SQLite); returns the counter to bump, or ''."""
    state = fields.get("state", SendState.PENDING.value)
    if state == SendState.PENDING.value:
        attempts = str(int(fields.get("attempts") or 0) + 1)
        fields.update(state=SendState.SENDING.value, attempts=attempts, updated_ms=str(now_ms()))
        return ""
    if state == SendState.SENDING.value:
        fields.update(state=SendState.FAILED.value, code="", text=UNCERTAIN, updated_ms=str(now_ms()))
        return "uncertain"
    return "skipped"
