"""What each ``Settings`` field is: the variables that set it, what it means, whether it is secret.

One entry per field of :class:`eventbus.settings.Settings`, keyed by field name. Types and defaults
are not repeated here: they come from the dataclass itself (see :func:`type_of`). The variables of an
entry are in the order ``Settings.from_env`` prefers them: the primary name first, aliases after.
``docs/configuration.md`` is generated from this table (``scripts/gen_config_docs``) and
``eventbus config`` reads it to show where each value came from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from eventbus.settings import Settings

BUS = "Broker and bus"
HTTP = "HTTP admin API and webhooks"
FAULTS = "Faults: outbox, bad messages, reconnection"
MAIL = "Email"
NOTIFY = "Notifications"
QUEUES = "Queues: scheduling, limits, crash recovery"
CONTROL = "Control plane: job ledger, retention, health"


@dataclass(frozen=True)
class SettingDoc:
    """How one setting is set and what it does."""

    section: str
    env: tuple[str, ...]  # primary first, then aliases; empty: set in code only
    meaning: str
    secret: bool = False  # its value is never shown


def _doc(section: str, env: str, meaning: str, *, secret: bool = False) -> SettingDoc:
    return SettingDoc(section, tuple(env.split()), meaning, secret)


SETTINGS: dict[str, SettingDoc] = {
    "broker_url": _doc(
        BUS,
        "EVENTBUS_BROKER_URL REDIS_URL REDIS_HOST REDIS_PORT REDIS_PASSWORD REDIS_DB EVENTBUS_SQLITE_PATH",
        "`sqlite:///path.db`, `redis://host:port/db` or `memory://`; see [choosing the broker](#choosing-the-broker)",
    ),
    "namespace": _doc(BUS, "EVENTBUS_NAMESPACE", "prefix of every key the bus writes in Redis"),
    "publish_timeout_s": _doc(
        BUS, "EVENTBUS_PUBLISH_TIMEOUT_S", "`publish_event` raises `PublishError` after this long"
    ),
    "dedup_window_s": _doc(BUS, "EVENTBUS_DEDUP_WINDOW_S", "window for repeated `event_id`s and fan-out claims"),
    "default_queue": _doc(BUS, "EVENTBUS_DEFAULT_QUEUE", "queue of subscriptions that name none"),
    "max_retries": _doc(
        BUS, "JOB_MAX_RETRIES", "retries of a job after its first run, unless its queue says otherwise"
    ),
    "min_backoff_ms": _doc(BUS, "JOB_RETRY_DELAY", "first retry delay in ms, doubling after each failure"),
    "max_backoff_ms": _doc(BUS, "", "longest retry delay in ms"),
    "subscriber_modules": _doc(BUS, "EVENTBUS_SUBSCRIBERS", "comma-separated modules a worker imports"),
    "shutdown_timeout_s": _doc(BUS, "EVENTBUS_SHUTDOWN_TIMEOUT_S", "how long a stopping worker lets jobs finish"),
    "default_subscribers": _doc(BUS, "EVENTBUS_DEFAULT_SUBSCRIBERS", "import the built-in `eventbus.subscribers`"),
    "worker_threads": _doc(BUS, "QUEUE_CONCURRENCY", "threads per worker process when `-t` is not given (0: 8)"),
    "pin_workers": _doc(BUS, "EVENTBUS_PIN_WORKERS", "pin each worker process to a CPU of its own"),
    "admin_token": _doc(HTTP, "EVENTBUS_ADMIN_TOKEN", "bearer token of the admin API and dashboard", secret=True),
    "max_body_bytes": _doc(HTTP, "EVENTBUS_MAX_BODY_BYTES", "largest request body `eventbus serve` accepts"),
    "webhook_secrets": _doc(
        HTTP,
        "EVENTBUS_WEBHOOK_SECRET_<SOURCE>",
        "signing secret of inbound webhook source `<SOURCE>` (upper case, `-` as `_`)",
        secret=True,
    ),
    "max_message_bytes": _doc(FAULTS, "EVENTBUS_MAX_MESSAGE_BYTES", "larger messages are dead-lettered as malformed"),
    "outbox_path": _doc(
        FAULTS, "EVENTBUS_OUTBOX", "SQLite file where events, emails and notifications wait while the broker is down"
    ),
    "reconnect_delay_s": _doc(
        FAULTS, "EVENTBUS_RECONNECT_DELAY_S", "wait between tries to reach a broker that is down"
    ),
    "smtp_host": _doc(MAIL, "SMTP_HOST", "SMTP server"),
    "smtp_port": _doc(MAIL, "SMTP_PORT", "SMTP port"),
    "smtp_user": _doc(MAIL, "SMTP_USER", "SMTP login (none: no login)"),
    "smtp_pass": _doc(MAIL, "SMTP_PASS SMTP_PASSWORD", "SMTP password", secret=True),
    "smtp_from": _doc(MAIL, "SMTP_FROM", "sender address of every email"),
    "smtp_tls": _doc(MAIL, "SMTP_TLS", "connect with TLS from the start (port 465)"),
    "smtp_starttls": _doc(MAIL, "SMTP_STARTTLS", "upgrade with STARTTLS (unset: when the server offers it)"),
    "smtp_timeout_s": _doc(MAIL, "SMTP_TIMEOUT_S", "SMTP connect and command timeout"),
    "smtp_verify_certs": _doc(MAIL, "SMTP_VERIFY_CERTS", "check the SMTP server's certificate"),
    "smtp_pool_size": _doc(MAIL, "SMTP_POOL_SIZE", "SMTP connections kept per worker process (0: one per email)"),
    "app_url": _doc(MAIL, "APP_URL FRONTEND_URL", "base URL of links in emails"),
    "templates_dirs": _doc(
        MAIL, "EVENTBUS_TEMPLATES_DIR", "your template folders (`:`-separated), searched before the built-in ones"
    ),
    "mail_chunk_size": _doc(MAIL, "MAIL_CHUNK_SIZE", "emails per job of a bulk send"),
    "mail_record_ttl_s": _doc(MAIL, "MAIL_RECORD_TTL_S", "how long send records (idempotency keys) are kept"),
    "notify_webhook_url": _doc(NOTIFY, "NOTIFY_WEBHOOK_URL", "URL the webhook channel posts notifications to"),
    "notify_webhook_secret": _doc(
        NOTIFY, "NOTIFY_WEBHOOK_SECRET", "key signing those posts (`X-Eventbus-Signature`)", secret=True
    ),
    "inbox_max_items": _doc(NOTIFY, "INBOX_MAX_ITEMS", "in-app notifications kept per user"),
    "scheduler_poll_ms": _doc(QUEUES, "EVENTBUS_SCHEDULER_POLL_MS", "how often due scheduled messages are released"),
    "heartbeat_interval_s": _doc(QUEUES, "EVENTBUS_HEARTBEAT_INTERVAL_S", "how often a worker writes its heartbeat"),
    "heartbeat_timeout_s": _doc(
        QUEUES, "EVENTBUS_HEARTBEAT_TIMEOUT_S", "a worker silent this long is dead; its jobs come back"
    ),
    "max_lost_deliveries": _doc(
        QUEUES, "EVENTBUS_MAX_LOST_DELIVERIES", "a message that killed this many workers is dead-lettered"
    ),
    "suspect_spread_ms": _doc(QUEUES, "EVENTBUS_SUSPECT_SPREAD_MS", "spacing of jobs returned from a dead worker"),
    "rate_limit_max_wait_ms": _doc(
        QUEUES, "EVENTBUS_RATE_LIMIT_MAX_WAIT_MS", "longest sleep for a rate-limit slot before the job is requeued"
    ),
    "concurrency_wait_ms": _doc(
        QUEUES, "EVENTBUS_CONCURRENCY_WAIT_MS", "longest wait for a concurrency slot before the job is requeued"
    ),
    "queues": _doc(QUEUES, "<NAME>_QUEUE_*", "per-queue concurrency caps, rate limits and retries"),
    "ledger": _doc(CONTROL, "EVENTBUS_LEDGER", "keep a ledger record of every job"),
    "keep_completed": _doc(
        CONTROL,
        "EVENTBUS_KEEP_COMPLETED QUEUE_REMOVE_ON_COMPLETE",
        "how many completed job records each queue keeps (the newest)",
    ),
    "keep_failed": _doc(
        CONTROL,
        "EVENTBUS_KEEP_FAILED QUEUE_REMOVE_ON_FAIL",
        "how many failed job records each queue keeps (the newest)",
    ),
    "completed_max_age_s": _doc(CONTROL, "EVENTBUS_COMPLETED_MAX_AGE_S", "completed job records older are removed"),
    "failed_max_age_s": _doc(CONTROL, "EVENTBUS_FAILED_MAX_AGE_S", "failed job records older are removed"),
    "dead_letter_ttl_s": _doc(CONTROL, "EVENTBUS_DEAD_LETTER_TTL_S", "dead letters older are purged"),
    "event_retention_s": _doc(CONTROL, "EVENTBUS_EVENT_RETENTION_S", "how long published events are kept for replay"),
    "housekeeping_interval_s": _doc(
        CONTROL, "EVENTBUS_HOUSEKEEPING_INTERVAL_S", "how often workers apply the retention rules"
    ),
    "stats_interval_s": _doc(CONTROL, "EVENTBUS_STATS_INTERVAL_S", "how often workers log a stats block (0: never)"),
    "health_max_failed": _doc(
        CONTROL, "EVENTBUS_HEALTH_MAX_FAILED", "dead letters (all queues) above which health is degraded"
    ),
    "health_max_waiting": _doc(
        CONTROL, "EVENTBUS_HEALTH_MAX_WAITING", "waiting jobs (all queues) above which health is degraded"
    ),
    "redis_require_persistence": _doc(
        CONTROL, "EVENTBUS_REDIS_REQUIRE_PERSISTENCE", "health is degraded when Redis keeps nothing on disk"
    ),
}

# What each ``<NAME>_QUEUE_<SUFFIX>`` variable sets on queue ``<name>`` (see eventbus.queues).
QUEUE_VARIABLES: dict[str, str] = {
    "CONCURRENCY": "most jobs of the queue running at once over all workers (`0`: no cap)",
    "RATE_LIMIT": "most job starts per period over all workers: `10/s`, `600/m`, `5/10s`, `100/h` (`off`: none)",
    "ATTEMPTS": "total runs of a job: the first plus its retries (at least 1)",
    "RETRY_DELAY": "first retry delay in ms, doubling after each failure",
}


def type_of(name: str) -> str:
    """The annotated type of field ``name`` of Settings, as written in the dataclass."""
    found = {f.name: f for f in dataclasses.fields(Settings)}[name]
    return found.type if isinstance(found.type, str) else getattr(found.type, "__name__", str(found.type))
