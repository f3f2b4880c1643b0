"""The root ``eventbus`` group and the options every command shares (each maps to an env var)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

from eventbus import __version__
from eventbus.errors import EventBusError
from eventbus.settings import Settings, set_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="eventbus", message="%(prog)s %(version)s")
@click.option("--broker-url", envvar="EVENTBUS_BROKER_URL", help="redis://… or memory:// (EVENTBUS_BROKER_URL).")
@click.option("--namespace", envvar="EVENTBUS_NAMESPACE", help="Key prefix in the broker (EVENTBUS_NAMESPACE).")
def cli(broker_url: str | None, namespace: str | None) -> None:
    """eventbus: publish events, run workers, and watch and steer the queues."""
    settings = Settings.from_env()
    if broker_url:
        settings = dataclasses.replace(settings, broker_url=broker_url)
    if namespace:
        settings = dataclasses.replace(settings, namespace=namespace)
    set_settings(settings)


def json_object(text: str, name: str) -> dict[str, Any]:
    """``text`` parsed as a JSON object; bad input raises EventBusError naming ``name`` and the fix."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventBusError(
            f"{name} is not valid JSON ({exc.msg} at char {exc.pos}); pass e.g. '{{\"a\": 1}}'"
        ) from None
    if not isinstance(value, dict):
        raise EventBusError(f'{name} must be a JSON object, e.g. \'{{"name": "Ada"}}\'')
    return value
