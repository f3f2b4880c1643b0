"""Subscribers for the control-plane process tests on SQLite; calls are recorded in the bus's own file.

``sqc.happened``: ``sqc_ok`` (queue ``sqc_ok``) succeeds; ``sqc_broken`` (queue ``sqc_dead``,
max_retries=2) fails until the table ``test_fixed`` has a row.
"""

from __future__ import annotations

from eventbus import Event, declare_topic, subscribe
from eventbus.broker import get_broker
from eventbus.brokers.sqlite.broker import SQLiteBroker
from eventbus.brokers.sqlite.store import SQLiteStore

declare_topic("sqc.happened")

SCHEMA = [
    """
    CREATE TABLE IF NOT EXISTS test_ctl_calls (subscription TEXT NOT NULL, event_id TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS test_fixed (at INTEGER NOT NULL)
    """
]


def store() -> SQLiteStore:
    broker = get_broker()
    assert isinstance(broker, SQLiteBroker), "these subscribers need the SQLite broker"
    broker.store.ensure_schema("test_ctl", SCHEMA)
    return broker.store


def record(name: str, event: Event) -> None:
    store().execute("INSERT INTO test_ctl_calls VALUES (?, ?)", (name, event.id))


@subscribe("sqc.happened", name="sqc_ok", queue="sqc_ok")
def sqc_ok(event: Event) -> None:
    record("sqc_ok", event)


@subscribe("sqc.happened", name="sqc_broken", queue="sqc_dead", max_retries=2, min_backoff_ms=50, max_backoff_ms=200)
def sqc_broken(event: Event) -> None:
    if store().execute("SELECT COUNT(*) FROM test_fixed")[0][0]:
        record("sqc_fixed", event)
        return
    record("sqc_broken", event)
    raise RuntimeError(f"sqc_broken cannot handle {event.id}")
