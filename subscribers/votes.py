"""vote.created -> vote confirmation to the voter (NORMAL)."""

from __future__ import annotations

from eventbus import Event, Priority, subscribe
from eventbus.mail import send_email


@subscribe("vote.created", priority=Priority.NORMAL)
def confirm_vote(event: Event) -> None:
    """One confirmation per vote; a redelivered event sends nothing new (default idempotency key)."""
    p = event.payload
    send_email("vote_confirmation", p["voter_email"], p, priority=Priority.NORMAL)
