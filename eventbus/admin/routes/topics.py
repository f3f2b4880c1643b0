"""``GET /api/topics``: declared topics with their JSON Schemas and the subscriptions this process knows."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field

from eventbus.admin.auth import admin_router
from eventbus.settings import Settings
from eventbus.subscriber import Subscription, all_subscriptions
from eventbus.topic import all_topics

router = admin_router(tags=["topics"])


class SubscriptionOut(BaseModel):
    name: str
    pattern: str = Field(description="Topic name, 'prefix.*' or '*'.")
    queue: str
    priority: str
    max_retries: int = Field(description="Retries of each delivery: the subscription's own, else its queue's rule.")


class TopicOut(BaseModel):
    name: str
    description: str
    payload_schema: dict[str, Any] | None = Field(
        alias="schema", description="JSON Schema of the payload; null means any JSON object."
    )
    subscriptions: list[str] = Field(description="Names of the subscriptions that receive this topic.")

    model_config = {"populate_by_name": True, "serialize_by_alias": True}


class TopicsOut(BaseModel):
    topics: list[TopicOut]
    subscriptions: list[SubscriptionOut] = Field(description="Every subscription imported by the server process.")


def topic_catalog(settings: Settings) -> TopicsOut:
    """Topics and subscriptions as declared in this process (the modules a worker imports)."""
    subs = all_subscriptions()
    return TopicsOut(
        topics=[
            TopicOut.model_validate(
                {
                    "name": t.name,
                    "description": t.description,
                    "schema": t.schema.model_json_schema() if t.schema else None,
                    "subscriptions": [s.name for s in subs if s.matches(t.name)],
                }
            )
            for t in all_topics()
        ],
        subscriptions=[_subscription(s, settings) for s in subs],
    )


def _subscription(sub: Subscription, settings: Settings) -> SubscriptionOut:
    queue = sub.queue or settings.default_queue
    return SubscriptionOut(
        name=sub.name,
        pattern=sub.pattern,
        queue=queue,
        priority=sub.priority.value,
        max_retries=settings.queue_config(queue).max_retries if sub.max_retries is None else sub.max_retries,
    )


@router.get("/api/topics", response_model=TopicsOut, summary="List topics, payload schemas and subscriptions")
def list_topics(request: Request) -> TopicsOut:
    return topic_catalog(request.app.state.settings)
