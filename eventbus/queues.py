"""Per-queue configuration: concurrency caps, rate limits and retry policy, read once from the environment.

The variable names are the source systems' own: ``EMAIL_QUEUE_CONCURRENCY``, ``EMAIL_QUEUE_RATE_LIMIT``
("10/s"), ``NOTIFICATION_QUEUE_CONCURRENCY``, ``WEBHOOK_QUEUE_CONCURRENCY``, ``XP_QUEUE_CONCURRENCY``,
and for any other queue ``<NAME>_QUEUE_CONCURRENCY`` / ``_RATE_LIMIT`` / ``_ATTEMPTS`` / ``_RETRY_DELAY``
(``EXPORTS_QUEUE_CONCURRENCY=2`` configures queue ``exports``).

Every job on a queue (a subscriber delivery, ``send_email``, a ``send_bulk_email`` chunk, ``notify``)
retries by that queue's rule unless its subscription or its call sets ``max_retries`` itself. The
rule's retries come from, first to last:

1. the queue's own ``<NAME>_QUEUE_ATTEMPTS`` (attempts, so retries + 1);
2. for the ``email`` queue, ``MAIL_MAX_RETRIES`` (retries; the older spelling);
3. ``JOB_MAX_RETRIES``, when set;
4. the built-in default (:data:`BUILTIN`, else 5 retries).

The first backoff is the queue's ``<NAME>_QUEUE_RETRY_DELAY`` (ms), else ``JOB_RETRY_DELAY``, else
the built-in default. ``eventbus queues`` shows the result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from eventbus.errors import ConfigError, EventBusError

_UNITS_S = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")
_ENV = re.compile(r"^([A-Z][A-Z0-9_]*)_QUEUE_(CONCURRENCY|RATE_LIMIT|ATTEMPTS|RETRY_DELAY)$")

# Env prefixes of the source systems that differ from the queue name.
ALIASES = {"NOTIFICATION": "notifications", "WEBHOOK": "webhooks"}


@dataclass(frozen=True)
class Rate:
    """A rate limit: ``count`` jobs per ``period_s`` seconds, spaced evenly (no bursts)."""

    count: float
    period_s: float

    @property
    def interval_ms(self) -> float:
        """The spacing between two jobs."""
        return self.period_s * 1000 / self.count

    def __str__(self) -> str:
        return f"{self.count:g}/{self.period_s:g}s"


def parse_rate(text: str, *, name: str = "rate limit") -> Rate:
    """Parse ``"10/s"``, ``"600/m"``, ``"5/10s"`` or ``"100/h"``; raises ConfigError naming the fix."""
    match = _RATE.match(text.lower())
    word = match.group(3) if match else ""
    unit = _UNITS_S.get(word) or _UNITS_S.get(word.removesuffix("s"))
    if not match or unit is None or float(match.group(1)) <= 0:
        raise ConfigError(f"{name}={text!r} is not a rate; write it as '10/s', '600/m', '5/10s' or '100/h'")
    every = float(match.group(2) or 1)
    if every <= 0:
        raise ConfigError(f"{name}={text!r} has a zero period; write it as e.g. '5/10s'")
    return Rate(count=float(match.group(1)), period_s=every * unit)


@dataclass(frozen=True)
class QueueConfig:
    """How one queue runs across all workers.

    ``concurrency``: most jobs running at once over every worker (None: no cap).
    ``rate_limit``: most job starts per period over every worker (None: no limit).
    ``max_retries`` / ``min_backoff_ms`` / ``max_backoff_ms``: the retry policy of jobs on this queue
    unless the subscription or send overrides it (attempts = 1 + max_retries, exponential backoff).
    """

    name: str
    concurrency: int | None = None
    rate_limit: Rate | None = None
    max_retries: int = 5
    min_backoff_ms: int = 1_000
    max_backoff_ms: int = 3_600_000

    @property
    def attempts(self) -> int:
        """Total tries of a job: the first plus its retries."""
        return self.max_retries + 1

    def retry_options(
        self,
        *,
        max_retries: int | None = None,
        min_backoff_ms: int | None = None,
        max_backoff_ms: int | None = None,
        error: type[EventBusError] = ConfigError,
        caller: str = "job",
    ) -> dict[str, int]:
        """The retry options a job on this queue carries: this rule, each part replaced where the call sets it.

        A value that is not a whole number >= 0 raises ``error`` naming the call and the fix.
        """
        given = {"max_retries": max_retries, "min_backoff_ms": min_backoff_ms, "max_backoff_ms": max_backoff_ms}
        for key, value in given.items():
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise error(
                    f"{caller} got {key}={value!r}; pass a whole number >= 0 (max_retries=0: one attempt), "
                    f"or leave it out to use queue {self.name!r}'s rule"
                )
        return {
            "max_retries": self.max_retries if max_retries is None else max_retries,
            "min_backoff": self.min_backoff_ms if min_backoff_ms is None else min_backoff_ms,
            "max_backoff": self.max_backoff_ms if max_backoff_ms is None else max_backoff_ms,
        }


def max_retries_of(options: Mapping[str, Any], config: QueueConfig) -> int:
    """The retries a job gets: its own ``max_retries`` option, else its queue's rule."""
    value = options.get("max_retries")
    return config.max_retries if value is None else int(value)


# The source systems' defaults: email 5 concurrent, 10/s, 5 attempts exponential; xp 10, 50/s,
# 3 attempts; webhooks 3, 20/s, 5 attempts from 5 s; notifications 10, 30/s, 3 attempts.
BUILTIN: dict[str, dict[str, object]] = {
    "email": {"concurrency": 5, "rate_limit": Rate(10, 1), "max_retries": 4},
    "xp": {"concurrency": 10, "rate_limit": Rate(50, 1), "max_retries": 2},
    "webhooks": {"concurrency": 3, "rate_limit": Rate(20, 1), "max_retries": 4, "min_backoff_ms": 5_000},
    "notifications": {"concurrency": 10, "rate_limit": Rate(30, 1), "max_retries": 2},
}


def queue_name_for(prefix: str) -> str:
    """The queue an env prefix configures: ``NOTIFICATION`` -> ``notifications``, ``EXPORTS`` -> ``exports``."""
    return ALIASES.get(prefix, prefix.lower())


def env_prefix(queue: str) -> str:
    """The env prefix that configures ``queue``: ``notifications`` -> ``NOTIFICATION``, ``exports`` -> ``EXPORTS``."""
    return next((prefix for prefix, name in ALIASES.items() if name == queue), queue.upper())


def queue_of_variable(key: str) -> str | None:
    """The queue a ``<NAME>_QUEUE_*`` variable configures (None: not such a variable)."""
    match = _ENV.match(key)
    return queue_name_for(match.group(1)) if match else None


def queue_configs_from_env(
    env: Mapping[str, str],
    *,
    max_retries: int,
    min_backoff_ms: int,
    max_backoff_ms: int,
    explicit_retries: bool,
    explicit_delay: bool,
) -> tuple[QueueConfig, ...]:
    """Built-in queue defaults, then JOB_* when set explicitly, then MAIL_MAX_RETRIES, then each ``<NAME>_QUEUE_*``."""
    configs: dict[str, QueueConfig] = {}
    for name, values in BUILTIN.items():
        config = replace(QueueConfig(name, max_backoff_ms=max_backoff_ms, min_backoff_ms=min_backoff_ms), **values)  # type: ignore[arg-type]
        if explicit_retries:
            config = replace(config, max_retries=max_retries)
        if explicit_delay:
            config = replace(config, min_backoff_ms=min_backoff_ms)
        configs[name] = config
    mail_retries = env.get("MAIL_MAX_RETRIES", "").strip()
    if mail_retries:
        configs["email"] = replace(configs["email"], max_retries=_whole(mail_retries, "MAIL_MAX_RETRIES", least=0))
    for key in sorted(env):
        match = _ENV.match(key)
        raw = env[key].strip()
        if not match or raw == "":
            continue
        name = queue_name_for(match.group(1))
        config = configs.get(name) or QueueConfig(
            name, max_retries=max_retries, min_backoff_ms=min_backoff_ms, max_backoff_ms=max_backoff_ms
        )
        configs[name] = _apply(config, match.group(2), key, raw)
    return tuple(configs[name] for name in sorted(configs))


def _apply(config: QueueConfig, what: str, key: str, raw: str) -> QueueConfig:
    if what == "RATE_LIMIT":
        off = raw.lower() in ("0", "none", "off", "unlimited")
        return replace(config, rate_limit=None if off else parse_rate(raw, name=key))
    value = _whole(raw, key, least=1 if what == "ATTEMPTS" else 0)
    if what == "CONCURRENCY":
        return replace(config, concurrency=value or None)
    if what == "ATTEMPTS":
        return replace(config, max_retries=value - 1)
    return replace(config, min_backoff_ms=value)


def with_backoff(
    configs: tuple[QueueConfig, ...], *, min_backoff_ms: int, max_backoff_ms: int
) -> tuple[QueueConfig, ...]:
    """``configs`` with every queue's backoff replaced and its retries kept (quick retries for tests)."""
    return tuple(replace(c, min_backoff_ms=min_backoff_ms, max_backoff_ms=max_backoff_ms) for c in configs)


def _whole(raw: str, key: str, *, least: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a whole number; set it to e.g. 5") from None
    if value < least:
        raise ConfigError(f"{key}={raw!r} is out of range; set it to a whole number >= {least}")
    return value


def default_queue_configs() -> tuple[QueueConfig, ...]:
    """The built-in per-queue defaults (what ``Settings()`` carries without reading the environment)."""
    return queue_configs_from_env(
        {}, max_retries=5, min_backoff_ms=1_000, max_backoff_ms=3_600_000, explicit_retries=False, explicit_delay=False
    )
