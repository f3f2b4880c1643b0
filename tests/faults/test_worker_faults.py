"""Workers killed (SIGKILL) or stopped (SIGTERM) in the middle of a backlog lose nothing."""

from __future__ import annotations

import time

import pytest

from tests.conftest import wait_for
from tests.faults.conftest import held_message_ids
from tests.faults.table import report

pytestmark = [pytest.mark.slow]


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_sigkill_of_every_worker_process_under_load(rig, kind):
    # Given two worker processes of 4 threads working through 600 jobs of 20 ms
    bus = rig(kind)
    processes, threads = 2, 4
    worker = bus.start_worker(processes=processes, threads=threads)
    expected = bus.publish(300, sleep_ms=20)
    wait_for(lambda: bus.ledger.done() >= 150, 60, worker)
    # When every process of the worker is SIGKILLed mid-run, and a new worker starts
    worker.kill()
    killed_at = time.time()
    done_at_kill = bus.ledger.total()
    held = held_message_ids(bus)
    assert held, "the killed worker held messages"
    bus.start_worker(processes=processes, threads=threads)
    # Then every job finishes, the killed worker's held ones too; only jobs in flight at the kill may run twice
    bus.wait_done(expected, timeout_s=120)
    ends = bus.ledger.store.execute(
        f"SELECT MAX(ended_at) FROM calls WHERE message_id IN ({','.join('?' * len(held))})", sorted(held)
    )[0][0]
    report(
        "SIGKILL all worker processes under load",
        kind,
        bus.ledger.count(expected),
        allowed_duplicates=processes * threads,
        recovery_s=None if ends is None else ends - killed_at,
        note=f"killed after {done_at_kill} jobs holding {len(held)}; recovery: kill -> last held job done",
    )


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_sigterm_with_prefetched_work_finishes_in_flight_jobs_and_hands_back_the_rest(rig, kind):
    # Given one worker process of 2 threads holding prefetched messages of a backlog of slow jobs
    bus = rig(kind)
    worker = bus.start_worker(threads=2)
    expected = bus.publish(40, sleep_ms=100)
    wait_for(lambda: bus.ledger.done() >= 10, 60, worker)
    # When it gets SIGTERM
    assert worker.terminate(timeout_s=30) == 0, worker.output()[-3000:]
    done_at_stop = bus.ledger.total()
    # Then it finished its jobs in flight and handed every prefetched message back at once (no lease to wait out)
    assert done_at_stop < len(expected), "the backlog was already done: nothing was prefetched"
    assert held_by_workers(bus) == 0
    assert "Traceback" not in worker.output()
    # ... and a new worker runs the rest, none twice
    back_at = time.time()
    bus.start_worker(threads=2)
    bus.wait_done(expected, timeout_s=90)
    report(
        "SIGTERM with prefetched work",
        kind,
        bus.ledger.count(expected),
        recovery_s=(bus.ledger.first_after(back_at) or back_at) - back_at,
        note=f"stopped after {done_at_stop} jobs; exit 0; 0 held after exit; recovery: new worker started -> first job",
    )


def held_by_workers(bus) -> int:
    return len(held_message_ids(bus))
