"""Start marks and acks of all worker threads of a SQLite worker, group-committed: none is left behind."""

from __future__ import annotations

from collections import Counter

import pytest

import tests.apps.sqlite_recording as rec
from eventbus import publish_many
from eventbus.brokers.sqlite.broker import SQLiteBroker
from tests.conftest import wait_for

pytestmark = [pytest.mark.slow]

APP = "tests.apps.sqlite_recording"


def calls(bus: SQLiteBroker) -> Counter[str]:
    bus.store.ensure_schema("test_calls", rec.SCHEMA)
    rows = bus.store.execute("SELECT subscription, event_id FROM test_calls")
    return Counter(f"{sub}|{event_id}" for sub, event_id in rows)


def left_in_file(bus: SQLiteBroker) -> tuple[int, int]:
    """(messages, start marks) still in the file."""
    [(messages,)] = bus.store.execute("SELECT COUNT(*) FROM messages")
    [(marks,)] = bus.store.execute("SELECT COUNT(*) FROM message_runs")
    return messages, marks


def test_acks_and_start_marks_are_all_written_while_the_worker_idles(sqlite_bus, start_sqlite_worker):
    # Given a worker whose start marks and acks are group-committed (eventbus.brokers.group_commit)
    worker = start_sqlite_worker(APP)
    events = publish_many([("sq.happened", {"n": i}) for i in range(300)])
    wait_for(lambda: sum(calls(sqlite_bus).values()) >= 600, 120, worker)
    # Then, with no further job to carry them, the last acks and marks still reach the file promptly
    wait_for(lambda: left_in_file(sqlite_bus) == (0, 0), 5, worker)
    assert worker.terminate() == 0
    assert left_in_file(sqlite_bus) == (0, 0)
    # And every delivery ran once
    assert calls(sqlite_bus) == {f"{s}|{e.id}": 1 for e in events for s in ("sq_first", "sq_second")}
