"""Dead letters: list, show, requeue and purge, safely while workers run.

The broker keeps them per queue (the message as rewritten at nack, with the final attempt's error
and traceback), named by a broker id and scored by the time they died; see ``ControlStore``.
Requeue and purge "take" entries atomically, so two operators never requeue the same letter twice.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import dramatiq

from eventbus.clock import now_ms
from eventbus.deadletter import DeadReason, attempts_of, reason_of
from eventbus.errors import DeadLetterNotFound, EventBusError
from eventbus.ledger import JobState, canonical_queue, forced_transition
from eventbus.reports import DeadLetter, DeadLetterFilter, Page, RequeueResult, decode_cursor, next_cursor

if TYPE_CHECKING:
    from eventbus.control import ControlPlane

# Options that belong to one run of a message, not to the job: dropped when a dead letter is requeued.
_RUN_OPTIONS = frozenset(
    {"redis_message_id", "retries", "traceback", "eta", "error", "error_type", "dead_at", "requeue_timestamp"}
    | {"attempts", "reason", "dead_reason", "lost_deliveries"}
)

_Entry = tuple[float, str, str, bytes | None]  # (-score, queue, broker id, data)


def to_dead_letter(queue: str, score: float, data: bytes) -> DeadLetter:
    """Decode a stored dead letter (a placeholder if it cannot be decoded, so it can still be purged)."""
    try:
        m = dramatiq.Message.decode(data)
    except Exception as exc:
        return DeadLetter(
            "?", queue, "?", DeadReason.MALFORMED, None, None, None, [], {}, f"undecodable: {exc}", None, None, 0,
            0, int(score),
        )  # fmt: skip
    o = m.options
    reason = reason_of(o, m.actor_name)
    return DeadLetter(
        job_id=m.message_id,
        queue=canonical_queue(m.queue_name),
        actor=m.actor_name,
        reason=reason,
        subscription=o.get("subscription"),
        event_id=o.get("event_id"),
        topic=o.get("topic"),
        args=list(m.args),
        kwargs=dict(m.kwargs),
        error=o.get("error"),
        error_type=o.get("error_type"),
        traceback=o.get("traceback"),
        attempts=_attempts(o, reason),
        enqueued_at_ms=int(m.message_timestamp),
        dead_at_ms=int(o.get("dead_at") or score),
    )


def _attempts(options: dict[str, Any], reason: DeadReason) -> int:
    """Runs of a stored letter; a worker-lost letter stored before ``attempts`` was gets its lost runs added."""
    if options.get("attempts") is None and reason == DeadReason.WORKER_LOST:
        return int(options.get("retries") or 0) + int(options.get("lost_deliveries") or 0)
    return attempts_of(options, reason)


def _iter_queue(cp: ControlPlane, queue: str, top: float, batch: int = 200) -> Iterator[_Entry]:
    start = 0
    while True:
        rows = cp.store.dead_rows(queue, top, start, batch)
        if not rows:
            return
        for member, score, data in rows:
            yield (-score, queue, member, data)
        start += len(rows)


def _stream(cp: ControlPlane, queues: Sequence[str], cursor: str | None) -> Iterator[tuple[_Entry, float]]:
    """Dead letters of ``queues`` newest first, from ``cursor`` on (unfiltered); yields (entry, score)."""
    top, skip = decode_cursor(cursor)
    merged = heapq.merge(*(_iter_queue(cp, q, top) for q in queues), key=lambda e: (e[0], e[1]))
    for entry in merged:
        score = -entry[0]
        if score == top and skip > 0:
            skip -= 1
            continue
        yield entry, score


def _queues_for(cp: ControlPlane, match: DeadLetterFilter) -> list[str]:
    if match.queue is not None:
        cp.require_queue(match.queue)
        return [match.queue]
    if match.subscription is not None:
        sub = cp.find_subscription(match.subscription)
        return [sub.queue or cp.settings.default_queue]
    return cp.queues()


def list_dead_letters(
    cp: ControlPlane, match: DeadLetterFilter, *, limit: int = 50, cursor: str | None = None
) -> Page[DeadLetter]:
    """Dead letters matching ``match``, newest first."""
    if not 1 <= limit <= 1000:
        raise EventBusError(f"limit must be between 1 and 1000, got {limit}")
    top, skip = decode_cursor(cursor)
    items: list[DeadLetter] = []
    scores: list[float] = []
    now = now_ms()
    for (_, queue, _, data), score in _stream(cp, _queues_for(cp, match), cursor):
        if len(items) == limit:
            return Page(items, next_cursor(scores, (top, skip)))
        scores.append(score)
        if data is not None:
            letter = to_dead_letter(queue, score, data)
            if match.matches(letter, now):
                items.append(letter)
    return Page(items, None)


def locate(cp: ControlPlane, job_id: str) -> tuple[str, str, bytes] | None:
    """(queue, broker id, data) of the dead letter of ``job_id``."""
    return cp.store.locate_dead(job_id, cp.queues())


def get_dead_letter(cp: ControlPlane, job_id: str) -> DeadLetter:
    """The dead letter of ``job_id`` with the final attempt's error and traceback."""
    found = locate(cp, job_id)
    if found is None:
        raise DeadLetterNotFound(f"no dead letter for job {job_id!r}; it was requeued, purged, or never failed")
    queue, rmid, data = found
    score = cp.store.dead_score(queue, rmid)
    return to_dead_letter(queue, score, data)


def _select(
    cp: ControlPlane,
    ids: Sequence[str] | None,
    match: DeadLetterFilter | None,
    everything: bool,
    limit: int | None,
) -> tuple[dict[str, list[str]], list[str]]:
    """Broker ids per queue of the dead letters an operation names, and the ids not found."""
    chosen: dict[str, list[str]] = {}
    missing: list[str] = []
    if ids:
        for job_id in ids:
            found = locate(cp, job_id)
            if found is None:
                missing.append(job_id)
            else:
                chosen.setdefault(found[0], []).append(found[1])
        return chosen, missing
    if match is None and not everything:
        raise EventBusError("name the dead letters: job ids, a filter (queue, subscription, error ...), or all")
    match = match or DeadLetterFilter()
    now = now_ms()
    count = 0
    for (_, queue, rmid, data), score in _stream(cp, _queues_for(cp, match), None):
        if limit is not None and count >= limit:
            break
        if data is not None and match.matches(to_dead_letter(queue, score, data), now):
            chosen.setdefault(queue, []).append(rmid)
            count += 1
    return chosen, missing


def requeue(
    cp: ControlPlane,
    ids: Sequence[str] | None = None,
    *,
    match: DeadLetterFilter | None = None,
    everything: bool = False,
    limit: int | None = None,
) -> RequeueResult:
    """Put dead letters back in their queues with the same job id and fresh attempts."""
    chosen, missing = _select(cp, ids, match, everything, limit)
    requeued: list[str] = []
    for queue, rmids in chosen.items():
        taken = cp.store.take_dead(queue, rmids)
        messages = [_fresh(dramatiq.Message.decode(data)) for data in taken]
        try:
            cp.bus_broker.enqueue_many(messages)
        except Exception:
            cp.store.put_back_dead(queue, taken)
            raise
        requeued.extend(m.message_id for m in messages)
    writer = cp.bus_broker.stores.ledger
    if writer is not None:
        writer.flush()
    if ids:
        missing.extend(i for i in ids if i not in requeued and i not in missing)
    return RequeueResult(requeued=requeued, missing=missing)


def purge(
    cp: ControlPlane,
    ids: Sequence[str] | None = None,
    *,
    match: DeadLetterFilter | None = None,
    older_than_s: float | None = None,
    everything: bool = False,
) -> int:
    """Delete dead letters; their job records stay as ``failed`` (history) until cleaned."""
    taken: list[tuple[str, bytes]] = []
    if older_than_s is not None and not ids and (match is None or match == DeadLetterFilter(queue=match.queue)):
        queues = _queues_for(cp, match or DeadLetterFilter())
        cutoff = now_ms() - int(older_than_s * 1000)
        for queue in queues:
            while batch := cp.store.take_dead_older(queue, cutoff):
                taken.extend((queue, d) for d in batch)
    else:
        if older_than_s is not None:
            match = DeadLetterFilter(**{**(match or DeadLetterFilter()).__dict__, "older_than_s": older_than_s})
        chosen, _ = _select(cp, ids, match, everything, None)
        for queue, rmids in chosen.items():
            taken.extend((queue, d) for d in cp.store.take_dead(queue, rmids))
    _mark_failed(cp, taken)
    return len(taken)


def _fresh(message: dramatiq.Message[Any]) -> dramatiq.Message[Any]:
    options = {k: v for k, v in message.options.items() if k not in _RUN_OPTIONS}
    options["requeues"] = int(message.options.get("requeues", 0)) + 1
    return dramatiq.Message(
        queue_name=canonical_queue(message.queue_name),
        actor_name=message.actor_name,
        args=message.args,
        kwargs=message.kwargs,
        options=options,
        message_id=message.message_id,
        message_timestamp=now_ms(),
    )


def _mark_failed(cp: ControlPlane, taken: list[tuple[str, bytes]]) -> None:
    ops = []
    at = now_ms()
    for queue, data in taken:
        try:
            job_id = dramatiq.Message.decode(data).message_id
        except Exception:
            continue
        ops.append(forced_transition(job_id, queue, JobState.FAILED, at))
    if ops:
        cp.store.apply(ops)
