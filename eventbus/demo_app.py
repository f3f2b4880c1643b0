"""Loaded into the demo's worker next to the default subscribers: one subscriber that always fails."""

from __future__ import annotations

from eventbus import Event, subscribe


@subscribe("reward.earned", name="demo.partner_api", max_retries=2, min_backoff_ms=200)
def partner_api(event: Event) -> None:
    """Stands for a flaky partner integration, so the demo has a dead letter to show."""
    raise ConnectionError("partner API unreachable (the demo's deliberately failing subscriber)")
