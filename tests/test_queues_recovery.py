"""Crash recovery, poison messages and dead-letter details (issue 4, acceptance 6-7 and the dead-letter line)."""

from __future__ import annotations

import time
from typing import Any

import dramatiq
import pytest

import tests.apps.queues  # noqa: F401  declares the test topics in this process
from eventbus import publish_event, publish_many
from eventbus.brokers.poison import WORKER_LOST
from tests.conftest import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = "tests.apps.queues"


def held_by_workers(redis_client: Any, namespace: str, queue: str) -> int:
    return sum(redis_client.scard(k) for k in redis_client.scan_iter(f"{namespace}:__acks__.*.{queue}"))


def dead_letters(redis_client: Any, namespace: str, queue: str) -> list[Any]:
    return [dramatiq.Message.decode(raw) for raw in redis_client.hvals(f"{namespace}:{queue}.XQ.msgs")]


def test_sigkill_of_a_worker_holding_two_hundred_messages_loses_none(bus, start_worker, redis_client, namespace):
    # Given a worker holding 200 slow messages, in flight and prefetched
    redis_client.set(f"{namespace}:test:slow", 1)
    worker = start_worker(APP, threads=8, extra_env={"dramatiq_queue_prefetch": "250"})
    events = publish_many([("q.slow", {"n": i}) for i in range(200)])
    wait_for(lambda: held_by_workers(redis_client, namespace, "slow") == 200, 60, worker)
    # When it is killed with SIGKILL and a new worker starts (default heartbeat timeout)
    worker.kill()
    redis_client.delete(f"{namespace}:test:slow")
    worker = start_worker(APP, threads=8)
    started = time.monotonic()
    # Then every message completes within 30 s of the new worker starting; none is lost
    wait_for(lambda: redis_client.hlen(f"{namespace}:test:done") >= 200, 30, worker)
    assert time.monotonic() - started <= 30
    done = {k.decode() for k in redis_client.hkeys(f"{namespace}:test:done")}
    assert done == {e.id for e in events}
    assert redis_client.zcard(f"{namespace}:slow.XQ") == 0


@pytest.mark.parametrize(
    ("kill_after_ms", "runs"),
    [
        (200, {3}),  # its start mark was written long before it died: every run counts
        (0, {3, 4}),  # it may die before its mark is written: that run comes back careful, uncounted
    ],
)
def test_a_message_that_kills_its_worker_is_dead_lettered_after_three_lost_deliveries(
    bus, start_worker, redis_client, namespace, kill_after_ms, runs
):
    # Given a worker supervisor (restarts it when it dies) and innocent jobs queued with a poison one
    env = {"EVENTBUS_HEARTBEAT_TIMEOUT_S": "2", "EVENTBUS_HEARTBEAT_INTERVAL_S": "0.5"}
    innocent = publish_many([("q.poison", {"n": i, "sleep_ms": 50}) for i in range(10)])
    killer = publish_event("q.poison", {"kill": True, "kill_after_ms": kill_after_ms})
    worker = start_worker(APP, threads=4, extra_env=env)
    restarts = 0
    deadline = time.monotonic() + 120
    # When it runs until the poison message is dead-lettered
    while redis_client.zcard(f"{namespace}:poison.XQ") == 0:
        assert time.monotonic() < deadline, worker.output()[-3000:]
        if worker.proc.poll() is not None:
            assert restarts < 6, "the poison message was redelivered more than 4 times"
            restarts += 1
            worker = start_worker(APP, threads=4, extra_env=env)
        time.sleep(0.1)
    # Then it ran 3 times (4 if its first death came before its start mark was written), and its
    # dead letter says why
    calls = {k.decode(): int(v) for k, v in redis_client.hgetall(f"{namespace}:test:calls").items()}
    assert calls[killer.id] in runs
    [dead] = dead_letters(redis_client, namespace, "poison")
    assert dead.message_id != killer.id  # the delivery's id, derived from the event id
    assert dead.kwargs["event"]["id"] == killer.id
    assert dead.options["reason"] == WORKER_LOST and dead.options["lost_deliveries"] == 3
    assert dead.options["attempts"] == 3  # every run that died after its start mark was written
    assert "died 3 times" in dead.options["error"]
    # and it is not delivered again, while every innocent job completes
    if worker.proc.poll() is not None:
        worker = start_worker(APP, threads=4, extra_env=env)
    wait_for(lambda: all(redis_client.hget(f"{namespace}:test:calls", e.id) for e in innocent), 60, worker)
    time.sleep(3)
    assert int(redis_client.hget(f"{namespace}:test:calls", killer.id)) == calls[killer.id]
    assert worker.proc.poll() is None


def test_a_dead_letter_keeps_the_final_attempts_error_traceback_and_count(bus, start_worker, redis_client, namespace):
    # Given a subscriber that fails every attempt with the attempt number (max_retries=2: 3 attempts)
    worker = start_worker(APP)
    event = publish_event("q.flaky", {"n": 1})
    # When it runs out of retries
    wait_for(lambda: redis_client.zcard(f"{namespace}:flaky.XQ") == 1, 60, worker)
    # Then the dead letter carries the third attempt's error, traceback and count (not the second's)
    [dead] = dead_letters(redis_client, namespace, "flaky")
    assert dead.kwargs["event"]["id"] == event.id
    assert dead.options["retries"] == 3
    assert dead.options["error"] == f"RuntimeError: failed attempt 3 of {event.id}"
    assert f"failed attempt 3 of {event.id}" in dead.options["traceback"]
    assert "failed attempt 2" not in dead.options["traceback"]


def test_sigterm_puts_prefetched_messages_back_at_the_head_of_their_priority_list(
    bus, start_worker, redis_client, namespace
):
    # Given a worker holding 40 prefetched LOW messages (8 of them running slowly)
    redis_client.set(f"{namespace}:test:slow", 1)
    worker = start_worker(APP, threads=8, extra_env={"dramatiq_queue_prefetch": "40"})
    events = publish_many([("q.slow", {"n": i}) for i in range(40)], priority="low")
    wait_for(lambda: held_by_workers(redis_client, namespace, "slow") == 40, 60, worker)
    # When it is stopped with SIGTERM
    assert worker.terminate() == 0
    # Then the messages it had not started are back in the LOW list, not in the NORMAL one
    assert redis_client.llen(f"{namespace}:slow") == 0
    waiting = redis_client.llen(f"{namespace}:slow.p3")
    assert waiting + redis_client.hlen(f"{namespace}:test:done") == len(events)
    assert waiting >= 32
