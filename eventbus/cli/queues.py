"""Scheduling commands: list and cancel scheduled work, list recurring schedules, show queue settings."""

from __future__ import annotations

import json
from typing import Any

import click

from eventbus.app import import_modules
from eventbus.cli.base import cli
from eventbus.scheduling import cancel, scheduled, schedules
from eventbus.settings import get_settings


@cli.command("scheduled")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--cursor", type=click.IntRange(min=0), default=0, help="Where to start (from the previous page).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def scheduled_command(limit: int, cursor: int, as_json: bool) -> None:
    """List scheduled messages (delay=/at= and pending retries), soonest first."""
    page = scheduled(limit=limit, cursor=cursor)
    rows: list[dict[str, Any]] = [
        {
            "id": i.message_id,
            "due_at": i.due_at.isoformat(),
            "queue": i.queue,
            "priority": i.priority,
            "topic": i.topic,
            "retries": i.retries,
        }
        for i in page.items
    ]
    if as_json:
        click.echo(json.dumps({"items": rows, "next_cursor": page.next_cursor, "total": page.total}, indent=2))
        return
    for row in rows:
        click.echo(f"{row['due_at']}  {row['id']}  {row['queue']}  {row['priority']}  {row['topic'] or '-'}")
    more = f"; next: --cursor {page.next_cursor}" if page.next_cursor is not None else ""
    click.echo(f"{len(rows)} of {page.total} scheduled{more}")


@cli.command("cancel")
@click.argument("message_id")
def cancel_command(message_id: str) -> None:
    """Cancel a scheduled message by id (an event id or job id); exit 1 if it was not scheduled."""
    if not cancel(message_id):
        raise click.ClickException(f"{message_id} is not scheduled (unknown, already due, or cancelled)")
    click.echo(f"cancelled {message_id}")


@cli.command("schedules")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def schedules_command(as_json: bool) -> None:
    """List recurring schedules registered by workers, with their next and last run."""
    import_modules(get_settings())
    rows = [
        {
            "name": s.name,
            "topic": s.topic,
            "when": s.cron or f"every {s.every_s:g} s",
            "tz": s.tz,
            "next_run": s.next_run.isoformat(),
            "last_run": s.last_run.isoformat() if s.last_run else None,
        }
        for s in schedules()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']}  {row['topic']}  {row['when']} ({row['tz']})  next {row['next_run']}")


@cli.command("queues")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def queues_command(as_json: bool) -> None:
    """Show each queue's concurrency cap, rate limit and the retry rule every job on it obeys (from the environment).

    The configured queues, plus the default queue; any other queue takes JOB_MAX_RETRIES / JOB_RETRY_DELAY.
    """
    settings = get_settings()
    names = sorted({q.name for q in settings.queues} | {settings.default_queue})
    rows = []
    for q in (settings.queue_config(name) for name in names):
        rows.append(
            {
                "name": q.name,
                "concurrency": q.concurrency,
                "rate_limit": str(q.rate_limit) if q.rate_limit else None,
                "attempts": q.attempts,
                "max_retries": q.max_retries,
                "min_backoff_ms": q.min_backoff_ms,
                "max_backoff_ms": q.max_backoff_ms,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        cap = row["concurrency"] or "-"
        rate = row["rate_limit"] or "-"
        click.echo(
            f"{row['name']}: concurrency {cap}, rate {rate}, {row['attempts']} attempts from {row['min_backoff_ms']} ms"
        )
