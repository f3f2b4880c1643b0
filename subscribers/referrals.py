"""referral.joined -> referral join (LOW); referral.milestone -> milestone celebration (CRITICAL)."""

from __future__ import annotations

from eventbus import Event, Priority, subscribe
from eventbus.mail import send_email


@subscribe("referral.joined", priority=Priority.LOW)
def referral_joined(event: Event) -> None:
    """Tell the referrer someone joined."""
    p = event.payload
    send_email("referral_joined", p["referrer_email"], p, priority=Priority.LOW)


@subscribe("referral.milestone", priority=Priority.CRITICAL)
def referral_milestone(event: Event) -> None:
    """Celebrate a referral milestone."""
    p = event.payload
    send_email("referral_milestone", p["user_email"], p, priority=Priority.CRITICAL)
