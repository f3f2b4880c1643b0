"""The routers ``create_app`` mounts, one module per area; later areas append theirs here."""

from __future__ import annotations

from fastapi import APIRouter


def default_routers() -> list[APIRouter]:
    """Every router of the admin app, in mount order."""
    from eventbus.admin.routes import control, dashboard, events, mail, metrics, topics, webhooks

    return [
        control.public,
        control.router,
        mail.router,
        topics.router,
        events.router,
        webhooks.router,
        metrics.router,
        dashboard.router,
    ]
