"""The process-wide broker, built once from settings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

import dramatiq

from eventbus.brokers import BusBroker
from eventbus.encoder import JSONEncoder
from eventbus.errors import ConfigError
from eventbus.settings import Settings, get_settings

logger = logging.getLogger("eventbus")

_broker: dramatiq.Broker | None = None


BrokerFactory = Callable[[Settings], dramatiq.Broker]

_factory: BrokerFactory | None = None


def set_factory(factory: BrokerFactory) -> None:
    """Install what :func:`make_broker` calls (``eventbus.factory`` installs itself on ``import eventbus``)."""
    global _factory
    _factory = factory


def make_broker(settings: Settings) -> dramatiq.Broker:
    """A new broker for ``settings.broker_url`` with the eventbus middleware stack."""
    if _factory is None:
        raise ConfigError("no broker factory is installed; import eventbus (it installs eventbus.factory)")
    return _factory(settings)


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
        raise ConfigError(
            f"{type(broker).__name__} is not an eventbus broker (it needs enqueue_many and stores); "
            "use one from eventbus.brokers"
        )
    _broker = broker
    if broker is not None:
        dramatiq.set_encoder(JSONEncoder())
        dramatiq.set_broker(broker)


def describe(broker: dramatiq.Broker) -> str:
    """One line naming the broker for start-up logs, without secrets."""
    stores = cast(BusBroker, broker).stores
    return f"{type(broker).__name__} {stores.location()} namespace={stores.namespace!r}"


def redact(url: str) -> str:
    """``url`` without its credentials."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
