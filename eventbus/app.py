"""Loading the application: subscriber modules, actors and queues, the same way in every process."""

from __future__ import annotations

import importlib
import logging

import dramatiq

from eventbus.affinity import pin_worker_process
from eventbus.broker import describe, get_broker
from eventbus.delivery import EVENTS_QUEUE, install_actors
from eventbus.errors import ConfigError
from eventbus.settings import Settings, get_settings
from eventbus.subscriber import all_subscriptions

logger = logging.getLogger("eventbus")


def import_modules(settings: Settings) -> None:
    """Import ``eventbus.subscribers`` (the defaults, unless turned off) and every EVENTBUS_SUBSCRIBERS module."""
    names = (["eventbus.subscribers"] if settings.default_subscribers else []) + list(settings.subscriber_modules)
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(
                f"cannot import subscriber module {name!r} ({exc}); check EVENTBUS_SUBSCRIBERS and PYTHONPATH"
            ) from exc


def declare_queues(broker: dramatiq.Broker, settings: Settings) -> list[str]:
    """Declare the events queue, the default queue and every subscription's queue; returns them."""
    queues = {EVENTS_QUEUE, settings.default_queue}
    queues.update(s.queue for s in all_subscriptions() if s.queue)
    for queue in sorted(queues):
        broker.declare_queue(queue)
    return sorted(queues)


def install_extra_actors(broker: dramatiq.Broker) -> None:
    """Actors of the feature packages: email sends and notifications."""
    from eventbus.mail.job import install_actors as install_mail
    from eventbus.notifications.job import install_actors as install_notifications

    install_mail(broker)
    install_notifications(broker)


def load_worker() -> dramatiq.Broker:
    """Everything a worker process needs, in order: broker, actors, subscriber modules, queues."""
    settings = get_settings()
    if settings.pin_workers:  # before the worker starts its threads
        pin_worker_process()
    broker = get_broker()
    install_actors(broker)
    install_extra_actors(broker)
    import_modules(settings)
    queues = declare_queues(broker, settings)
    logger.info(
        "eventbus worker: broker %s; queues %s; %d subscriptions",
        describe(broker),
        ", ".join(queues),
        len(all_subscriptions()),
    )
    return broker
