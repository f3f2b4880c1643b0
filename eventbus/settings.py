"""One settings object, read from the environment once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import quote

from eventbus.errors import ConfigError
from eventbus.queues import QueueConfig, default_queue_configs, queue_configs_from_env

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_SQLITE_PATH = ".eventbus/eventbus.db"
DEFAULT_BROKER_URL = f"sqlite:///{DEFAULT_SQLITE_PATH}"


@dataclass(frozen=True)
class Settings:
    """Everything eventbus reads from the environment, in one place."""

    broker_url: str = DEFAULT_BROKER_URL
    namespace: str = "eventbus"
    publish_timeout_s: float = 2.0
    dedup_window_s: int = 86_400
    default_queue: str = "default"
    max_retries: int = 5
    min_backoff_ms: int = 1_000
    max_backoff_ms: int = 3_600_000
    subscriber_modules: tuple[str, ...] = field(default_factory=tuple)
    shutdown_timeout_s: float = 30.0
    worker_threads: int = 0  # threads per worker process when ``dramatiq`` gets no -t (0: Dramatiq's 8)
    default_subscribers: bool = True
    # HTTP admin API and webhooks (eventbus serve)
    admin_token: str = field(default="", repr=False)
    max_body_bytes: int = 1_048_576
    webhook_secrets: tuple[tuple[str, str], ...] = field(default_factory=tuple, repr=False)
    # Faults: malformed messages, the publish outbox, reconnection
    max_message_bytes: int = 4_194_304
    outbox_path: str = ""
    reconnect_delay_s: float = 1.0
    pin_workers: bool = False  # each worker process on a CPU of its own (see eventbus.affinity)

    # mail
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_pass: str = ""
    smtp_from: str = "eventbus@localhost"
    smtp_tls: bool = False
    smtp_starttls: bool | None = None
    smtp_timeout_s: float = 10.0
    smtp_verify_certs: bool = True
    smtp_pool_size: int = 8  # connections kept per worker process; 0 = one connection per email
    app_url: str = "http://localhost:8000"
    templates_dirs: tuple[str, ...] = field(default_factory=tuple)  # searched before the built-in templates
    mail_chunk_size: int = 50  # emails per job of a bulk send (one recipient and one send record each)
    mail_record_ttl_s: int = 30 * 86_400
    # notifications
    notify_webhook_url: str = ""
    notify_webhook_secret: str = ""
    inbox_max_items: int = 500
    # queues: scheduling, crash recovery, limits; per-queue settings live in ``queues``
    scheduler_poll_ms: int = 100
    heartbeat_interval_s: float = 1.0
    heartbeat_timeout_s: float = 10.0
    max_lost_deliveries: int = 3
    suspect_spread_ms: int = 500
    rate_limit_max_wait_ms: int = 5_000
    concurrency_wait_ms: int = 1_000
    queues: tuple[QueueConfig, ...] = field(default_factory=default_queue_configs)

    # control plane: job ledger, retention, housekeeping, health
    ledger: bool = True
    keep_completed: int = 1_000
    keep_failed: int = 5_000
    completed_max_age_s: int = 86_400
    failed_max_age_s: int = 7 * 86_400
    dead_letter_ttl_s: int = 7 * 86_400
    event_retention_s: int = 7 * 86_400
    housekeeping_interval_s: float = 60.0
    stats_interval_s: float = 30.0
    health_max_failed: int = 10
    health_max_waiting: int = 100
    redis_require_persistence: bool = True

    def queue_config(self, name: str) -> QueueConfig:
        """The configuration of queue ``name`` (its ``.DQ`` shares it); unlisted queues get the job defaults."""
        name = name.removesuffix(".DQ")
        for config in self.queues:
            if config.name == name:
                return config
        return QueueConfig(
            name, max_retries=self.max_retries, min_backoff_ms=self.min_backoff_ms, max_backoff_ms=self.max_backoff_ms
        )

    def webhook_secret(self, source: str) -> str | None:
        """The secret of webhook ``source`` (EVENTBUS_WEBHOOK_SECRET_<SOURCE>, '-' as '_'), if configured."""
        wanted = webhook_env_suffix(source)
        return next((secret for name, secret in self.webhook_secrets if name == wanted), None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``); bad values raise ConfigError."""
        env = os.environ if environ is None else environ
        base = cls()
        modules = tuple(m.strip() for m in env.get("EVENTBUS_SUBSCRIBERS", "").split(",") if m.strip())
        max_retries = int(_number(env, "JOB_MAX_RETRIES", base.max_retries))
        min_backoff_ms = int(_number(env, "JOB_RETRY_DELAY", base.min_backoff_ms))
        return replace(
            base,
            broker_url=broker_url_from_env(env),
            namespace=env.get("EVENTBUS_NAMESPACE", base.namespace),
            publish_timeout_s=_number(env, "EVENTBUS_PUBLISH_TIMEOUT_S", base.publish_timeout_s),
            dedup_window_s=int(_number(env, "EVENTBUS_DEDUP_WINDOW_S", base.dedup_window_s)),
            default_queue=env.get("EVENTBUS_DEFAULT_QUEUE", base.default_queue),
            max_retries=max_retries,
            min_backoff_ms=min_backoff_ms,
            subscriber_modules=modules,
            shutdown_timeout_s=_number(env, "EVENTBUS_SHUTDOWN_TIMEOUT_S", base.shutdown_timeout_s),
            worker_threads=int(_number(env, "QUEUE_CONCURRENCY", base.worker_threads)),
            default_subscribers=_flag(env, "EVENTBUS_DEFAULT_SUBSCRIBERS", base.default_subscribers),
            admin_token=env.get("EVENTBUS_ADMIN_TOKEN", "").strip(),
            max_body_bytes=int(_number(env, "EVENTBUS_MAX_BODY_BYTES", base.max_body_bytes)),
            max_message_bytes=int(_number(env, "EVENTBUS_MAX_MESSAGE_BYTES", base.max_message_bytes)),
            outbox_path=env.get("EVENTBUS_OUTBOX", "").strip(),
            reconnect_delay_s=_number(env, "EVENTBUS_RECONNECT_DELAY_S", base.reconnect_delay_s),
            pin_workers=_flag(env, "EVENTBUS_PIN_WORKERS", base.pin_workers),
            webhook_secrets=tuple(
                sorted(
                    (name[len(WEBHOOK_SECRET_PREFIX) :], value)
                    for name, value in env.items()
                    if name.startswith(WEBHOOK_SECRET_PREFIX) and len(name) > len(WEBHOOK_SECRET_PREFIX) and value
                )
            ),
            smtp_host=env.get("SMTP_HOST") or base.smtp_host,
            smtp_port=int(_number(env, "SMTP_PORT", base.smtp_port)),
            smtp_user=env.get("SMTP_USER", base.smtp_user),
            smtp_pass=env.get("SMTP_PASS", env.get("SMTP_PASSWORD", base.smtp_pass)),
            smtp_from=env.get("SMTP_FROM") or base.smtp_from,
            smtp_tls=_flag(env, "SMTP_TLS", base.smtp_tls),
            smtp_starttls=_flag(env, "SMTP_STARTTLS", False) if env.get("SMTP_STARTTLS", "").strip() else None,
            smtp_timeout_s=_number(env, "SMTP_TIMEOUT_S", base.smtp_timeout_s),
            smtp_verify_certs=_flag(env, "SMTP_VERIFY_CERTS", base.smtp_verify_certs),
            smtp_pool_size=int(_number(env, "SMTP_POOL_SIZE", base.smtp_pool_size)),
            app_url=(env.get("APP_URL") or env.get("FRONTEND_URL") or base.app_url).rstrip("/"),
            templates_dirs=tuple(d for d in env.get("EVENTBUS_TEMPLATES_DIR", "").split(os.pathsep) if d.strip()),
            mail_chunk_size=max(1, int(_number(env, "MAIL_CHUNK_SIZE", base.mail_chunk_size))),
            mail_record_ttl_s=int(_number(env, "MAIL_RECORD_TTL_S", base.mail_record_ttl_s)),
            notify_webhook_url=env.get("NOTIFY_WEBHOOK_URL", base.notify_webhook_url),
            notify_webhook_secret=env.get("NOTIFY_WEBHOOK_SECRET", base.notify_webhook_secret),
            inbox_max_items=int(_number(env, "INBOX_MAX_ITEMS", base.inbox_max_items)),
            scheduler_poll_ms=int(_number(env, "EVENTBUS_SCHEDULER_POLL_MS", base.scheduler_poll_ms)),
            heartbeat_interval_s=_number(env, "EVENTBUS_HEARTBEAT_INTERVAL_S", base.heartbeat_interval_s),
            heartbeat_timeout_s=_number(env, "EVENTBUS_HEARTBEAT_TIMEOUT_S", base.heartbeat_timeout_s),
            max_lost_deliveries=int(_number(env, "EVENTBUS_MAX_LOST_DELIVERIES", base.max_lost_deliveries)),
            suspect_spread_ms=int(_number(env, "EVENTBUS_SUSPECT_SPREAD_MS", base.suspect_spread_ms)),
            rate_limit_max_wait_ms=int(_number(env, "EVENTBUS_RATE_LIMIT_MAX_WAIT_MS", base.rate_limit_max_wait_ms)),
            concurrency_wait_ms=int(_number(env, "EVENTBUS_CONCURRENCY_WAIT_MS", base.concurrency_wait_ms)),
            queues=queue_configs_from_env(
                env,
                max_retries=max_retries,
                min_backoff_ms=min_backoff_ms,
                max_backoff_ms=base.max_backoff_ms,
                explicit_retries=bool(env.get("JOB_MAX_RETRIES")),
                explicit_delay=bool(env.get("JOB_RETRY_DELAY")),
            ),
            ledger=_flag(env, "EVENTBUS_LEDGER", base.ledger),
            keep_completed=int(
                _number(env, _named(env, "EVENTBUS_KEEP_COMPLETED", "QUEUE_REMOVE_ON_COMPLETE"), base.keep_completed)
            ),
            keep_failed=int(
                _number(env, _named(env, "EVENTBUS_KEEP_FAILED", "QUEUE_REMOVE_ON_FAIL"), base.keep_failed)
            ),
            completed_max_age_s=int(_number(env, "EVENTBUS_COMPLETED_MAX_AGE_S", base.completed_max_age_s)),
            failed_max_age_s=int(_number(env, "EVENTBUS_FAILED_MAX_AGE_S", base.failed_max_age_s)),
            dead_letter_ttl_s=int(_number(env, "EVENTBUS_DEAD_LETTER_TTL_S", base.dead_letter_ttl_s)),
            event_retention_s=int(_number(env, "EVENTBUS_EVENT_RETENTION_S", base.event_retention_s)),
            housekeeping_interval_s=_number(env, "EVENTBUS_HOUSEKEEPING_INTERVAL_S", base.housekeeping_interval_s),
            stats_interval_s=_number(env, "EVENTBUS_STATS_INTERVAL_S", base.stats_interval_s),
            health_max_failed=int(_number(env, "EVENTBUS_HEALTH_MAX_FAILED", base.health_max_failed)),
            health_max_waiting=int(_number(env, "EVENTBUS_HEALTH_MAX_WAITING", base.health_max_waiting)),
            redis_require_persistence=_flag(env, "EVENTBUS_REDIS_REQUIRE_PERSISTENCE", base.redis_require_persistence),
        )


WEBHOOK_SECRET_PREFIX = "EVENTBUS_WEBHOOK_SECRET_"


def webhook_env_suffix(source: str) -> str:
    """``my-shop`` -> ``MY_SHOP``: the end of the variable holding a webhook source's secret."""
    return source.upper().replace("-", "_")


def broker_url_from_env(env: Mapping[str, str]) -> str:
    """EVENTBUS_BROKER_URL, else REDIS_URL, else REDIS_HOST/PORT/PASSWORD/DB, else the embedded SQLite file.

    The file is EVENTBUS_SQLITE_PATH (default ``.eventbus/eventbus.db``, relative to the working directory).
    """
    if url := env.get("EVENTBUS_BROKER_URL"):
        return url
    if url := env.get("REDIS_URL"):
        return url
    parts = ("REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB")
    if any(env.get(name) for name in parts):
        host = env.get("REDIS_HOST") or "127.0.0.1"
        port = int(_number(env, "REDIS_PORT", 6379))
        db = int(_number(env, "REDIS_DB", 0))
        password = env.get("REDIS_PASSWORD")
        auth = f":{quote(password, safe='')}@" if password else ""
        return f"redis://{auth}{host}:{port}/{db}"
    return f"sqlite:///{env.get('EVENTBUS_SQLITE_PATH') or DEFAULT_SQLITE_PATH}"


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to e.g. {default!r}") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} is negative; set it to a value >= 0")
    return value


def _named(env: Mapping[str, str], name: str, *aliases: str) -> str:
    """The first of ``name`` and its ``aliases`` set to a non-empty value (else ``name``): the one to read."""
    return next((n for n in (name, *aliases) if env.get(n, "").strip()), name)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a flag; set it to 1 or 0")


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def set_settings(settings: Settings | None) -> None:
    """Replace the process-wide settings (None: read the environment again on next use)."""
    global _settings
    _settings = settings
