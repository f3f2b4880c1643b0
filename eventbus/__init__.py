"""eventbus: publish events, fan them out to subscribers, run the work on Dramatiq."""

__version__ = "0.2.0.dev0"  # the one place the version lives (pyproject.toml reads it)

# built-in topics are declared on import; eventbus.factory installs make_broker
from eventbus import factory as factory
from eventbus import signals, topics
from eventbus.bus import publish_event, publish_many
from eventbus.control import ControlPlane, DeadLetterFilter, HealthStatus
from eventbus.cron import add_schedule, schedule
from eventbus.errors import (
    ConfigError,
    DeadLetterNotFound,
    EventBusError,
    EventNotFound,
    HeaderInjection,
    InvalidAddress,
    InvalidJobState,
    InvalidTopicName,
    JobNotFound,
    MailError,
    NotFound,
    NotificationError,
    PayloadInvalid,
    PayloadNotSerializable,
    PublishError,
    QueueNotFound,
    SmtpPermanentError,
    SmtpTemporaryError,
    SubscriptionError,
    SubscriptionNotFound,
    TemplateError,
    TemplateNotFound,
    TopicAlreadyDeclared,
    UnknownSubscription,
    UnknownTopic,
)
from eventbus.event import Event
from eventbus.ledger import JobState
from eventbus.mail import Attachment, get_send_record, render, send_bulk_email, send_email
from eventbus.notifications import notify
from eventbus.priority import Priority
from eventbus.queues import QueueConfig
from eventbus.scheduling import cancel, scheduled, schedules
from eventbus.settings import Settings, get_settings, set_settings
from eventbus.subscriber import Subscription, subscribe
from eventbus.topic import Topic, declare_topic, topic

__all__ = [
    "__version__",
    # publishing
    "publish_event",
    "publish_many",
    "Event",
    "Priority",
    # scheduling: list/cancel delayed work by id; recurring schedules
    "scheduled",
    "cancel",
    "schedule",
    "add_schedule",
    "schedules",
    # topics and subscriptions
    "topic",
    "declare_topic",
    "Topic",
    "subscribe",
    "Subscription",
    "signals",
    # mail and notifications
    "send_email",
    "send_bulk_email",
    "render",
    "Attachment",
    "get_send_record",
    "notify",
    "topics",
    # control plane (stats, jobs, dead letters, replay, pause/resume, clean, health)
    "ControlPlane",
    "JobState",
    "DeadLetterFilter",
    "HealthStatus",
    # configuration
    "Settings",
    "get_settings",
    "set_settings",
    "QueueConfig",
    # errors
    "EventBusError",
    "ConfigError",
    "InvalidTopicName",
    "UnknownTopic",
    "TopicAlreadyDeclared",
    "PayloadInvalid",
    "PayloadNotSerializable",
    "SubscriptionError",
    "UnknownSubscription",
    "PublishError",
    "TemplateNotFound",
    "TemplateError",
    "InvalidAddress",
    "HeaderInjection",
    "MailError",
    "SmtpPermanentError",
    "SmtpTemporaryError",
    "NotificationError",
    "NotFound",
    "JobNotFound",
    "QueueNotFound",
    "DeadLetterNotFound",
    "EventNotFound",
    "SubscriptionNotFound",
    "InvalidJobState",
]
