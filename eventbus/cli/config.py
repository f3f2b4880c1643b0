"""``eventbus config``: the effective configuration, where each value came from, secrets hidden."""

from __future__ import annotations

import json
import os

import click
from click.core import ParameterSource

from eventbus.cli.base import cli
from eventbus.settings import get_settings
from eventbus.settings_report import describe, format_value

# The root group's options that override a setting, by field.
_OPTIONS = {"broker_url": "--broker-url", "namespace": "--namespace"}


@cli.command("config")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def config_command(ctx: click.Context, as_json: bool) -> None:
    """Show every setting: its variable, effective value and source (default or environment)."""
    root = ctx.find_root()
    given = {name: root.get_parameter_source(name) for name in _OPTIONS}
    options = {name: flag for name, flag in _OPTIONS.items() if given[name] == ParameterSource.COMMANDLINE}
    rows = describe(get_settings(), os.environ, options=options)
    if as_json:
        click.echo(json.dumps({row.name: row.to_dict() for row in rows}, indent=2))
        return
    table = [("SETTING", "VALUE", "SOURCE")]
    table += [(row.variable or row.name, format_value(row.value), row.source_label) for row in rows]
    width = [max(len(line[i]) for line in table) for i in range(2)]
    for name, value, source in table:
        click.echo(f"{name:<{width[0]}}  {value:<{width[1]}}  {source}".rstrip())
