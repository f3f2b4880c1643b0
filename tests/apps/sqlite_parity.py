"""A schedule and limited queues for the multi-process SQLite parity tests; runs are recorded in the bus's file.

Subscribers record through :func:`tests.apps.sqlite_recording.run` (table ``test_calls``); ``sq_tick``
also records the tick it received in ``test_tick_events``. Each published tick event is one delivery to
``sq_tick`` (fan-outs run inside the events consumer, past any middleware), so more than one row per
tick would mean a tick was published twice.
"""

from __future__ import annotations

import os
import signal
import time

from eventbus import Event, add_schedule, declare_topic, subscribe
from tests.apps.sqlite_recording import run, store_of_bus

declare_topic("sq.tick")
declare_topic("sq.capped")
declare_topic("sq.limited")
declare_topic("sq.poison")

add_schedule("sq-every-second", topic="sq.tick", every_s=1, payload={"source": "sqlite_parity"})

TICK_SCHEMA = ["CREATE TABLE IF NOT EXISTS test_tick_events (scheduled_for TEXT NOT NULL, pid INTEGER NOT NULL)"]


@subscribe("sq.tick", name="sq_tick")
def sq_tick(event: Event) -> None:
    run("sq_tick", event)
    store = store_of_bus().store
    store.ensure_schema("test_tick_events", TICK_SCHEMA)
    store.execute("INSERT INTO test_tick_events VALUES (?, ?)", (event.headers["scheduled_for"], os.getpid()))


@subscribe("sq.capped", name="sq_capped", queue="sq_capped")
def sq_capped(event: Event) -> None:
    run("sq_capped", event)


@subscribe("sq.limited", name="sq_limited", queue="sq_limited")
def sq_limited(event: Event) -> None:
    run("sq_limited", event)


@subscribe("sq.poison", name="sq_poison", queue="sq_poison")
def sq_poison(event: Event) -> None:
    """Records the call, then kills its own worker process (``kill_after_ms`` later) when the payload says so."""
    run("sq_poison", event)
    if event.payload.get("kill"):
        time.sleep(event.payload.get("kill_after_ms", 0) / 1000)
        os.kill(os.getpid(), signal.SIGKILL)
