"""Builds brokers: the backend a URL names, with the eventbus middleware stack.

Installed as :func:`eventbus.broker.make_broker` when ``eventbus`` is imported, so the low-level
broker registry never imports the middleware (which reaches the mail, cron and control modules).
A fourth backend registers its URL scheme in :data:`SCHEMES`.
"""

from __future__ import annotations

from collections.abc import Callable

import dramatiq

from eventbus.broker import redact, set_factory
from eventbus.errors import ConfigError
from eventbus.middleware import default_middleware
from eventbus.settings import Settings


def _memory(settings: Settings, middleware: list[dramatiq.Middleware]) -> dramatiq.Broker:
    from eventbus.brokers.memory import MemoryBroker

    return MemoryBroker(middleware=middleware, settings=settings)


def _redis(settings: Settings, middleware: list[dramatiq.Middleware]) -> dramatiq.Broker:
    from eventbus.brokers.redis import RedisBroker

    return RedisBroker(
        url=settings.broker_url,
        namespace=settings.namespace,
        timeout_s=settings.publish_timeout_s,
        middleware=middleware,
        settings=settings,
    )


def _sqlite(settings: Settings, middleware: list[dramatiq.Middleware]) -> dramatiq.Broker:
    from eventbus.brokers.sqlite import SQLiteBroker

    return SQLiteBroker.from_url(
        settings.broker_url, namespace=settings.namespace, middleware=middleware, settings=settings
    )


# URL scheme -> the backend's constructor (imported on first use: a backend's client library loads only when used).
SCHEMES: dict[str, Callable[[Settings, list[dramatiq.Middleware]], dramatiq.Broker]] = {
    "memory": _memory,
    "redis": _redis,
    "rediss": _redis,
    "unix": _redis,
    "sqlite": _sqlite,
}


def build_broker(settings: Settings) -> dramatiq.Broker:
    """A new broker for ``settings.broker_url`` with the eventbus middleware stack."""
    url = settings.broker_url
    scheme = url.split("://", 1)[0] if "://" in url else ""
    build = SCHEMES.get(scheme)
    if build is None:
        raise ConfigError(
            f"unsupported broker URL {redact(url)!r}; use sqlite:///path.db, redis://host:port/db or memory:// "
            "(set EVENTBUS_BROKER_URL or REDIS_URL)"
        )
    return build(settings, default_middleware(settings))


set_factory(build_broker)
