"""model.progress_milestone -> progress update (LOW, bulk); model.rank_changed -> rank update (CRITICAL, bulk)."""

from __future__ import annotations

from eventbus import Event, Priority, subscribe
from eventbus.mail import send_bulk_email

_FIELDS_PROGRESS = ("model_id", "model_name", "milestone", "vote_count")
_FIELDS_RANK = ("model_id", "model_name", "new_rank", "old_rank", "vote_count")


@subscribe("model.progress_milestone", priority=Priority.LOW)
def progress_update(event: Event) -> None:
    """Every subscriber of the model, one email each."""
    p = event.payload
    context = {k: p[k] for k in _FIELDS_PROGRESS}
    send_bulk_email("progress_update", p["subscriber_emails"], context, priority=Priority.LOW)


@subscribe("model.rank_changed", priority=Priority.CRITICAL)
def rank_update(event: Event) -> None:
    """Every supporter of the model, one email each, ahead of any backlog."""
    p = event.payload
    context = {k: p[k] for k in _FIELDS_RANK}
    send_bulk_email("rank_update", p["supporter_emails"], context, priority=Priority.CRITICAL)
