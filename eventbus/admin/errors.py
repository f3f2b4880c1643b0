"""Exception handlers: every error is a JSON :class:`ErrorBody`, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match

from eventbus.errors import (
    AdminAuthError,
    ConfigError,
    ControlPlaneUnavailable,
    DeadLetterNotFound,
    EventBusError,
    EventNotFound,
    InvalidJobState,
    InvalidTopicName,
    JobNotFound,
    NotFound,
    PayloadInvalid,
    PayloadNotSerializable,
    PublishError,
    QueueNotFound,
    SubscriptionNotFound,
    UnknownTopic,
    UnknownWebhookSource,
    WebhookPayloadInvalid,
    WebhookRejected,
)

logger = logging.getLogger("eventbus.admin")

# Most specific first; later steps add theirs with register_error().
_STATUS: list[tuple[type[EventBusError], int, str]] = [
    (AdminAuthError, 401, "unauthorized"),
    (WebhookRejected, 401, "bad_signature"),
    (UnknownWebhookSource, 404, "unknown_webhook_source"),
    (UnknownTopic, 404, "unknown_topic"),
    (InvalidTopicName, 422, "invalid_topic_name"),
    (PayloadInvalid, 422, "payload_invalid"),
    (PayloadNotSerializable, 422, "payload_not_serializable"),
    (WebhookPayloadInvalid, 422, "webhook_payload_invalid"),
    (PublishError, 503, "broker_unavailable"),
    (JobNotFound, 404, "job_not_found"),
    (QueueNotFound, 404, "queue_not_found"),
    (DeadLetterNotFound, 404, "dead_letter_not_found"),
    (EventNotFound, 404, "event_not_found"),
    (SubscriptionNotFound, 404, "subscription_not_found"),
    (NotFound, 404, "not_found"),
    (InvalidJobState, 409, "invalid_job_state"),
    (ControlPlaneUnavailable, 503, "control_plane_unavailable"),
    (ConfigError, 500, "server_misconfigured"),
]
_HTTP_CODES = {400: "body_unreadable", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


def register_error(exc_type: type[EventBusError], status: int, code: str) -> None:
    """Answer ``exc_type`` with ``status`` and error ``code`` (for modules that add their own errors)."""
    _STATUS.insert(0, (exc_type, status, code))


def error_response(status: int, code: str, detail: str, *, fields: list[str] | None = None, **kw: Any) -> JSONResponse:
    """The JSON error answer every handler (and the body-size limit) sends."""
    body: dict[str, Any] = {"error": code, "detail": detail}
    if fields is not None:
        body["fields"] = fields
    return JSONResponse(body, status_code=status, **kw)


async def _bus_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EventBusError)
    status, code = next(((s, c) for t, s, c in _STATUS if isinstance(exc, t)), (400, "bad_request"))
    if status >= 500 and not isinstance(exc, (PublishError, ControlPlaneUnavailable)):
        logger.error("%s %s: %s", request.method, request.url.path, exc)
        return error_response(status, code, "the server is misconfigured; see the server log")
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AdminAuthError) else None
    if isinstance(exc, PublishError):
        headers = {"Retry-After": "5"}
    return error_response(status, code, str(exc), fields=_payload_fields(exc), headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields, parts = [], []
    for error in exc.errors()[:10]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "request"
        fields.append(where)
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return error_response(422, "request_invalid", "; ".join(parts), fields=fields)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    detail = str(exc.detail)
    headers = exc.headers
    if exc.status_code == 400:  # FastAPI's only 400: a body it cannot decode (e.g. not UTF-8)
        detail = f"{detail}; send a UTF-8 encoded JSON object"
    if exc.status_code == 405:  # Starlette names the first route's methods only; a path may have several routes
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    return error_response(exc.status_code, code, detail, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, BaseRoute) and route.matches(request.scope)[0] != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _redis_error(request: Request, exc: Exception) -> JSONResponse:
    # A control-plane read or write that lost Redis: nothing half-done is reported as done.
    logger.warning("%s %s: Redis error: %s", request.method, request.url.path, exc)
    return error_response(
        503, "broker_unavailable", "cannot reach Redis; is it running at EVENTBUS_BROKER_URL / REDIS_URL?",
        headers={"Retry-After": "5"},
    )  # fmt: skip


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error in %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "unexpected server error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception to a JSON answer."""
    app.add_exception_handler(EventBusError, _bus_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(redis.RedisError, _redis_error)
    app.add_exception_handler(Exception, _unexpected)


def _payload_fields(exc: EventBusError) -> list[str] | None:
    # Topic.validate raises PayloadInvalid "from None": the pydantic error is still its __context__.
    if isinstance(exc, InvalidTopicName):
        return ["path.topic"]
    context = exc.__context__
    if isinstance(exc, PayloadInvalid) and isinstance(context, ValidationError):
        return [".".join(str(p) for p in e["loc"]) or "payload" for e in context.errors()[:10]]
    return None
