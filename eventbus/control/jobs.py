"""Jobs by id and by (queue, state): look up, list, retry, remove, clean."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import dramatiq

from eventbus.clock import now_ms
from eventbus.delivery import EVENTS_QUEUE
from eventbus.errors import EventBusError, InvalidJobState, JobNotFound
from eventbus.job_record import JobRecord
from eventbus.ledger import JobState
from eventbus.reports import Page, decode_cursor, next_cursor

if TYPE_CHECKING:
    from eventbus.control import ControlPlane


def parse_state(state: JobState | str) -> JobState:
    """A JobState from its name, or an error listing the names."""
    try:
        return JobState(str(state).lower())
    except ValueError:
        names = ", ".join(s.value for s in JobState)
        raise EventBusError(f"unknown job state {state!r}; use one of {names}") from None


def get_job(cp: ControlPlane, job_id: str) -> JobRecord:
    """The record of ``job_id`` with its payload while the broker still holds the message."""
    record = cp.store.get([job_id])[0] or _waiting_event(cp, job_id)
    if record is None:
        hint = "" if cp.settings.ledger else " (the ledger is off: EVENTBUS_LEDGER=0)"
        raise JobNotFound(f"no job {job_id!r}: never enqueued here, removed, or past its retention{hint}")
    if record.payload is not None:
        return record
    data = cp.store.message_data(record)
    if not data:
        return record
    message = dramatiq.Message.decode(data)
    return dataclasses.replace(record, payload={"args": list(message.args), "kwargs": dict(message.kwargs)})


def _waiting_event(cp: ControlPlane, job_id: str) -> JobRecord | None:
    """A published event whose fan-out no worker has taken yet has no ledger record: read the broker."""
    data = cp.store.waiting_event_data(job_id)
    if not data:
        return None
    message = dramatiq.Message.decode(data)
    options = message.options
    return JobRecord(
        id=message.message_id,
        queue=EVENTS_QUEUE,
        state=JobState.WAITING,
        actor=message.actor_name,
        kind="fanout",
        attempts=1,
        event_id=options.get("event_id"),
        topic=options.get("topic"),
        priority=options.get("priority"),
        enqueued_at_ms=message.message_timestamp,
        payload={"args": list(message.args), "kwargs": dict(message.kwargs)},
    )


def list_jobs(
    cp: ControlPlane, queue: str, state: JobState | str, *, limit: int = 50, cursor: str | None = None
) -> Page[JobRecord]:
    """Jobs of ``queue`` in ``state``, newest first (by the time they entered it)."""
    cp.require_queue(queue)
    st = parse_state(state)
    if not 1 <= limit <= 1000:
        raise EventBusError(f"limit must be between 1 and 1000, got {limit}")
    top, skip = decode_cursor(cursor)
    items: list[JobRecord] = []
    scores: list[float] = []
    start = skip
    while len(items) < limit:
        rows = cp.store.job_ids(queue, st, top, start, limit + 1)
        if not rows:
            break
        records = cp.store.get(member for member, _ in rows)
        for (_, score), record in zip(rows, records):
            if len(items) == limit:
                return Page(items, next_cursor(scores, (top, skip)))
            scores.append(score)
            if record is not None and record.state == st:  # skip records expired since the listing
                items.append(record)
        start += len(rows)
    return Page(items, None)


def retry_job(cp: ControlPlane, job_id: str) -> JobRecord:
    """Run a dead job again (fresh attempts, same id); other states raise InvalidJobState."""
    record = get_job(cp, job_id)
    if record.state == JobState.DEAD:
        result = cp.requeue_dead_letters([job_id])
        if result.requeued:
            return cp.store.get([job_id])[0] or record
    if record.state == JobState.FAILED:
        raise InvalidJobState(
            f"job {job_id!r} failed and its dead letter was purged, so its message is gone; publish the event again"
        )
    raise InvalidJobState(f"job {job_id!r} is {record.state.value}; only dead (failed) jobs can be retried")


def retry_failed(cp: ControlPlane, queue: str, *, limit: int | None = None) -> list[str]:
    """Requeue the dead letters of ``queue`` (newest first, at most ``limit``); returns their job ids."""
    from eventbus.reports import DeadLetterFilter

    cp.require_queue(queue)
    return cp.requeue_dead_letters(match=DeadLetterFilter(queue=queue), limit=limit).requeued


def remove_job(cp: ControlPlane, job_id: str) -> JobRecord:
    """Delete a job: its record, and its message if it is waiting or dead. Returns the removed record."""
    record = get_job(cp, job_id)
    removed = cp.store.remove_waiting(record) if record.state == JobState.WAITING else None
    if removed is not None:
        if not removed:
            raise InvalidJobState(
                f"job {job_id!r} was already fetched by a worker; pause queue {record.queue!r} first, then remove it"
            )
    elif record.state == JobState.DEAD:
        cp.purge_dead_letters([job_id])
    elif not record.state.terminal:
        raise InvalidJobState(
            f"job {job_id!r} is {record.state.value} and a worker holds it; remove it once it is waiting or finished"
        )
    cp.store.delete_job(job_id, record.queue)
    return record


def clean(
    cp: ControlPlane,
    queue: str,
    *,
    older_than_s: float | None = None,
    state: JobState | str = JobState.COMPLETED,
    keep_last: int | None = None,
) -> int:
    """Remove completed, failed or cancelled records older than ``older_than_s`` or beyond the newest ``keep_last``."""
    cp.require_queue(queue)
    st = parse_state(state)
    if st not in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED):
        raise EventBusError(
            f"clean removes completed, failed or cancelled records, not {st.value}; "
            "use `eventbus dlq purge` for dead letters"
        )
    if older_than_s is None and keep_last is None:
        raise EventBusError("clean needs older_than_s (e.g. --older-than 7d) or keep_last (e.g. --keep 1000)")
    removed = 0
    if older_than_s is not None:
        removed += cp.store.trim(queue, st, older_than_ms=now_ms() - int(older_than_s * 1000))
    if keep_last is not None:
        removed += cp.store.trim(queue, st, keep=keep_last)
    return removed
