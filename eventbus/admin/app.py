"""``create_app(settings)``: the ASGI app behind ``eventbus serve``, built from a list of routers."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, FastAPI

from eventbus.admin.errors import install_error_handlers
from eventbus.admin.limits import BodyLimitMiddleware
from eventbus.admin.routes import default_routers
from eventbus.admin.webhooks import declare_webhook_topics
from eventbus.app import import_modules
from eventbus.errors import ConfigError
from eventbus.settings import Settings

_DESCRIPTION = """Admin API of eventbus. Routes under `/api` need `Authorization: Bearer <EVENTBUS_ADMIN_TOKEN>`.
Errors are JSON: `{"error": code, "detail": what to fix, "fields": [...]}`. Request bodies above
EVENTBUS_MAX_BODY_BYTES (default 1 MiB) answer 413."""


def create_app(
    settings: Settings, *, routers: Sequence[APIRouter] | None = None, insecure_dev: bool = False
) -> FastAPI:
    """The admin app; imports the subscriber modules a worker imports, so it knows the same topics.

    Publishing uses the process-wide broker (``eventbus.broker.get_broker``). Without an admin token
    it refuses to build unless ``insecure_dev`` (then /api is open: bind it to loopback only).
    """
    if not settings.admin_token and not insecure_dev:
        raise ConfigError(
            "EVENTBUS_ADMIN_TOKEN is not set; set it to a long random string "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))'), or use --insecure-dev on loopback"
        )
    import_modules(settings)
    declare_webhook_topics(settings)
    app = FastAPI(title="eventbus", version=_version(), description=_DESCRIPTION, redoc_url=None)
    app.state.settings = settings
    app.state.insecure_dev = insecure_dev
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    for router in default_routers() if routers is None else routers:
        app.include_router(router)
    return app


def _version() -> str:
    try:
        return version("eventbus")
    except PackageNotFoundError:
        return "0"
