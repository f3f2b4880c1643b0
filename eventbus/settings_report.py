"""The effective configuration as an operator may see it: each value, where it came from, secrets hidden.

``eventbus config`` prints it; anything else that shows configuration (an HTTP route, the control
plane) should build it with :func:`describe` too, so no face can leak a secret the others hide.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eventbus.queues import QueueConfig, env_prefix, queue_of_variable
from eventbus.settings import WEBHOOK_SECRET_PREFIX, Settings
from eventbus.settings_table import SETTINGS

REDACTED = "***"
# Set together, these build one Redis URL: a source names every one that is set.
_REDIS_PARTS = ("REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB")
_JOB_DEFAULTS = ("JOB_MAX_RETRIES", "JOB_RETRY_DELAY")  # they change every queue's retry policy
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)@")
_QUERY_SECRET = re.compile(r"([?&](?:password|passwd|pass|token|secret)=)[^&#]*", re.IGNORECASE)


class Source(enum.StrEnum):
    """Where a setting's value came from."""

    DEFAULT = "default"
    ENVIRONMENT = "environment"
    OPTION = "option"  # a command-line option, e.g. --broker-url


@dataclass(frozen=True)
class ConfigRow:
    """One setting as shown to an operator: ``value`` is JSON-ready and already redacted."""

    name: str  # the Settings field, or ``queues.<queue>`` for one queue's settings
    variable: str  # the variable that sets it (a pattern such as EMAIL_QUEUE_* for a queue), "" if none
    value: Any
    source: Source
    set_by: tuple[str, ...] = ()  # the variables (or option) the value was read from

    @property
    def source_label(self) -> str:
        """``default``, ``environment``, or the source naming what set it when that is not ``variable``."""
        if not self.set_by or self.set_by == (self.variable,):
            return self.source.value
        return f"{self.source.value} ({', '.join(self.set_by)})"

    def to_dict(self) -> dict[str, Any]:
        """The row's JSON form."""
        return {
            "variable": self.variable,
            "value": self.value,
            "source": self.source.value,
            "set_by": list(self.set_by),
        }


def redact_url(url: str) -> str:
    """``redis://:secret@host/0`` -> ``redis://:***@host/0``; ``user:pass@`` keeps the user; password query args too.

    A userinfo without a colon is hidden whole: some services put a token there.
    """

    def hide(match: re.Match[str]) -> str:
        user, colon, _ = match.group(2).partition(":")
        return f"{match.group(1)}{user}:{REDACTED}@" if colon else f"{match.group(1)}{REDACTED}@"

    return _QUERY_SECRET.sub(rf"\g<1>{REDACTED}", _USERINFO.sub(hide, url, count=1))


def describe(
    settings: Settings, environ: Mapping[str, str], *, options: Mapping[str, str] | None = None
) -> list[ConfigRow]:
    """One row per setting (one per queue for ``queues``), in the order of the Settings fields.

    ``environ`` is what ``settings`` was read from; ``options`` maps a field to the command-line
    option that overrode it (``{"broker_url": "--broker-url"}``).
    """
    rows: list[ConfigRow] = []
    for field in dataclasses.fields(Settings):
        if field.name == "queues":
            rows += [_queue_row(q, environ) for q in settings.queues]
            continue
        doc = SETTINGS.get(field.name)
        variables = doc.env if doc else ()
        value = getattr(settings, field.name)
        shown = _redacted(field.name, value, secret=bool(doc and doc.secret))
        set_by = _set_by(field.name, variables, environ)
        source = Source.ENVIRONMENT if set_by else Source.DEFAULT
        if options and field.name in options:
            source, set_by = Source.OPTION, (options[field.name],)
        rows.append(ConfigRow(field.name, variables[0] if variables else "", shown, source, set_by))
    return rows


def format_value(value: Any) -> str:
    """A value as text: flags as true/false, lists comma-separated, mappings as KEY=value."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={format_value(v)}" for k, v in value.items()) or "(none)"
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v) for v in value) or "(none)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if value != "" else "(none)"


def _redacted(name: str, value: Any, *, secret: bool) -> Any:
    if name == "webhook_secrets":
        return {source: REDACTED for source, _ in value}
    if secret:
        return REDACTED if value else ""
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _set_by(name: str, variables: tuple[str, ...], environ: Mapping[str, str]) -> tuple[str, ...]:
    """The variables the value was read from: the first one set, in the order from_env prefers them."""
    if name == "webhook_secrets":
        return tuple(sorted(k for k, v in environ.items() if k.startswith(WEBHOOK_SECRET_PREFIX) and v))
    first = next((v for v in variables if environ.get(v, "").strip()), None)
    if first in _REDIS_PARTS:
        return tuple(v for v in _REDIS_PARTS if environ.get(v, "").strip())
    return (first,) if first else ()


def _queue_row(config: QueueConfig, environ: Mapping[str, str]) -> ConfigRow:
    own = sorted(k for k, v in environ.items() if v.strip() and queue_of_variable(k) == config.name)
    shared = [k for k in _JOB_DEFAULTS if environ.get(k, "").strip()]
    value = {
        "concurrency": config.concurrency,
        "rate_limit": str(config.rate_limit) if config.rate_limit else None,
        "attempts": config.attempts,
        "retry_delay_ms": config.min_backoff_ms,
    }
    set_by = (*own, *shared)
    source = Source.ENVIRONMENT if set_by else Source.DEFAULT
    return ConfigRow(f"queues.{config.name}", f"{env_prefix(config.name)}_QUEUE_*", value, source, set_by)
