"""The admin bearer token: every ``/api`` route but health depends on :func:`require_admin`."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from eventbus.admin.responses import errors
from eventbus.errors import AdminAuthError

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="adminToken",
    description="The value of EVENTBUS_ADMIN_TOKEN, sent as 'Authorization: Bearer <token>'.",
)


def require_admin(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
) -> None:
    """Let the request through only with the admin token (compared in constant time)."""
    expected: str = request.app.state.settings.admin_token
    if not expected and request.app.state.insecure_dev:
        return
    if credentials is None:
        raise AdminAuthError("missing admin token; send 'Authorization: Bearer <EVENTBUS_ADMIN_TOKEN>'")
    if not expected or not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise AdminAuthError("wrong admin token; send the value of EVENTBUS_ADMIN_TOKEN as the bearer token")


class AdminRoute(APIRoute):
    """Checks the token before FastAPI reads the body, so a bad body never answers before the 401."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            require_admin(request, await _bearer(request))
            return await handler(request)

        return guarded


def admin_router(**kwargs: Any) -> APIRouter:
    """An APIRouter whose every route needs the admin token (and documents it and the 401)."""
    responses = {**errors(401), **kwargs.pop("responses", {})}
    # The dependency puts the bearer scheme in the OpenAPI schema; AdminRoute enforces it first.
    return APIRouter(route_class=AdminRoute, dependencies=[Depends(require_admin)], responses=responses, **kwargs)
