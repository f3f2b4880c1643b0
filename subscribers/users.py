"""user.registered -> welcome and verification emails (HIGH) and an in-app notification."""

from __future__ import annotations

from eventbus import Event, Priority, subscribe
from eventbus.mail import send_email
from eventbus.notifications import notify


@subscribe("user.registered", priority=Priority.HIGH)
def welcome_user(event: Event) -> None:
    """Welcome, verification (when the payload has a verification_url), and a welcome notification.

    The in-app inbox is keyed by the user's email (the payload carries no user id).
    """
    p = event.payload
    send_email("welcome", p["email"], p, priority=Priority.HIGH)
    if p.get("verification_url"):
        send_email("verification", p["email"], p, priority=Priority.HIGH)
    notify(p["email"], f"Welcome, {p['name']}!", "Your account is ready.", kind="welcome", channels=["inbox"])
