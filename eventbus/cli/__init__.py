"""The ``eventbus`` command: one group, with commands from one module per area."""

from __future__ import annotations

import sys

import click

from eventbus.cli.base import cli
from eventbus.errors import EventBusError, PublishError

# Each module adds its commands to ``cli`` when imported.
from eventbus.cli import core  # noqa: F401  isort: skip
from eventbus.cli import serve  # noqa: F401  isort: skip
from eventbus.cli import mail  # noqa: F401  isort: skip
from eventbus.cli import queues  # noqa: F401  isort: skip
from eventbus.cli import control  # noqa: F401  isort: skip
from eventbus.cli import deadletters  # noqa: F401  isort: skip
from eventbus.cli import outbox  # noqa: F401  isort: skip
from eventbus.cli import worker  # noqa: F401  isort: skip
from eventbus.cli import config  # noqa: F401  isort: skip


def main(argv: list[str] | None = None) -> int:
    """Run the CLI: 0 ok, 1 failure or not found, 2 bad usage (one line on stderr)."""
    try:
        # Without standalone mode, click returns a command's ctx.exit(code) instead of exiting.
        code = cli.main(args=argv, prog_name="eventbus", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        click.echo("eventbus: aborted", err=True)
        return 1
    except click.UsageError as exc:
        click.echo(f"eventbus: {exc.format_message()}", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"eventbus: {exc.format_message()}", err=True)
        return exc.exit_code
    except PublishError as exc:
        click.echo(f"eventbus: {exc}", err=True)
        return 1
    except EventBusError as exc:
        click.echo(f"eventbus: {exc}", err=True)
        return 2
    return code if isinstance(code, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
