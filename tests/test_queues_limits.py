"""Global rate limits that wait instead of failing, and global concurrency caps (issue 4, acceptance 4-5)."""

from __future__ import annotations

import pytest

import tests.apps.queues  # noqa: F401  declares the test topics in this process
from eventbus import publish_many
from tests.conftest import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = "tests.apps.queues"


def test_a_hundred_jobs_under_a_ten_per_second_limit_take_ten_seconds_with_no_retries(
    bus, start_worker, redis_client, namespace
):
    # Given 2 worker processes x 8 threads and queue "limited" limited to 10/s
    worker = start_worker(APP, processes=2, threads=8, extra_env={"LIMITED_QUEUE_RATE_LIMIT": "10/s"})
    # When 100 quick jobs are queued at once
    publish_many([("q.limited", {"n": i, "sleep_ms": 20}) for i in range(100)])
    wait_for(lambda: redis_client.llen(f"{namespace}:test:ends") >= 100, 60, worker)
    # Then they finish in 9-12 s, started evenly at 10/s across both processes
    starts = [row.decode().split("|") for row in redis_client.lrange(f"{namespace}:test:starts", 0, -1)]
    ends = [float(t) for t in redis_client.lrange(f"{namespace}:test:ends", 0, -1)]
    first_start = min(float(s[0]) for s in starts)
    assert 9.0 <= max(ends) - first_start <= 12.0, max(ends) - first_start
    # and no job was ever retried or dead-lettered: being limited is not a failure
    assert len(starts) == 100 and len({s[2] for s in starts}) == 100
    assert {s[1] for s in starts} == {"0"}
    assert redis_client.zcard(f"{namespace}:limited.XQ") == 0


def test_a_concurrency_cap_of_three_holds_across_two_processes(bus, start_worker, redis_client, namespace):
    # Given 2 worker processes x 8 threads and queue "capped" capped at 3 running jobs
    worker = start_worker(APP, processes=2, threads=8, extra_env={"CAPPED_QUEUE_CONCURRENCY": "3"})
    # When 30 jobs of 300 ms are queued at once
    events = publish_many([("q.capped", {"n": i, "sleep_ms": 300}) for i in range(30)])
    wait_for(lambda: redis_client.hlen(f"{namespace}:test:calls") >= 30, 90, worker)
    # Then never more than 3 ran at once (and 3 did), each job ran once, none was retried
    assert int(redis_client.get(f"{namespace}:test:max_running")) == 3
    calls = {k.decode(): int(v) for k, v in redis_client.hgetall(f"{namespace}:test:calls").items()}
    assert calls == {e.id: 1 for e in events}
    assert {int(r) for r in redis_client.lrange(f"{namespace}:test:retries", 0, -1)} == {0}
    # and every slot was given back
    assert redis_client.zcard(f"{namespace}:cap:capped") == 0
