"""Recurring schedules publish once per tick across workers (issue 4, acceptance 3)."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

import tests.apps.cron  # noqa: F401  registers the schedules in this process too (for the listing)
from eventbus import schedules
from eventbus.cron import add_schedule, remove_schedule
from eventbus.errors import ConfigError
from tests.conftest import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = "tests.apps.cron"


def test_a_schedule_ticking_every_second_publishes_once_per_tick_with_three_workers(
    bus, start_worker, redis_client, namespace
):
    # Given three worker processes that all know a schedule ticking every second
    worker = start_worker(APP, processes=3, threads=2)
    wait_for(lambda: redis_client.hlen(f"{namespace}:test:ticks") >= 1, 30, worker)
    # When they run for 10 s
    start = time.time()
    time.sleep(10.5)
    # Then the ticks due in those 10 s were published 10 (+-1) times, never twice for one tick
    # (each published tick event is one delivery to record_tick: a second event for a tick would count 2)
    ticks = {
        datetime.fromisoformat(k.decode()).timestamp(): int(v)
        for k, v in redis_client.hgetall(f"{namespace}:test:ticks").items()
    }
    in_window = [t for t in ticks if start <= t < start + 10]
    assert 9 <= len(in_window) <= 11, sorted(in_window)
    assert set(ticks.values()) == {1}, ticks
    # and the control plane lists the schedules with their next run
    listed = {s.name: s for s in schedules()}
    assert listed["every-second"].every_s == 1 and listed["every-second"].last_run is not None
    weekly = listed["tests.apps.cron.weekly"]
    assert weekly.cron == "0 9 * * MON" and weekly.tz == "Europe/Paris" and weekly.next_run.weekday() == 0


def test_bad_schedules_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match="exactly one of"):
        add_schedule("both", topic="q.tick", cron="* * * * *", every_s=5)
    with pytest.raises(ConfigError, match="not a cron expression"):
        add_schedule("bad-cron", topic="q.tick", cron="every monday")
    with pytest.raises(ConfigError, match="unknown time zone"):
        add_schedule("bad-tz", topic="q.tick", cron="0 9 * * MON", tz="Mars/Olympus")
    for name in ("both", "bad-cron", "bad-tz"):
        remove_schedule(name)
