"""The send record: one per idempotency key, pending -> connecting -> data_sent -> sent | failed.

The record, its operations (:class:`Claim`, :class:`Handover`, :class:`Finish`, :class:`Peek`) and
the store protocol every backend implements (Redis hashes, a table of the SQLite file, a dict in
memory). Counters: sent, failed, retried, skipped (already sent) and uncertain (found in
``data_sent`` after a crash).

The phases say what the SMTP server may hold. Before ``data_sent`` it holds nothing it would
deliver: an envelope (MAIL, RCPT) without message data is dropped by the server at RSET, QUIT or
a lost connection, so an attempt that finds an email there sends it. ``data_sent`` is written,
durably, before the first byte of the message goes out and lasts until the server's reply is
recorded: only an email found there is uncertain.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventbus.clock import now_ms

UNCERTAIN = (
    "uncertain: a worker stopped after the message data went to SMTP, before the reply was recorded; "
    "not resent (at most once): `eventbus mail uncertain --resend KEY` sends it again"
)


class SendState(enum.StrEnum):
    """Where one email is: waiting, on its way to SMTP, possibly at the server, accepted, or given up.

    ``connecting`` covers the whole envelope (connect, EHLO, STARTTLS, AUTH, MAIL, RCPT): it is one
    write, at the claim, because every step before the message data is equally safe to repeat, so
    a write per step would cost a round trip per email and change no decision.
    """

    PENDING = "pending"
    CONNECTING = "connecting"  # claimed: connecting, MAIL or RCPT; nothing the server keeps yet
    DATA_SENT = "data_sent"  # the message data may have reached the server; its reply is not recorded
    SENT = "sent"
    FAILED = "failed"
    SENDING = "sending"  # written by versions before the phases (it spanned DATA): read as data_sent


COUNTERS = ("sent", "failed", "retried", "skipped", "uncertain")  # what ``RecordStore.stats()`` counts

BEFORE_DATA = frozenset({SendState.PENDING, SendState.CONNECTING})  # an attempt finding these sends
IN_DOUBT = frozenset({SendState.DATA_SENT, SendState.SENDING})  # an attempt finding these does not


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

    @property
    def uncertain(self) -> bool:
        """Failed because a worker stopped in ``data_sent``: the server may or may not have it."""
        return self.state is SendState.FAILED and self.text.startswith("uncertain")

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

    pending, connecting or missing -> connecting (attempts + 1): nothing reached the server, so it
    is sent (again); data_sent -> unchanged, for the attempt to settle as uncertain; sent or
    failed -> unchanged (counted as skipped). ``fields`` create a missing record. The claimant's
    attempt number (the record's ``attempts`` before, plus one) fences its later writes.
    """

    key: str
    fields: dict[str, str]


@dataclass(frozen=True)
class Handover:
    """About to send the message data: connecting -> data_sent, if attempt ``attempt`` still holds the claim.

    The result is the record as it was before; the handover took place only if that record was
    ``connecting`` with ``attempts == attempt`` (otherwise nothing changes and the data is not sent:
    another attempt claimed the email meanwhile).
    """

    key: str
    attempt: int


@dataclass(frozen=True)
class Finish:
    """Write the outcome of an attempt and bump ``counter``.

    ``attempt`` > 0 fences the write: it is skipped (and nothing counted) unless the record's
    ``attempts`` still equals it, so an attempt that lost its claim never overwrites the winner's phase.
    """

    key: str
    state: SendState
    updates: dict[str, str]
    counter: str
    attempt: int = 0


@dataclass(frozen=True)
class Peek:
    """Read a record without changing it: a retried chunk leaves out the emails already settled."""

    key: str


Op = Claim | Handover | Finish | Peek


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

    def reset(self, key: str) -> SendRecord | None:
        """Set a record back to pending, keeping what it says was accepted (an operator resends an uncertain
        email); returns the record as it was (None: missing, and nothing is written)."""
        ...

    async def claim(self, key: str, fields: dict[str, str]) -> SendRecord | None:
        """See :class:`Claim`; returns the record as it was before (None: missing)."""
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
    if state in _CLAIMABLE:
        attempts = str(int(fields.get("attempts") or 0) + 1)
        fields.update(state=SendState.CONNECTING.value, attempts=attempts, updated_ms=str(now_ms()))
        return ""
    if state in _IN_DOUBT:
        return ""
    return "skipped"


def handover_fields(fields: dict[str, str], attempt: int) -> bool:
    """Apply a handover in place (memory and SQLite); True if it took place."""
    if fields.get("state") != SendState.CONNECTING.value or int(fields.get("attempts") or 0) != attempt:
        return False
    fields.update(state=SendState.DATA_SENT.value, updated_ms=str(now_ms()))
    return True


def holds(fields: dict[str, str] | None, attempt: int) -> bool:
    """True if a fenced write of attempt ``attempt`` applies to a record with ``fields`` (0: unfenced)."""
    return attempt == 0 or (fields is not None and int(fields.get("attempts") or 0) == attempt)


_CLAIMABLE = frozenset(s.value for s in BEFORE_DATA)
_IN_DOUBT = frozenset(s.value for s in IN_DOUBT)
