"""Issue 7 parity: cron ticks, rate limits and concurrency caps across worker processes on one SQLite file."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from eventbus import declare_topic, publish_event, publish_many
from eventbus.brokers.poison import WORKER_LOST
from eventbus.scheduling import schedules
from tests.conftest import wait_for

pytestmark = [pytest.mark.slow]

APP = "tests.apps.sqlite_parity"

for _topic in ("sq.tick", "sq.capped", "sq.limited", "sq.poison"):
    declare_topic(_topic)


def runs_of(bus, subscription: str) -> list[tuple]:
    """(event_id, pid, started_at, ended_at) of each finished run of ``subscription``."""
    rows = bus.store.execute("SELECT name FROM sqlite_master WHERE name = 'test_calls'")
    if not rows:
        return []
    return bus.store.execute(
        "SELECT event_id, pid, started_at, ended_at FROM test_calls WHERE subscription = ?", (subscription,)
    )


def most_at_once(runs: list[tuple]) -> int:
    edges = sorted([(r[2], 1) for r in runs] + [(r[3], -1) for r in runs], key=lambda e: (e[0], e[1]))
    now = top = 0
    for _, step in edges:
        now += step
        top = max(top, now)
    return top


def test_a_schedule_ticks_once_per_tick_across_three_worker_processes(sqlite_bus, start_sqlite_worker):
    # Given three worker processes on one file, each running a schedule that ticks every second
    worker = start_sqlite_worker(APP, processes=3, threads=2)
    # When it has ticked a few times
    wait_for(lambda: len(runs_of(sqlite_bus, "sq_tick")) >= 4, 30, worker)
    time.sleep(1.2)
    # Then each tick was published once and delivered once (a tick published twice is two events, two deliveries)
    ticks = Counter(row[0] for row in sqlite_bus.store.execute("SELECT scheduled_for FROM test_tick_events"))
    assert len(ticks) >= 4 and set(ticks.values()) == {1}, ticks
    delivered = Counter(row[0] for row in runs_of(sqlite_bus, "sq_tick"))
    assert set(delivered.values()) == {1}
    # And operators see the schedule with its last run
    [info] = [s for s in schedules(broker=sqlite_bus) if s.name == "sq-every-second"]
    assert info.topic == "sq.tick" and info.every_s == 1 and info.last_run is not None


def test_a_concurrency_cap_of_three_holds_across_two_worker_processes(sqlite_bus, start_sqlite_worker):
    # Given 2 worker processes x 8 threads and queue sq_capped capped at 3 running jobs
    worker = start_sqlite_worker(APP, processes=2, threads=8, extra_env={"SQ_CAPPED_QUEUE_CONCURRENCY": "3"})
    # When 24 jobs of 200 ms are queued at once
    events = publish_many([("sq.capped", {"n": i, "sleep_ms": 200}) for i in range(24)])
    wait_for(lambda: len(runs_of(sqlite_bus, "sq_capped")) >= 24, 90, worker)
    # Then never more than 3 ran at once (and 3 did), in both processes, each once, none dead
    runs = runs_of(sqlite_bus, "sq_capped")
    assert most_at_once(runs) == 3
    assert sorted(r[0] for r in runs) == sorted(e.id for e in events)
    assert len({r[1] for r in runs}) == 2
    assert sqlite_bus.dead_letters() == []
    # And every slot was given back
    wait_for(lambda: sqlite_bus.limits.running("sq_capped") == 0, 10)


def test_a_rate_limit_holds_across_two_worker_processes_without_failed_attempts(sqlite_bus, start_sqlite_worker):
    # Given 2 worker processes x 8 threads and queue sq_limited limited to 10/s
    worker = start_sqlite_worker(APP, processes=2, threads=8, extra_env={"SQ_LIMITED_QUEUE_RATE_LIMIT": "10/s"})
    # When 40 quick jobs are queued at once
    events = publish_many([("sq.limited", {"n": i}) for i in range(40)])
    wait_for(lambda: len(runs_of(sqlite_bus, "sq_limited")) >= 40, 60, worker)
    # Then they started evenly at 10/s (39 gaps: 3.5-5 s from first to last), each once, none failed
    starts = sorted(r[2] for r in runs_of(sqlite_bus, "sq_limited"))
    assert 3.5 <= starts[-1] - starts[0] <= 5.0, starts[-1] - starts[0]
    assert sorted(r[0] for r in runs_of(sqlite_bus, "sq_limited")) == sorted(e.id for e in events)
    assert sqlite_bus.dead_letters() == []
    assert "Retrying" not in worker.output()


@pytest.mark.parametrize(
    ("kill_after_ms", "runs", "reruns_per_death"),
    [
        # its start mark, and the acks of the jobs before it, were written long before it died: every run
        # counts, and every innocent job runs once
        (200, {3}, 0),
        # it may die before its mark is written (that run comes back careful, uncounted), and before the acks
        # of the jobs just before it (at least once: those run again; acks wait at most 2 ms)
        (0, {3, 4}, 2),
    ],
)
def test_a_message_that_kills_its_worker_is_dead_lettered_after_three_lost_deliveries(
    sqlite_bus, start_sqlite_worker, kill_after_ms, runs, reruns_per_death
):
    # Given innocent jobs queued with one that SIGKILLs its worker, and a supervisor restarting the worker
    innocent = publish_many([("sq.poison", {"n": i}) for i in range(5)])
    killer = publish_event("sq.poison", {"kill": True, "kill_after_ms": kill_after_ms})
    worker = start_sqlite_worker(APP, threads=1)
    restarts = 0
    deadline = time.monotonic() + 120
    # When it runs until the killer is dead-lettered
    while not sqlite_bus.dead_letters("sq_poison"):
        assert time.monotonic() < deadline, worker.output()[-3000:]
        if worker.proc.poll() is not None:
            assert restarts < 6, "the poison message was redelivered more than 4 times"
            restarts += 1
            worker = start_sqlite_worker(APP, threads=1)
        time.sleep(0.1)
    # Then it ran 3 times (4 if its first death came before its start mark was written), and its dead
    # letter says why
    ran = Counter(r[0] for r in runs_of(sqlite_bus, "sq_poison"))
    assert ran[killer.id] in runs
    killer_runs = ran[killer.id]
    [dead] = sqlite_bus.dead_letters("sq_poison")
    assert dead.kwargs["event"]["id"] == killer.id
    assert dead.options["reason"] == WORKER_LOST and dead.options["lost_deliveries"] == 3
    assert dead.options["attempts"] == 3  # every run that died after its start mark was written
    assert "died 3 times" in dead.options["error"]
    # And it is not delivered again, while every innocent job completes once
    if worker.proc.poll() is not None:
        worker = start_sqlite_worker(APP, threads=1)
    wait_for(lambda: all(e.id in Counter(r[0] for r in runs_of(sqlite_bus, "sq_poison")) for e in innocent), 60, worker)
    time.sleep(2.5)
    ran = Counter(r[0] for r in runs_of(sqlite_bus, "sq_poison"))
    assert ran[killer.id] == killer_runs and all(ran[e.id] >= 1 for e in innocent)
    assert sum(ran[e.id] - 1 for e in innocent) <= reruns_per_death * killer_runs
    assert worker.proc.poll() is None
