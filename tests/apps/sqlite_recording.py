"""Subscribers for the multi-process SQLite tests; each finished job is recorded in the bus's own file.

The record (subscription, event, message id, pid, start and end time) is written through the
broker's store surface (``broker.store.transaction()``), inside the job: a ``database is locked``
reaching a job would fail it, so a clean run shows the store's retries keep it away.
"""

from __future__ import annotations

import os
import time

import dramatiq

from eventbus import Event, declare_topic, subscribe
from eventbus.broker import get_broker
from eventbus.brokers.sqlite.broker import SQLiteBroker

declare_topic("sq.happened")
declare_topic("sq.load")

SCHEMA = [
    """
    CREATE TABLE test_calls (
        subscription TEXT NOT NULL, event_id TEXT NOT NULL, message_id TEXT NOT NULL,
        pid INTEGER NOT NULL, started_at REAL NOT NULL, ended_at REAL NOT NULL
    )
    """
]


def store_of_bus() -> SQLiteBroker:
    broker = get_broker()
    assert isinstance(broker, SQLiteBroker), "these subscribers need the SQLite broker"
    broker.store.ensure_schema("test_calls", SCHEMA)
    return broker


def run(name: str, event: Event) -> None:
    started = time.time()
    delay_ms = float(event.payload.get("sleep_ms", 0))
    if delay_ms:
        time.sleep(delay_ms / 1000)
    message = dramatiq.middleware.CurrentMessage.get_current_message()
    message_id = message.message_id if message is not None else ""
    with store_of_bus().store.transaction() as conn:
        conn.execute(
            "INSERT INTO test_calls VALUES (?, ?, ?, ?, ?, ?)",
            (name, event.id, message_id, os.getpid(), started, time.time()),
        )


@subscribe("sq.happened", name="sq_first")
def sq_first(event: Event) -> None:
    run("sq_first", event)


@subscribe("sq.happened", name="sq_second", queue="sq_second")
def sq_second(event: Event) -> None:
    run("sq_second", event)


@subscribe("sq.load", name="sq_load", queue="sq_load")
def sq_load(event: Event) -> None:
    run("sq_load", event)
