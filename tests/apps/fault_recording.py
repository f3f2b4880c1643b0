"""Subscribers for the fault suite: each finished job is recorded in a SQLite file of the test's own.

The file (``FAULTS_RECORD_DB``) is independent of the broker under test, so recording keeps
working while Redis is killed, stalled or restarted. A row is written when the job's work is
done (after its ``sleep_ms``), like the effect of a real job; a job that ran twice leaves two rows.
"""

from __future__ import annotations

import os
import time

import dramatiq

from eventbus import Event, declare_topic, subscribe
from eventbus.brokers.sqlite.store import SQLiteStore

declare_topic("fault.happened")
declare_topic("fault.poison")

SCHEMA = [
    """
    CREATE TABLE calls (
        subscription TEXT NOT NULL, event_id TEXT NOT NULL, message_id TEXT NOT NULL,
        pid INTEGER NOT NULL, started_at REAL NOT NULL, ended_at REAL NOT NULL
    )
    """
]

_store: SQLiteStore | None = None


def store() -> SQLiteStore:
    global _store
    if _store is None:
        _store = SQLiteStore(os.environ["FAULTS_RECORD_DB"])
        _store.ensure_schema("fault_calls", SCHEMA)
    return _store


def run(name: str, event: Event) -> None:
    started = time.time()
    sleep_ms = float(event.payload.get("sleep_ms", 0))
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
    message = dramatiq.middleware.CurrentMessage.get_current_message()
    store().execute(
        "INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?)",
        (name, event.id, message.message_id if message else "", os.getpid(), started, time.time()),
    )


@subscribe("fault.happened", name="fault_a", queue="fault_a")
def fault_a(event: Event) -> None:
    run("fault_a", event)


@subscribe("fault.happened", name="fault_b", queue="fault_b")
def fault_b(event: Event) -> None:
    run("fault_b", event)


@subscribe("fault.poison", name="fault_poison", queue="fault_a", max_retries=1, min_backoff_ms=50)
def fault_poison(event: Event) -> None:
    raise RuntimeError(f"poison event {event.id}")
