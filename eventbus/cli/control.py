"""Control-plane commands: stats, jobs, job, retry, dlq, replay, pause, resume, clean, health.

Each command is a thin face over :class:`eventbus.control.ControlPlane`: rich tables for people,
``--json`` for scripts. Exit codes: 0 ok, 1 unhealthy / not found / broker unreachable, 2 bad usage.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click
import redis

from eventbus.cli.base import cli
from eventbus.control import ControlPlane, HealthStatus, JobState
from eventbus.errors import NotFound, StoreBusy
from eventbus.settings import get_settings

F = TypeVar("F", bound=Callable[..., Any])

_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")


def parse_duration(value: str) -> float:
    """``7d``, ``12h``, ``30m``, ``45s``, ``500ms`` -> seconds; anything else is a usage error."""
    match = _DURATION.match(value)
    if not match:
        raise click.BadParameter(f"{value!r} is not a duration; use e.g. 7d, 12h, 30m, 45s")
    return float(match.group(1)) * _UNITS_S[match.group(2)]


def duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """click callback for duration options."""
    return None if value is None else parse_duration(value)


_CLEANABLE = ["completed", "failed", "cancelled"]

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def faces_errors(fn: F) -> F:
    """Not found and an unreachable broker exit 1 with one line on stderr."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NotFound as exc:
            raise click.ClickException(str(exc)) from None
        except redis.RedisError as exc:
            raise click.ClickException(
                f"cannot reach the broker ({exc}); is Redis running at EVENTBUS_BROKER_URL / REDIS_URL?"
            ) from None
        except (sqlite3.Error, StoreBusy) as exc:
            raise click.ClickException(
                f"cannot read the SQLite broker file ({exc}); check EVENTBUS_BROKER_URL and the file's permissions"
            ) from None

    return wrapper  # type: ignore[return-value]


def plane() -> ControlPlane:
    return ControlPlane.from_settings(get_settings())


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def show(renderable: Any) -> None:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(renderable)


def when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


# -- stats ---------------------------------------------------------------------------------------


def stats_tables(cp: ControlPlane) -> Any:
    from rich.console import Group
    from rich.table import Table

    s = cp.stats()
    queues = Table("queue", "waiting", "active", "delayed", "completed", "failed", "dead", "paused", "last min",
                   title="queues")  # fmt: skip
    for q in s.queues:
        queues.add_row(q.queue, *(str(n) for n in (q.waiting, q.active, q.delayed, q.completed, q.failed, q.dead)),
                       "yes" if q.paused else "", str(q.processed_last_minute))  # fmt: skip
    topics = Table("topic", "published", "deliveries", "failed", title="topics")
    for t in s.topics:
        topics.add_row(t.topic, str(t.published), str(t.deliveries), str(t.failed))
    mail = Table(*s.mail, title="emails")
    mail.add_row(*(str(n) for n in s.mail.values()))
    if s.mail.get("uncertain"):
        mail.caption = "uncertain: data sent, no reply recorded; see `eventbus mail uncertain`"
    if s.outbox.get("enabled"):
        age = s.outbox.get("oldest_age_s")
        queues.caption = f"outbox {s.outbox['path']}: {s.outbox['depth']} waiting" + (
            f", oldest {age:.0f} s" if age is not None else ""
        )
    return Group(queues, topics, mail)


@cli.command()
@click.option("--watch", is_flag=True, help="Refresh until interrupted.")
@click.option("--interval", default="2s", callback=duration, show_default=True, help="Refresh interval for --watch.")
@json_option
@faces_errors
def stats(watch: bool, interval: float, as_json: bool) -> None:
    """Counts per queue and per topic."""
    cp = plane()
    if not watch:
        emit_json(cp.stats().to_dict()) if as_json else show(stats_tables(cp))
        return
    if as_json:  # one JSON document per line
        while True:
            click.echo(json.dumps(cp.stats().to_dict()))
            time.sleep(interval)
    from rich.live import Live

    with Live(stats_tables(cp), auto_refresh=False) as live:
        while True:
            time.sleep(interval)
            live.update(stats_tables(cp), refresh=True)


@cli.command()
@click.argument("queue")
@click.option("--state", default="waiting", show_default=True, type=click.Choice([s.value for s in JobState]))
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", default=None, help="next_cursor of the previous page.")
@json_option
@faces_errors
def jobs(queue: str, state: str, limit: int, cursor: str | None, as_json: bool) -> None:
    """Jobs of QUEUE in one state, newest first."""
    from rich.table import Table

    page = plane().list_jobs(queue, state, limit=limit, cursor=cursor)
    if as_json:
        emit_json(page.to_dict())
        return
    table = Table("id", "actor / subscription", "attempts", "updated", "error", title=f"{queue}: {state}")
    for job in page.items:
        table.add_row(job.id, job.subscription or job.actor, str(job.attempts), when(job.updated_at_ms),
                      (job.error or "")[:60])  # fmt: skip
    show(table)
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}")


@cli.command()
@click.argument("job_id")
@json_option
@faces_errors
def job(job_id: str, as_json: bool) -> None:
    """One job by id: state, attempts, times, worker, history, last error and traceback."""
    record = plane().get_job(job_id)
    if as_json:
        emit_json(record.to_dict())
        return
    from rich.table import Table

    table = Table(show_header=False, title=f"job {record.id}")
    for key in ("state", "queue", "actor", "subscription", "event_id", "topic", "priority", "attempts", "max_retries",
                "requeues", "worker", "error"):  # fmt: skip
        value = getattr(record, key)
        if value not in (None, ""):
            table.add_row(key, str(value))
    for key in ("enqueued_at_ms", "started_at_ms", "finished_at_ms", "next_attempt_at_ms"):
        if getattr(record, key):
            table.add_row(key.removesuffix("_ms"), when(getattr(record, key)))
    table.add_row("history", " -> ".join(f"{h.state.value} {when(h.at_ms)[11:]}" for h in record.history))
    if record.payload is not None:
        table.add_row("payload", json.dumps(record.payload, default=str)[:500])
    show(table)
    if record.traceback:
        click.echo(record.traceback)


@cli.command()
@click.argument("job_id", required=False)
@click.option("--all-failed", "queue", metavar="QUEUE", default=None, help="Retry every dead (failed) job of QUEUE.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="With --all-failed: at most this many.")
@json_option
@faces_errors
def retry(job_id: str | None, queue: str | None, limit: int | None, as_json: bool) -> None:
    """Run a dead (failed) job again: `retry ID` or `retry --all-failed QUEUE`."""
    if bool(job_id) == bool(queue):
        raise click.UsageError("give a job ID or --all-failed QUEUE (not both)")
    cp = plane()
    ids = [cp.retry_job(job_id).id] if job_id else cp.retry_failed(queue or "", limit=limit)
    emit_json({"requeued": ids}) if as_json else click.echo(f"requeued {len(ids)} job(s)")


@cli.command()
@click.argument("event_id")
@click.option("--to", "subscription", required=True, help="The one subscription to deliver the event to.")
@json_option
@faces_errors
def replay(event_id: str, subscription: str, as_json: bool) -> None:
    """Deliver a past event again to one subscription (a new job; other subscriptions are untouched)."""
    result = plane().replay(event_id, subscription)
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(f"replayed {event_id} to {subscription}: job {result.job_id} on queue {result.queue}")


@cli.command()
@click.argument("queue")
@faces_errors
def pause(queue: str) -> None:
    """Stop every worker from starting jobs of QUEUE (running ones finish)."""
    plane().pause(queue)
    click.echo(f"paused {queue}")


@cli.command()
@click.argument("queue")
@faces_errors
def resume(queue: str) -> None:
    """Let workers take jobs of QUEUE again."""
    plane().resume(queue)
    click.echo(f"resumed {queue}")


@cli.command()
@click.argument("queue")
@click.option("--older-than", default=None, callback=duration, help="Remove records older than this (7d, 12h, 30m).")
@click.option("--state", default="completed", show_default=True, type=click.Choice(_CLEANABLE))
@click.option("--keep", "keep_last", type=click.IntRange(min=0), default=None, help="Keep only the newest N records.")
@json_option
@faces_errors
def clean(queue: str, older_than: float | None, state: str, keep_last: int | None, as_json: bool) -> None:
    """Remove completed (or failed) job records of QUEUE by age or beyond the newest N."""
    if older_than is None and keep_last is None:
        raise click.UsageError("give --older-than (e.g. 7d) or --keep N")
    n = plane().clean(queue, older_than_s=older_than, state=state, keep_last=keep_last)
    emit_json({"removed": n}) if as_json else click.echo(f"removed {n} {state} record(s) of {queue}")


@cli.command()
@click.option("--max-failed", type=click.IntRange(min=0), default=None, help="Degraded above this many dead letters.")
@click.option("--max-waiting", type=click.IntRange(min=0), default=None, help="Degraded above this many waiting jobs.")
@json_option
def health(max_failed: int | None, max_waiting: int | None, as_json: bool) -> None:
    """healthy / degraded / unhealthy with reasons; exits 1 when unhealthy."""
    report = plane().health(max_failed=max_failed, max_waiting=max_waiting)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(report.status.value)
        for reason in report.reasons:
            click.echo(f"  - {reason}")
    if report.status == HealthStatus.UNHEALTHY:
        raise click.ClickException("unhealthy")  # exit 1
