"""A job's record as the ledger keeps it: what every store reads back and the control plane shows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from eventbus.ledger import HISTORY_CODES, JobState

_STATES = frozenset(s.value for s in JobState)
_CODE_STATES = {code: JobState(state) for state, code in HISTORY_CODES.items()}


@dataclass(frozen=True)
class HistoryEntry:
    """One transition of a job: the state it entered and when."""

    state: JobState
    at_ms: int


@dataclass(frozen=True)
class JobRecord:
    """What the ledger knows about one job; ``to_dict()`` is its JSON form."""

    id: str
    queue: str
    state: JobState
    actor: str
    kind: str
    attempts: int
    requeues: int = 0
    subscription: str | None = None
    event_id: str | None = None
    topic: str | None = None
    priority: str | None = None
    max_retries: int | None = None
    enqueued_at_ms: int | None = None
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    next_attempt_at_ms: int | None = None
    updated_at_ms: int | None = None
    worker: str | None = None
    error: str | None = None
    traceback: str | None = None
    history: list[HistoryEntry] = field(default_factory=list)
    payload: dict[str, Any] | None = None  # the message's args/kwargs while the broker still holds it

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> JobRecord:
        """Decode a ledger hash (as read from Redis)."""
        return cls.from_fields({k.decode(): v.decode() for k, v in raw.items()})

    @classmethod
    def from_fields(cls, d: dict[str, str]) -> JobRecord:
        """Decode a record's fields (``state``, ``updated_at`` and ``history`` included)."""

        def num(name: str) -> int | None:
            value = d.get(name)
            return int(value) if value not in (None, "") else None

        history = []
        for item in filter(None, d.get("history", "").split(",")):
            name, _, at = item.partition("@")
            state = _CODE_STATES.get(name) or (JobState(name) if name in _STATES else None)
            if state is not None and at.isdigit():
                history.append(HistoryEntry(state, int(at)))
        return cls(
            id=d["id"],
            queue=d.get("queue", ""),
            state=JobState(d.get("state", "waiting")),
            actor=d.get("actor", ""),
            kind=d.get("kind", "job"),
            attempts=num("attempts") or 0,
            requeues=num("requeues") or 0,
            subscription=d.get("subscription"),
            event_id=d.get("event_id"),
            topic=d.get("topic"),
            priority=d.get("priority"),
            max_retries=num("max_retries"),
            enqueued_at_ms=num("enqueued_at_ms"),
            started_at_ms=num("started_at_ms"),
            finished_at_ms=num("finished_at_ms"),
            next_attempt_at_ms=num("next_attempt_at_ms"),
            updated_at_ms=num("updated_at"),
            worker=d.get("worker"),
            error=d.get("error"),
            traceback=d.get("traceback"),
            history=history,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (states as strings)."""
        out = asdict(self)
        out["state"] = self.state.value
        out["history"] = [{"state": h.state.value, "at_ms": h.at_ms} for h in self.history]
        return out
