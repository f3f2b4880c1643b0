"""``eventbus outbox``: see and drain the outbox (EVENTBUS_OUTBOX)."""

from __future__ import annotations

import json

import click

from eventbus.broker import describe, get_broker
from eventbus.cli.base import cli
from eventbus.cli.signals import stop_event
from eventbus.errors import ConfigError, PublishError
from eventbus.outbox import Relay, get_outbox, outbox_status
from eventbus.settings import get_settings


@cli.group()
def outbox() -> None:
    """The local outbox that keeps events, emails and notifications while the broker is down (EVENTBUS_OUTBOX)."""


@outbox.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Show how many messages wait in the outbox (per queue), and for how long the oldest has waited."""
    info = outbox_status()
    if as_json:
        click.echo(json.dumps(info))
    elif not info["enabled"]:
        click.echo("outbox: off (set EVENTBUS_OUTBOX to a file path to turn it on)")
    else:
        age = "-" if info["oldest_age_s"] is None else f"{info['oldest_age_s']:.1f} s"
        queues = "".join(f", {queue} {n}" for queue, n in info["queues"].items())
        click.echo(f"outbox {info['path']}: {info['depth']} message(s) waiting{queues}; oldest {age}")


@outbox.command()
@click.option("--once", is_flag=True, help="Drain what is there now, then exit (exit 1 if the broker is down).")
@click.option("--interval-s", type=click.FloatRange(min=0.05), default=0.5, show_default=True)
def relay(once: bool, interval_s: float) -> None:
    """Send the outbox's messages to the broker in order (workers do this too); runs until stopped."""
    settings = get_settings()
    box = get_outbox(settings)
    if box is None:
        raise ConfigError("EVENTBUS_OUTBOX is not set; set it to the outbox file the publishers use")
    broker = get_broker()
    worker = Relay(box, broker, dedup_ttl_s=settings.dedup_window_s, interval_s=interval_s)
    if once:
        try:
            sent = box.drain(broker, dedup_ttl_s=settings.dedup_window_s, owner=worker.owner)
        except Exception as exc:
            raise PublishError(f"outbox relay: {describe(broker)} did not take the messages: {exc}") from None
        finally:
            box.release(worker.owner)
        left = box.depth()
        click.echo(f"relayed {sent} message(s); {left} left" + (" (another relay holds the lease)" if left else ""))
        return
    stop = stop_event()
    click.echo(f"outbox relay: {box.path} -> {describe(broker)}; Ctrl-C to stop")
    worker.start()
    while not stop.wait(0.5):
        pass
    worker.stop()
    click.echo(f"outbox relay: stopped after relaying {worker.relayed} message(s)")
