"""Response bodies, and the error responses each route documents in the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every error answer: a stable code, a sentence naming the problem and the fix, and the fields at fault."""

    error: str = Field(description="Stable machine-readable code, e.g. 'unknown_topic'.")
    detail: str = Field(description="What went wrong and how to fix it.")
    fields: list[str] | None = Field(default=None, description="The input fields at fault (422 only).")


_MEANING = {
    400: "The body cannot be decoded (not UTF-8 JSON), or the operation cannot use an argument (e.g. a cursor).",
    401: "Missing or wrong credentials (admin bearer token, or webhook signature).",
    404: "No such resource (topic, webhook source, queue, job, dead letter or path).",
    409: "The job (or email) is not in a state the operation applies to (e.g. retrying a completed job).",
    413: "The request body is larger than EVENTBUS_MAX_BODY_BYTES.",
    422: "Input failed validation; `fields` names what to fix.",
    500: "Unexpected server error; the body never carries internals, the server log has the traceback.",
    503: "The broker is unreachable, or is not Redis (the control plane needs it); nothing was done.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that can answer with these error status codes (500 is always added)."""
    return {code: {"model": ErrorBody, "description": _MEANING[code]} for code in sorted({*codes, 500})}
