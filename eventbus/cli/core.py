"""Core commands: publish, topics, demo."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import click

from eventbus.app import import_modules
from eventbus.bus import publish_event
from eventbus.cli.base import cli, json_object
from eventbus.priority import Priority
from eventbus.settings import get_settings
from eventbus.subscriber import all_subscriptions
from eventbus.topic import all_topics


@cli.command()
@click.argument("topic")
@click.argument("payload", default="{}")
@click.option(
    "--priority",
    default=None,
    help="critical, high, normal, low; urgent (= critical); or 1-20 (1 = critical, 20 = low).",
)
@click.option("--delay-s", type=click.FloatRange(min=0), default=None, help="Deliver after this many seconds.")
@click.option("--event-id", default=None, help="Idempotency: the same id twice publishes once.")
def publish(topic: str, payload: str, priority: str | None, delay_s: float | None, event_id: str | None) -> None:
    """Publish TOPIC with a JSON object PAYLOAD; prints the event id."""
    data = json_object(payload, "PAYLOAD")
    level = Priority.parse(priority, Priority.NORMAL)  # bad input fails before the payload is imported or sent
    import_modules(get_settings())
    event = publish_event(
        topic,
        data,
        priority=level if priority else None,
        delay=timedelta(seconds=delay_s) if delay_s is not None else None,
        event_id=event_id,
    )
    click.echo(event.id)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def topics(as_json: bool) -> None:
    """List declared topics with their schema fields and subscriptions."""
    import_modules(get_settings())
    rows: list[dict[str, Any]] = []
    for t in all_topics():
        fields = list(t.schema.model_fields) if t.schema else []
        subs = [s for s in all_subscriptions() if s.matches(t.name)]
        rows.append(
            {
                "topic": t.name,
                "schema": t.schema.__name__ if t.schema else None,
                "fields": fields,
                "subscriptions": [
                    {"name": s.name, "queue": s.queue or get_settings().default_queue, "priority": s.priority.value}
                    for s in subs
                ],
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("topic", "schema", "subscriptions (queue, priority)")
    for row in rows:
        listed = "\n".join(f"{s['name']} ({s['queue']}, {s['priority']})" for s in row["subscriptions"])
        schema = f"{row['schema']}({', '.join(row['fields'])})" if row["schema"] else "any object"
        table.add_row(row["topic"], schema, listed or "-")
    Console().print(table)


@cli.command()
@click.option("--keep", is_flag=True, help="Keep the previous run's database and mail folder.")
def demo(keep: bool) -> None:
    """Run the main scenario on the embedded broker, a worker and a local SMTP sink; print a summary."""
    from eventbus.demo import run

    run(keep=keep)
