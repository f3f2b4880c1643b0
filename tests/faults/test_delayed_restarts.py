"""Delayed jobs survive the restart of every worker (and of Redis): each runs once, never before it is due."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from eventbus import publish_many
from tests.faults.conftest import expected_pairs
from tests.faults.table import report

pytestmark = [pytest.mark.slow]

DELAY_S = 3.0


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_delayed_jobs_across_worker_and_broker_restarts(rig, kind):
    # Given 40 events published with a 3 s delay while a worker runs
    bus = rig(kind)
    worker = bus.start_worker(threads=4)
    published_at = time.time()
    events = publish_many([("fault.happened", {"n": i}) for i in range(40)], delay=timedelta(seconds=DELAY_S))
    expected = expected_pairs(e.id for e in events)
    time.sleep(0.5)
    # When the worker goes away before they are due: SIGKILL on SQLite (leases keep the rows);
    # on Redis a graceful SIGTERM (a SIGKILLed holder needs the janitor), then Redis itself is SIGKILLed
    # and restarted
    if kind == "sqlite":
        worker.kill()
        how = "worker SIGKILLed"
    else:
        assert worker.terminate(timeout_s=30) == 0
        assert bus.redis is not None
        bus.redis.kill()
        bus.redis.start()
        how = "worker SIGTERMed, Redis SIGKILLed + restarted"
    assert bus.ledger.total() == 0
    # ... and a new worker starts only after they fell due
    time.sleep(max(0.0, published_at + DELAY_S + 0.5 - time.time()))
    back_at = time.time()
    bus.start_worker(threads=4)
    # Then each delayed job runs once, none before its due time
    bus.wait_done(expected, timeout_s=60)
    earliest = min(ended for _, _, ended in bus.ledger.rows())
    assert earliest >= published_at + DELAY_S
    report(
        "delayed jobs across restarts",
        kind,
        bus.ledger.count(expected),
        recovery_s=(bus.ledger.first_after(back_at) or back_at) - back_at,
        note=f"delay {DELAY_S:.0f} s; {how} before due; recovery: new worker started -> first job",
    )
