"""The process-wide broker, built once from settings."""

from __future__ import annotations

import logging

import dramatiq

from eventbus.brokers import BusBroker
from eventbus.encoder import JSONEncoder
from eventbus.errors import ConfigError
from eventbus.middleware import default_middleware
from eventbus.settings import Settings, get_settings

logger = logging.getLogger("eventbus")

_broker: dramatiq.Broker | None = None


def make_broker(settings: Settings) -> dramatiq.Broker:
    """A new broker for ``settings.broker_url`` with the eventbus middleware stack."""
    url = settings.broker_url
    middleware = default_middleware(settings)
    if url.startswith("memory://"):
        from eventbus.brokers.memory import MemoryBroker

        return MemoryBroker(middleware=middleware, settings=settings)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from eventbus.brokers.redis import RedisBroker

        return RedisBroker(
            url=url, namespace=settings.namespace, timeout_s=settings.publish_timeout_s, middleware=middleware
        )
    if url.startswith("sqlite://"):
        from eventbus.brokers.sqlite import SQLiteBroker

        return SQLiteBroker.from_url(url, namespace=settings.namespace, middleware=middleware)
    raise ConfigError(
        f"unsupported broker URL {_redact(url)!r}; use sqlite:///path.db, redis://host:port/db or memory:// "
        "(set EVENTBUS_BROKER_URL or REDIS_URL)"
    )


def get_broker() -> dramatiq.Broker:
    """The process-wide broker, created from the settings on first use."""
    global _broker
    if _broker is None:
        set_broker(make_broker(get_settings()))
    assert _broker is not None
    return _broker


def set_broker(broker: dramatiq.Broker | None) -> None:
    """Make ``broker`` the process-wide broker (also Dramatiq's global one); None forgets it."""
    global _broker
    if broker is not None and not isinstance(broker, BusBroker):
        raise ConfigError(f"{type(broker).__name__} lacks enqueue_many; use a broker from eventbus.brokers")
    _broker = broker
    if broker is not None:
        dramatiq.set_encoder(JSONEncoder())
        dramatiq.set_broker(broker)


def describe(broker: dramatiq.Broker) -> str:
    """One line naming the broker for start-up logs, without secrets."""
    url = getattr(broker, "url", None)
    namespace = getattr(broker, "namespace", "")
    path = getattr(broker, "path", None)
    where = f"file={path}" if path is not None else (_redact(url) if url else "")
    return f"{type(broker).__name__} {where} namespace={namespace!r}".replace("  ", " ")


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
