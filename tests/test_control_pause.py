"""Pause and resume a queue across all workers (issue 5, acceptance 3)."""

from __future__ import annotations

import time
from collections import Counter

import dramatiq
import pytest

import tests.apps.control  # noqa: F401  declares the test topics in this (publisher) process
from eventbus import publish_many
from eventbus.control import ControlPlane
from tests.conftest import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = "tests.apps.control"


def starts(redis_client, ns: str) -> list[tuple[float, str]]:
    raw = redis_client.lrange(f"{ns}:test:starts", 0, -1)
    return [(float(t), n) for t, _, n in (r.decode().partition("|") for r in raw)]


def test_pause_stops_new_starts_within_250_ms_and_after_resume_all_600_complete_once(
    bus, settings, start_worker, redis_client, namespace
):
    # Given two worker processes of 8 threads working through 600 jobs of 20 ms
    worker = start_worker(APP, processes=2, threads=8)
    cp = ControlPlane(bus, settings)
    wait_for(lambda: len(cp.workers()) >= 2, 30, worker)
    publish_many([("ctl.slow", {"n": i, "sleep_ms": 20}) for i in range(600)])
    wait_for(lambda: redis_client.llen(f"{namespace}:test:starts") >= 100, 60, worker)
    # When the queue is paused after about 100 have started
    cp.pause("slow")
    paused_at = time.time()
    time.sleep(1.5)
    # Then no job starts later than 250 ms after the pause
    during = starts(redis_client, namespace)
    late = [t - paused_at for t, _ in during if t > paused_at + 0.25]
    assert late == [], f"{len(late)} jobs started after the pause, up to {max(late):.3f} s"
    assert len(during) < 600
    assert cp.stats().queue("slow").paused
    # When it is resumed
    resumed_at = time.time()
    cp.resume("slow")
    # Then work starts again within 1 s and all 600 complete, each exactly once
    wait_for(lambda: redis_client.llen(f"{namespace}:test:starts") > len(during), 10, worker)
    first_after = min(t for t, _ in starts(redis_client, namespace)[len(during) :])
    assert first_after - resumed_at < 1.0
    wait_for(lambda: sum(calls(redis_client, namespace).values()) >= 600, 120, worker)
    time.sleep(0.3)
    started = Counter(n for _, n in starts(redis_client, namespace))
    assert started == Counter({str(i): 1 for i in range(600)})
    assert set(calls(redis_client, namespace).values()) == {1}
    stats = cp.stats().queue("slow")
    assert (stats.waiting, stats.dead, stats.paused) == (0, 0, False)


def calls(redis_client, ns: str) -> Counter[str]:
    return Counter({k.decode(): int(v) for k, v in redis_client.hgetall(f"{ns}:test:calls").items()})


def test_a_resume_takes_effect_at_once_for_a_message_already_fetched(bus, settings):
    # Given a worker's gate whose copy of the paused set still lists a queue that was just resumed
    from dramatiq.middleware import SkipMessage

    from eventbus.delivery import build_message
    from eventbus.middleware.pause import PauseGate

    gate = PauseGate()
    cp = ControlPlane(bus, settings)
    cp.store.register_queues(["resumed_q"])
    cp.pause("resumed_q")
    gate.after_worker_boot(bus, None)
    try:
        assert "resumed_q" in gate.paused
        cp.resume("resumed_q")
        message = bus.enqueue(build_message("resumed_q", "user.job", {}, {}, "R1"))
        proxy = dramatiq.MessageProxy(message)
        # When the gate meets a message of that queue (fetched after the resume)
        gate.before_process_message(bus, proxy)  # Then it runs: no SkipMessage, no wait for the refresh
        assert "resumed_q" not in gate.paused
        # And while a queue really is paused, its message is still handed back
        cp.pause("resumed_q")
        wait_for(lambda: "resumed_q" in gate.paused, 5)  # the gate's own refresh
        other = dramatiq.MessageProxy(bus.enqueue(build_message("resumed_q", "user.job", {}, {}, "R2")))
        with pytest.raises(SkipMessage):
            gate.before_process_message(bus, other)
    finally:
        gate.before_worker_shutdown(bus, None)
