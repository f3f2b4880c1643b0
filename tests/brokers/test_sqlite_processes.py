"""Issue 7 acceptance 1-3: real publisher and worker processes sharing one SQLite file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from itertools import pairwise

import pytest

import tests.apps.sqlite_recording as rec
from eventbus import publish_many
from eventbus.delivery import delivery_message
from eventbus.event import Event
from eventbus.subscriber import get_subscription
from tests.conftest import ROOT, wait_for

pytestmark = [pytest.mark.slow]

APP = "tests.apps.sqlite_recording"

PUBLISHER = """
import json, sys
import tests.apps.sqlite_recording  # declares the topics
from eventbus import publish_event
ids = [publish_event("sq.happened", {"n": i}).id for i in range(int(sys.argv[1]))]
print(json.dumps(ids))
"""


def calls(bus) -> list[tuple]:
    bus.store.ensure_schema("test_calls", rec.SCHEMA)
    return bus.store.execute("SELECT subscription, event_id, message_id, pid, started_at, ended_at FROM test_calls")


def done(bus) -> int:
    return len(calls(bus))


def test_a_publisher_process_and_a_worker_process_deliver_each_event_once_per_subscriber(
    sqlite_bus, sqlite_url, start_sqlite_worker
):
    # Given `dramatiq eventbus.workers` on the file, with two subscribers of sq.happened
    worker = start_sqlite_worker(APP, threads=8)
    # When another process publishes 1,000 events to the same file
    env = dict(os.environ, EVENTBUS_BROKER_URL=sqlite_url, EVENTBUS_DEFAULT_SUBSCRIBERS="0", PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", PUBLISHER, "1000"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    event_ids = json.loads(out.stdout)
    # Then every (event, subscriber) pair runs exactly once
    wait_for(lambda: done(sqlite_bus) >= 2000, 180, worker)
    time.sleep(0.5)
    seen = Counter((sub, event_id) for sub, event_id, *_ in calls(sqlite_bus))
    assert seen == dict.fromkeys(((s, e) for e in event_ids for s in ("sq_first", "sq_second")), 1)
    assert sqlite_bus.dead_letters() == []


def test_sigkill_mid_run_redelivers_leased_messages_after_the_lease_and_loses_nothing(sqlite_bus, start_sqlite_worker):
    # Given a worker busy with slow deliveries (leases of 2 s)
    worker = start_sqlite_worker(APP, threads=4)
    published = publish_many([("sq.happened", {"n": i, "sleep_ms": 150}) for i in range(40)])
    wait_for(lambda: done(sqlite_bus) >= 10, 60, worker)
    # When the whole worker is SIGKILLed in the middle of the run
    worker.kill()
    killed_at = time.time() * 1000
    held = sqlite_bus.store.execute(
        "SELECT message_id, visible_at FROM messages WHERE lease_owner IS NOT NULL AND visible_at > ?", (killed_at,)
    )
    assert held, "the killed worker held leased messages"
    before = {row[2] for row in calls(sqlite_bus)}
    # Then a new worker gets the held messages back once their lease has run out, and finishes everything
    worker = start_sqlite_worker(APP, threads=4)
    wait_for(
        lambda: (
            sqlite_bus.queue_size("events") + sqlite_bus.queue_size("default") + sqlite_bus.queue_size("sq_second") == 0
        ),
        120,
        worker,
    )
    rows = calls(sqlite_bus)
    seen = {(sub, event_id) for sub, event_id, *_ in rows}
    assert seen == {(s, e.id) for e in published for s in ("sq_first", "sq_second")}  # none lost
    runs_after = {mid: started for _, _, mid, _, started, _ in rows if mid not in before}
    for message_id, visible_at in held:
        if message_id in runs_after:  # a held delivery (fan-outs record nothing) ran again ...
            assert runs_after[message_id] * 1000 >= visible_at - 5  # ... only once its lease had expired
    assert any(message_id in runs_after for message_id, _ in held)
    assert sqlite_bus.dead_letters() == []
    # And the file is intact
    assert sqlite_bus.store.integrity_check() == "ok"


def test_four_workers_of_eight_threads_drain_ten_thousand_jobs_without_lock_errors_or_overlap(
    sqlite_bus, sqlite_settings, start_sqlite_worker
):
    # Given 10,000 delivery jobs waiting in one file
    sub = get_subscription("sq_load")
    assert sub is not None
    messages = [
        delivery_message(Event(topic="sq.load", payload={"n": i}, id=f"load-{i}").to_dict(), sub, None, sqlite_settings)
        for i in range(10_000)
    ]
    assert len(sqlite_bus.enqueue_many(messages)) == 10_000
    # When 4 worker processes x 8 threads drain them
    workers = [start_sqlite_worker(APP, processes=1, threads=8, wait=False) for _ in range(4)]
    wait_for(lambda: sqlite_bus.queue_size("sq_load") == 0, 600, workers[0])
    # Then every job ran, none twice at once (nor twice at all), none failed
    rows = calls(sqlite_bus)
    assert len({row[2] for row in rows}) == 10_000
    by_job: dict[str, list[tuple[float, float]]] = {}
    for _, _, message_id, _, started, ended in rows:
        by_job.setdefault(message_id, []).append((started, ended))
    overlapping = [m for m, runs in by_job.items() if any(b[0] < a[1] for a, b in pairwise(sorted(runs)))]
    assert overlapping == []
    assert max(len(runs) for runs in by_job.values()) == 1
    assert sqlite_bus.dead_letters() == []
    assert len({row[3] for row in rows}) == 4  # all four processes took part
    # And no 'database is locked' reached a job or a log line at ERROR
    for worker in workers:
        worker.terminate()
        log = worker.output()
        assert "locked" not in log.lower()
        assert not re.search(r"\[(ERROR|CRITICAL)\]", log), log[-3000:]
