"""Recurring schedules: publish an event on every cron tick, exactly once however many workers run.

Every worker process checks the registered schedules a few times a second and publishes each due
tick with the event id ``schedule:<name>:<tick ms>``. The publish is once-only per event id (one
Lua call), so with N workers one of them writes the event and the others are no-ops: no separate
scheduler process, no leader election. Ticks that fall while no worker runs are not replayed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from eventbus.errors import ConfigError
from eventbus.priority import Priority
from eventbus.topic import declare_topic, validate_name

logger = logging.getLogger("eventbus")

PayloadFactory = Callable[[datetime], Mapping[str, Any] | None]
F = TypeVar("F", bound=Callable[..., Any])
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
MAX_CATCH_UP = 100


@dataclass(frozen=True)
class Schedule:
    """Publish ``topic`` on each tick of ``cron`` (5 fields, or 6 with seconds last) or every ``every_s``.

    ``payload`` is a mapping, or a function of the tick time (UTC) returning one; None skips that tick.
    """

    name: str
    topic: str
    cron: str | None = None
    every_s: float | None = None
    tz: str = "UTC"
    payload: Mapping[str, Any] | PayloadFactory | None = None
    priority: Priority | None = None

    def next_after(self, after_ms: int) -> int:
        """The first tick strictly after ``after_ms`` (epoch ms)."""
        if self.every_s is not None:
            step = int(self.every_s * 1000)
            return (after_ms // step + 1) * step
        start = datetime.fromtimestamp(after_ms / 1000, ZoneInfo(self.tz))
        return int(croniter(self.cron or "", start).get_next(datetime).timestamp() * 1000)

    def ticks(self, after_ms: int, until_ms: int) -> list[int]:
        """Ticks in ``(after_ms, until_ms]``, at most MAX_CATCH_UP (the latest ones)."""
        out: list[int] = []
        tick = self.next_after(after_ms)
        while tick <= until_ms:
            out.append(tick)
            tick = self.next_after(tick)
        return out[-MAX_CATCH_UP:]

    def describe(self) -> dict[str, Any]:
        """The JSON-able definition shown by the control plane."""
        return {
            "name": self.name,
            "topic": self.topic,
            "cron": self.cron,
            "every_s": self.every_s,
            "tz": self.tz,
            "priority": self.priority.value if self.priority else None,
        }


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as the control plane sees it: definition, next and last run."""

    name: str
    topic: str
    cron: str | None
    every_s: float | None
    tz: str
    next_run: datetime
    last_run: datetime | None


_schedules: dict[str, Schedule] = {}


def add_schedule(
    name: str,
    *,
    topic: str,
    cron: str | None = None,
    every_s: float | None = None,
    payload: Mapping[str, Any] | PayloadFactory | None = None,
    tz: str = "UTC",
    priority: Priority | str | int | None = None,
) -> Schedule:
    """Register a recurring publish; workers that import this module run it. Returns the schedule."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"schedule name {name!r} must be 1-100 of letters, digits, '_', '.', ':' or '-'")
    validate_name(topic)
    if (cron is None) == (every_s is None):
        raise ConfigError(f"schedule {name!r}: pass exactly one of cron='0 9 * * MON' or every_s=60")
    if cron is not None and not croniter.is_valid(cron):
        raise ConfigError(
            f"schedule {name!r}: {cron!r} is not a cron expression; use 5 fields ('0 9 * * MON') "
            "or 6 with seconds last ('* * * * * */10')"
        )
    if every_s is not None and (not isinstance(every_s, int | float) or every_s < 1):
        raise ConfigError(f"schedule {name!r}: every_s={every_s!r} must be a number of seconds >= 1")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"schedule {name!r}: unknown time zone {tz!r}; use an IANA name like 'Europe/Paris'"
        ) from None
    level = None if priority is None else Priority.parse(priority, Priority.NORMAL)
    declare_topic(topic)  # idempotent; keeps a schema declared elsewhere
    found = Schedule(name, topic, cron, every_s, tz, payload, level)
    _schedules[name] = found
    return found


def schedule(
    cron: str | None = None,
    *,
    topic: str,
    payload: Mapping[str, Any] | PayloadFactory | None = None,
    tz: str = "UTC",
    every_s: float | None = None,
    name: str | None = None,
    priority: Priority | str | int | None = None,
    queue: str | None = None,
) -> Callable[[F], F]:
    """Publish ``topic`` on each tick and subscribe the decorated function to it (one cron job in one place).

    ``payload`` may be a mapping or a function of the tick time returning one (None skips that tick).
    """

    def register(fn: F) -> F:
        from eventbus.subscriber import subscribe

        schedule_name = name or f"{fn.__module__}.{fn.__qualname__}"
        add_schedule(schedule_name, topic=topic, cron=cron, every_s=every_s, payload=payload, tz=tz, priority=priority)
        options: dict[str, Any] = {"name": schedule_name}
        if queue is not None:
            options["queue"] = queue
        return subscribe(topic, **options)(fn)

    return register


def all_schedules() -> list[Schedule]:
    """Every schedule registered in this process, by name."""
    return [_schedules[name] for name in sorted(_schedules)]


def remove_schedule(name: str) -> None:
    """Forget a schedule in this process (tests and hot reload)."""
    _schedules.pop(name, None)


def tick_event_id(name: str, tick_ms: int) -> str:
    """The event id of one tick: the same in every worker, so only one publish per tick goes through."""
    return f"schedule:{name}:{tick_ms}"


def publish_tick(found: Schedule, tick_ms: int) -> bool:
    """Publish one tick (once-only by event id); False if the payload function skipped it."""
    from eventbus.bus import publish_event

    when = datetime.fromtimestamp(tick_ms / 1000, UTC)
    payload = found.payload(when) if callable(found.payload) else (found.payload or {})
    if payload is None:
        return False
    publish_event(
        found.topic,
        payload,
        priority=found.priority,
        event_id=tick_event_id(found.name, tick_ms),
        headers={"schedule": found.name, "scheduled_for": when.isoformat()},
    )
    return True


def schedule_infos(definitions: Mapping[str, str], last_runs: Mapping[str, int], now_ms: int) -> list[ScheduleInfo]:
    """Control-plane view from the definitions workers registered in the store, plus this process's own."""
    merged = {name: json.loads(raw) for name, raw in definitions.items()}
    merged.update({s.name: s.describe() for s in all_schedules()})
    out = []
    for name in sorted(merged):
        d = merged[name]
        probe = Schedule(name, d["topic"], d.get("cron"), d.get("every_s"), d.get("tz") or "UTC")
        last = last_runs.get(name)
        out.append(
            ScheduleInfo(
                name=name,
                topic=d["topic"],
                cron=probe.cron,
                every_s=probe.every_s,
                tz=probe.tz,
                next_run=datetime.fromtimestamp(probe.next_after(now_ms) / 1000, UTC),
                last_run=datetime.fromtimestamp(last / 1000, UTC) if last else None,
            )
        )
    return out
