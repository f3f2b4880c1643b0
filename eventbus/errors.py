"""Every error eventbus raises derives from :class:`EventBusError`."""

from __future__ import annotations


class EventBusError(Exception):
    """Root of every eventbus error; its message names the problem and the fix."""


class ConfigError(EventBusError):
    """A setting or environment variable has a value eventbus cannot use."""


class InvalidTopicName(EventBusError):
    """A topic name or subscription pattern is not lowercase dotted segments."""


class UnknownTopic(EventBusError):
    """Publishing to a topic nobody declared."""


class TopicAlreadyDeclared(EventBusError):
    """Two declarations of the same topic disagree."""


class PayloadInvalid(EventBusError):
    """A payload does not match its topic's schema."""


class PayloadNotSerializable(EventBusError):
    """A payload (or header) cannot be written as JSON."""


class SubscriptionError(EventBusError):
    """``@subscribe`` was given an option, pattern or name it cannot use."""


class PublishError(EventBusError):
    """The broker could not take the event; nothing was published."""


class UnknownSubscription(EventBusError):
    """A delivery names a subscription this worker process does not have."""


class AdminAuthError(EventBusError):
    """An admin API request lacks the bearer token, or carries a wrong one."""


class UnknownWebhookSource(EventBusError):
    """A webhook arrived for a source that has no secret configured."""


class WebhookRejected(EventBusError):
    """A webhook's signature or timestamp did not verify; nothing was published."""


class WebhookPayloadInvalid(EventBusError):
    """A verified webhook's body or delivery id cannot be read; nothing was published."""


class StoreBusy(EventBusError):
    """The SQLite file stayed locked by other writers for longer than the store waits."""


# mail and notifications


class TemplateNotFound(EventBusError):
    """``send_email`` or ``render`` named a template folder that does not exist."""


class TemplateError(EventBusError):
    """A template failed to render: a missing variable, a syntax error, or a bad subject."""


class InvalidAddress(EventBusError):
    """An email address is not a plain ``user@domain`` address."""


class HeaderInjection(EventBusError):
    """A header value (recipient, subject, reply-to, custom header) contains CR, LF or NUL."""


class MailError(EventBusError):
    """Bad arguments to ``send_email`` / ``send_bulk_email`` (attachments, headers, timing)."""


class SmtpPermanentError(EventBusError):
    """The SMTP server refused the email with a 5xx reply; it is not retried."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"SMTP {code} {text}; fix the address or the message, then send again")
        self.code = code
        self.text = text


class SmtpTemporaryError(EventBusError):
    """A 4xx reply or a dropped connection; the send is retried with backoff."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"SMTP {code} {text} (temporary; retrying with backoff)")
        self.code = code
        self.text = text


class NotificationError(EventBusError):
    """Bad arguments to ``notify`` or an unknown channel."""


# control plane (eventbus.control): faces map NotFound to 404 / exit 1, the rest to 400/409 / exit 2


class NotFound(EventBusError):
    """Something looked up by name or id does not exist (any more)."""


class JobNotFound(NotFound):
    """No ledger record for a job id (never seen, removed, or past its retention)."""


class QueueNotFound(NotFound):
    """A queue name no worker or job has used under this namespace."""


class DeadLetterNotFound(NotFound):
    """No dead letter with that job id (requeued, purged or expired)."""


class EventNotFound(NotFound):
    """A past event is no longer stored (older than EVENTBUS_EVENT_RETENTION_S, or the ledger was off)."""


class SubscriptionNotFound(NotFound):
    """No worker registered a subscription of that name, and this process does not have it either."""


class UncertainEmailNotFound(NotFound):
    """No uncertain email has that key (never uncertain, already resent, or its dead letter was purged)."""


class NotUncertain(EventBusError):
    """An operator asked to resend an email whose record does not say it is uncertain (sent, failed, in flight)."""


class InvalidJobState(EventBusError):
    """The operation does not apply to a job in its current state (e.g. retrying a completed job)."""


class ControlPlaneUnavailable(EventBusError):
    """The control plane needs an eventbus broker (Redis, SQLite or memory), which keeps a ledger."""


class MalformedMessage(EventBusError):
    """A message in the broker is not a JSON Dramatiq message a worker can run (it is dead-lettered)."""
