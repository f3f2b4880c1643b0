"""A topic with a schema, for the HTTP publish tests."""

from __future__ import annotations

from pydantic import BaseModel, Field

from eventbus import topic


@topic("order.placed")
class OrderPlaced(BaseModel):
    """An order was placed."""

    order_id: int
    amount_cents: int = Field(ge=0)
    email: str
