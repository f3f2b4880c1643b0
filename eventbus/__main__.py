"""``python -m eventbus``: the eventbus command."""

from eventbus.cli import run

run()
