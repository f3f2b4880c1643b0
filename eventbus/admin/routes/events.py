"""``POST /api/events/{topic}``: publish from another service; the JSON body is the payload."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import Body, Path, Query
from pydantic import BaseModel, Field

from eventbus.admin.auth import admin_router
from eventbus.admin.responses import errors
from eventbus.bus import publish_event
from eventbus.priority import Priority

router = admin_router(tags=["events"])

MAX_DELAY_S = 366 * 86_400
TOPIC_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"


class Published(BaseModel):
    event_id: str = Field(description="The event id (the given event_id, or a new time-sortable ULID).")
    topic: str


@router.post(
    "/api/events/{topic}",
    status_code=202,
    response_model=Published,
    responses=errors(400, 404, 413, 422, 503),
    summary="Publish an event",
    description=(
        "Validates the JSON body against the topic's schema and writes the event; subscribers run in workers. "
        "Options are query parameters. The same `event_id` twice within the dedup window publishes once "
        "(both calls answer 202 with that id). 404: unknown topic (with a did-you-mean hint); "
        "422: invalid topic name or payload, `fields` names the payload fields at fault; 400: body not UTF-8 JSON; "
        "503: broker down."
    ),
)
def publish(
    topic: Annotated[str, Path(pattern=TOPIC_PATTERN, description="A declared topic, e.g. 'vote.created'.")],
    payload: Annotated[dict[str, Any], Body(description="The event payload: a JSON object.")],
    priority: Annotated[Priority | None, Query(description="Delivery priority (default: the subscription's).")] = None,
    delay_s: Annotated[
        float | None,
        Query(ge=0, le=MAX_DELAY_S, allow_inf_nan=False, description="Deliver after this many seconds."),
    ] = None,
    event_id: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="Idempotency key: the same id publishes once."),
    ] = None,
) -> Published:
    delay = timedelta(seconds=delay_s) if delay_s is not None else None
    event = publish_event(topic, payload, priority=priority, delay=delay, event_id=event_id)
    return Published(event_id=event.id, topic=event.topic)
