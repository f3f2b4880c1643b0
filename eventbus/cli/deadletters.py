"""``eventbus dlq``: list, show, requeue and purge dead letters (thin over :class:`ControlPlane`)."""

from __future__ import annotations

import json

import click

from eventbus.cli.base import cli
from eventbus.cli.control import F, duration, emit_json, faces_errors, json_option, plane, show, when
from eventbus.control import DeadLetterFilter


@cli.group()
def dlq() -> None:
    """Dead letters: list, show, requeue, purge."""


def _filter(queue: str | None, subscription: str | None, error: str | None) -> DeadLetterFilter | None:
    if queue is None and subscription is None and error is None:
        return None
    return DeadLetterFilter(queue=queue, subscription=subscription, error_contains=error)


filter_options = [
    click.option("--queue", default=None, help="Only this queue."),
    click.option("--subscription", default=None, help="Only deliveries to this subscription."),
    click.option("--error", default=None, help="Only letters whose error contains this text."),
]


def with_filters(fn: F) -> F:
    for option in reversed(filter_options):
        fn = option(fn)
    return fn


@dlq.command("list")
@with_filters
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", default=None, help="next_cursor of the previous page.")
@json_option
@faces_errors
def dlq_list(
    queue: str | None, subscription: str | None, error: str | None, limit: int, cursor: str | None, as_json: bool
) -> None:
    """Dead letters, newest first."""
    page = plane().dead_letters(match=_filter(queue, subscription, error), limit=limit, cursor=cursor)
    if as_json:
        emit_json(page.to_dict())
        return
    from rich.table import Table

    table = Table("job id", "queue", "subscription / actor", "reason", "attempts", "dead at", "error",
                  title="dead letters")  # fmt: skip
    for d in page.items:
        table.add_row(d.job_id, d.queue, d.subscription or d.actor, d.reason.value, str(d.attempts),
                      when(d.dead_at_ms), (d.error or "")[:60])  # fmt: skip
    show(table)
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}")


@dlq.command("show")
@click.argument("job_id")
@json_option
@faces_errors
def dlq_show(job_id: str, as_json: bool) -> None:
    """One dead letter: payload, error and traceback of the final attempt, attempts, times."""
    letter = plane().get_dead_letter(job_id)
    if as_json:
        emit_json(letter.to_dict())
        return
    from rich.table import Table

    table = Table(show_header=False, title=f"dead letter {letter.job_id}")
    table.add_row("reason", letter.reason.value)
    for key in ("queue", "actor", "subscription", "event_id", "topic", "attempts", "error"):
        table.add_row(key, str(getattr(letter, key)))
    table.add_row("enqueued at", when(letter.enqueued_at_ms))
    table.add_row("dead at", when(letter.dead_at_ms))
    table.add_row("payload", json.dumps({"args": letter.args, "kwargs": letter.kwargs}, default=str)[:2000])
    show(table)
    click.echo(letter.traceback or "(no traceback)")


@dlq.command("requeue")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every dead letter (of --queue/--subscription if given).")
@with_filters
@click.option("--limit", type=click.IntRange(min=1), default=None)
@json_option
@faces_errors
def dlq_requeue(
    job_ids: tuple[str, ...],
    everything: bool,
    queue: str | None,
    subscription: str | None,
    error: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Put dead letters back in their queues: by JOB_IDS, by filter, or --all."""
    match = _filter(queue, subscription, error)
    if not job_ids and match is None and not everything:
        raise click.UsageError("name the dead letters: JOB_IDS, a filter (--queue/--subscription/--error) or --all")
    result = plane().requeue_dead_letters(list(job_ids) or None, match=match, everything=everything, limit=limit)
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(f"requeued {len(result.requeued)} dead letter(s)")
        for missing in result.missing:
            click.echo(f"not a dead letter (any more): {missing}", err=True)
    if job_ids and result.missing:
        raise click.ClickException(f"{len(result.missing)} of the named job(s) had no dead letter")


@dlq.command("purge")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every dead letter (of --queue/--subscription if given).")
@with_filters
@click.option("--older-than", default=None, callback=duration, help="Only letters dead for longer than this (7d).")
@json_option
@faces_errors
def dlq_purge(
    job_ids: tuple[str, ...],
    everything: bool,
    queue: str | None,
    subscription: str | None,
    error: str | None,
    older_than: float | None,
    as_json: bool,
) -> None:
    """Delete dead letters: by JOB_IDS, by filter, by age, or --all."""
    match = _filter(queue, subscription, error)
    if not job_ids and match is None and older_than is None and not everything:
        raise click.UsageError("name the dead letters: JOB_IDS, a filter, --older-than or --all")
    n = plane().purge_dead_letters(list(job_ids) or None, match=match, older_than_s=older_than, everything=everything)
    emit_json({"purged": n}) if as_json else click.echo(f"purged {n} dead letter(s)")


# -- replay, pause, clean, health ----------------------------------------------------------------
