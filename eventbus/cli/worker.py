"""``eventbus worker``: Dramatiq's worker command for ``eventbus.workers``, with a prompt stop.

It runs Dramatiq's own CLI in this process. The one change: Dramatiq's main process wakes its log
watcher once a second and waits for it before exiting, so a stop took up to a second longer than the
worker processes needed. Here the watcher's stop event also closes a pipe the watcher waits on.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import threading
from typing import Any

import click
import dramatiq.cli

from eventbus.cli.base import cli
from eventbus.settings import get_settings, set_settings

DRAMATIQ_DEFAULT_THREADS = 8


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("-p", "--processes", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "-t", "--threads", type=click.IntRange(min=1), default=None, help="Threads per process [QUEUE_CONCURRENCY, else 8]."
)
@click.option("--pin", is_flag=True, help="Pin each worker process to a CPU of its own (EVENTBUS_PIN_WORKERS=1).")
@click.pass_context
def worker(ctx: click.Context, processes: int, threads: int | None, pin: bool) -> None:
    """Run workers (``dramatiq eventbus.workers``, stopping promptly); extra options go to dramatiq."""
    settings = get_settings()
    if pin:
        settings = dataclasses.replace(settings, pin_workers=True)
        set_settings(settings)  # forked worker processes inherit these settings
        os.environ["EVENTBUS_PIN_WORKERS"] = "1"
    # and spawned ones read the environment: a --broker-url given here reaches them through it
    os.environ.update(EVENTBUS_BROKER_URL=settings.broker_url, EVENTBUS_NAMESPACE=settings.namespace)
    argv = [
        "eventbus.workers",
        "-p", str(processes), "-t", str(threads or settings.worker_threads or DRAMATIQ_DEFAULT_THREADS),
        "--worker-shutdown-timeout", str(int(settings.shutdown_timeout_s * 1000)),
        *ctx.args,
    ]  # fmt: skip
    args = dramatiq.cli.make_argument_parser().parse_args(argv)  # type: ignore[no-untyped-call]
    # Both are looked up when main() runs; the log watcher's stop event is the only Event dramatiq.cli makes.
    setattr(dramatiq.cli, "Event", _WakingEvent)  # noqa: B010
    setattr(dramatiq.cli, "watch_logs", _watch_logs)  # noqa: B010
    ctx.exit(dramatiq.cli.main(args))  # type: ignore[no-untyped-call]


class _WakingEvent(threading.Event):
    """A stop event that also closes a pipe, waking Dramatiq's log watcher out of its one-second wait."""

    def __init__(self) -> None:
        super().__init__()
        self.wake, self._waker = multiprocessing.Pipe(duplex=False)

    def set(self) -> None:
        super().set()
        self._waker.close()


_dramatiq_watch_logs = dramatiq.cli.watch_logs


def _watch_logs(log_filename: Any, pipes: list[Any], stop: threading.Event) -> None:
    extra = [stop.wake] if isinstance(stop, _WakingEvent) else []
    _dramatiq_watch_logs(log_filename, [*pipes, *extra], stop)  # type: ignore[no-untyped-call]
