"""reward.earned -> reward delivery (HIGH)."""

from __future__ import annotations

from eventbus import Event, Priority, subscribe
from eventbus.mail import send_email


@subscribe("reward.earned", priority=Priority.HIGH)
def deliver_reward(event: Event) -> None:
    """Tell the user what they earned."""
    p = event.payload
    send_email("reward_delivery", p["user_email"], p, priority=Priority.HIGH)
