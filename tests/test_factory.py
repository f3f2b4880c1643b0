"""A backend is one package plus one URL scheme: ``eventbus.factory.SCHEMES`` builds the broker for a URL."""

from __future__ import annotations

from dataclasses import replace

import dramatiq
import pytest

from eventbus import declare_topic, publish_event
from eventbus.broker import make_broker, set_broker
from eventbus.brokers.memory import MemoryBroker
from eventbus.control import ControlPlane
from eventbus.delivery import EVENTS_QUEUE
from eventbus.errors import ConfigError
from eventbus.factory import SCHEMES
from eventbus.settings import Settings, set_settings

declare_topic("factory.happened")


class ScratchBroker(MemoryBroker):
    """Stands for a fourth backend: registered under its own scheme, nothing else changed."""


def test_a_registered_scheme_builds_its_broker_with_the_middleware_and_the_whole_contract():
    # Given a backend registered under the scheme scratch://
    SCHEMES["scratch"] = lambda settings, middleware: ScratchBroker(middleware=middleware, settings=settings)
    settings = replace(Settings(), broker_url="scratch://", default_subscribers=False)
    set_settings(settings)
    try:
        # When the bus is built for a scratch:// URL
        broker = make_broker(settings)
        set_broker(broker)
        # Then it is that backend, with the eventbus middleware, and events go through its stores
        assert isinstance(broker, ScratchBroker)
        assert any(type(m).__name__ == "Ledger" for m in broker.middleware)
        publish_event("factory.happened", {"n": 1})
        assert ControlPlane(broker, settings).stats().queue(EVENTS_QUEUE).waiting == 1
        broker.close()
    finally:
        del SCHEMES["scratch"]
        set_broker(None)
        set_settings(None)


@pytest.mark.parametrize("url", ["scratch://", "postgres://localhost/x", "not a url"])
def test_an_unknown_scheme_is_refused_naming_the_ones_that_work(url):
    with pytest.raises(
        ConfigError, match=r"unsupported broker URL .*sqlite:///path\.db, redis://host:port/db or memory://"
    ):
        make_broker(replace(Settings(), broker_url=url))


def test_a_broker_built_by_the_factory_is_a_dramatiq_broker():
    broker = make_broker(replace(Settings(), broker_url="memory://"))
    assert isinstance(broker, dramatiq.Broker)
    broker.close()
