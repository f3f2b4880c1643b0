"""The SQLite recording subscribers plus a plain actor on the events queue (the fan-out consumer hands it to a thread)."""

from __future__ import annotations

import os
import time

import dramatiq

from eventbus.broker import get_broker
from eventbus.delivery import EVENTS_QUEUE
from tests.apps.sqlite_recording import store_of_bus  # and its subscribers of sq.happened


def on_events_queue(n: int) -> None:
    """Records ``on_events|n`` in the bus's file, like the recording subscribers."""
    now = time.time()
    with store_of_bus().store.transaction() as conn:
        conn.execute(
            "INSERT INTO test_calls VALUES (?, ?, ?, ?, ?, ?)", ("on_events", str(n), "", os.getpid(), now, now)
        )


dramatiq.Actor(
    on_events_queue, broker=get_broker(), actor_name="sq.on_events", queue_name=EVENTS_QUEUE, priority=0, options={}
)
