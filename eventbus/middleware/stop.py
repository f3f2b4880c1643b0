"""Prompt stops: a worker process started by ``dramatiq`` exits as soon as its running jobs finish.

Dramatiq's worker process looks at its stop flag once a second and its consumers once per worker timeout
(1 s), so an idle worker took seconds to stop. This middleware shortens the worker timeout and, in a
process of Dramatiq's CLI, stops the worker from the SIGTERM handler itself. A second stop signal
(half a second or more after the first) exits at once; it never leaves the process running.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import dramatiq

from eventbus.settings import Settings

logger = logging.getLogger("eventbus")

WORKER_TIMEOUT_MS = 100  # how often an idle consumer or worker thread looks for a stop (no broker command)
# A signal to the whole process group (systemd's KillMode=control-group, a terminal's Ctrl-C) reaches a
# worker process twice: directly and forwarded by Dramatiq's main process. Within this window it is one stop.
SAME_STOP_S = 0.5
RET_KILLED = 1  # dramatiq.cli.RET_KILLED: the exit code of a killed worker process
_THREAD_FLAGS = ("-t", "--threads")


class PromptStop(dramatiq.Middleware):
    """Stop within ``WORKER_TIMEOUT_MS`` of SIGTERM when idle; set threads from QUEUE_CONCURRENCY."""

    def __init__(self, settings: Settings) -> None:
        self.shutdown_timeout_ms = int(settings.shutdown_timeout_s * 1000)
        self.worker_threads = settings.worker_threads

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Called in each worker process before its threads start."""
        if "dramatiq_worker_timeout" not in os.environ:
            worker.worker_timeout = min(worker.worker_timeout, WORKER_TIMEOUT_MS)
        if self.worker_threads and not _threads_given(sys.argv):
            worker.worker_threads = self.worker_threads

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """In a process of Dramatiq's CLI, stop from the signal handler instead of the next 1 s tick."""
        if threading.current_thread() is not threading.main_thread():
            return
        dramatiq_handler = signal.getsignal(signal.SIGTERM)
        if not _is_dramatiq_worker_handler(dramatiq_handler):
            return
        assert callable(dramatiq_handler)
        handler = _stop_handler(dramatiq_handler, broker, worker, self.shutdown_timeout_ms)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) is dramatiq_handler:
                signal.signal(signum, handler)
        # Dramatiq's worker processes ignore SIGINT (the main process turns Ctrl-C into SIGTERM); here a
        # SIGINT sent to a worker process alone stops it too, and Ctrl-C's copy counts as the same stop.
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, handler)


def _stop_handler(
    dramatiq_handler: Callable[[int, FrameType | None], Any],
    broker: dramatiq.Broker,
    worker: dramatiq.Worker,
    timeout_ms: int,
) -> Callable[[int, FrameType | None], None]:
    first_at: float | None = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal first_at
        now = time.monotonic()
        if first_at is None:
            first_at = now
            dramatiq_handler(signum, frame)  # logs "Stopping worker process..." and ends Dramatiq's loop
            worker.stop(timeout=timeout_ms)
            broker.close()
            raise SystemExit(0)
        if now - first_at < SAME_STOP_S:
            return  # the process group's copy of the signal and the one Dramatiq's main process forwards
        # A second stop: exit now. The running jobs' messages return to their queue (crash recovery).
        logger.warning("second stop signal: exiting now; running jobs go back to their queue")
        os._exit(RET_KILLED)

    return on_signal


def _is_dramatiq_worker_handler(handler: object) -> bool:
    return getattr(handler, "__module__", None) == "dramatiq.cli" and "worker_process" in getattr(
        handler, "__qualname__", ""
    )


def _threads_given(argv: list[str]) -> bool:
    """True when the command line sets Dramatiq's thread count (``-t 4``, ``-t4``, ``--threads=4``)."""
    return any(
        a in _THREAD_FLAGS or a.startswith("--threads=") or (a.startswith("-t") and a[2:].isdigit()) for a in argv[1:]
    )
