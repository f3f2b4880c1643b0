"""Uncertain emails over HTTP: list them, and knowingly resend one (thin over :class:`ControlPlane`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query
from pydantic import BaseModel, Field

from eventbus.admin.auth import admin_router
from eventbus.admin.errors import register_error
from eventbus.admin.plane import control_plane
from eventbus.admin.responses import errors
from eventbus.control import ControlPlane, ResendResult, UncertainEmail
from eventbus.errors import NotUncertain, UncertainEmailNotFound

router = admin_router(tags=["mail"])
register_error(NotUncertain, 409, "not_uncertain")
register_error(UncertainEmailNotFound, 404, "uncertain_email_not_found")

Plane = Annotated[ControlPlane, Depends(control_plane)]
Key = Annotated[str, Path(min_length=1, max_length=500, description="The email's idempotency key.")]


class UncertainPage(BaseModel):
    items: list[UncertainEmail]
    next_cursor: str | None = Field(description="Pass back as ?cursor= for the next page; null on the last page.")


@router.get(
    "/api/mail/uncertain",
    response_model=UncertainPage,
    responses=errors(400, 422, 503),
    summary="Emails whose data went to SMTP with no reply recorded (not resent on their own), newest first",
)
def uncertain_emails(
    cp: Plane,
    limit: Annotated[int, Query(ge=1, le=1000, description="Items per page.")] = 50,
    cursor: Annotated[str | None, Query(max_length=200, description="The next_cursor of the previous page.")] = None,
) -> UncertainPage:
    page = cp.uncertain_emails(limit=limit, cursor=cursor)
    return UncertainPage(items=page.items, next_cursor=page.next_cursor)


@router.post(
    "/api/mail/uncertain/{key}/resend",
    response_model=ResendResult,
    responses=errors(404, 409, 422, 503),
    summary="Send an uncertain email again, knowingly (a duplicate if the first copy arrived)",
)
def resend_uncertain(cp: Plane, key: Key) -> ResendResult:
    return cp.resend_uncertain(key)
