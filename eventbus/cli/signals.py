"""How long-running commands (``smtp-sink``, ``outbox relay``) learn that they should stop."""

from __future__ import annotations

import signal
import threading
from typing import Any


def stop_event() -> threading.Event:
    """An event that SIGINT and SIGTERM set; wait on it in short steps: ``while not stop.wait(0.5)``.

    The kernel may hand a signal to any thread of the process. Python then runs the handler only
    when the main thread next wakes, so a main thread in one long sleep would never stop.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop
