"""Priority holds under a backlog, in the broker (issue 4, acceptance 1), and bulk enqueue is pipelined."""

from __future__ import annotations

from typing import Any

import pytest
import redis

import tests.apps.queues  # noqa: F401  declares the test topics and subscriptions in this process
from eventbus import Event, Priority, publish_many
from eventbus.delivery import delivery_message
from eventbus.settings import get_settings
from eventbus.subscriber import get_subscription
from tests.conftest import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = "tests.apps.queues"


def work_jobs(n: int, priority: Priority, kind: str, sleep_ms: int) -> list[Any]:
    sub = get_subscription("work")
    assert sub is not None
    events = [Event(topic="q.work", payload={"kind": kind, "sleep_ms": sleep_ms, "n": i}) for i in range(n)]
    return [delivery_message(e.to_dict(), sub, priority.value, get_settings()) for e in events]


def test_a_critical_job_overtakes_a_backlog_of_ten_thousand_low_ones(bus, start_worker, redis_client, namespace):
    # Given 10,000 LOW jobs queued and one worker with 8 threads busy on them
    bus.enqueue_many(work_jobs(10_000, Priority.LOW, "low", sleep_ms=5))
    worker = start_worker(APP, threads=8)
    wait_for(lambda: int(redis_client.get(f"{namespace}:test:seq") or 0) >= 300, 60, worker)
    # When a CRITICAL job is enqueued afterwards
    started_before = int(redis_client.get(f"{namespace}:test:seq"))
    bus.enqueue_many(work_jobs(1, Priority.CRITICAL, "critical", sleep_ms=0))
    # Then it starts before 100 more LOW jobs have started
    wait_for(lambda: redis_client.get(f"{namespace}:test:critical_seq"), 30, worker)
    low_started_meanwhile = int(redis_client.get(f"{namespace}:test:critical_seq")) - started_before - 1
    assert low_started_meanwhile < 100, low_started_meanwhile
    # and the backlog was still there (the CRITICAL job did not merely arrive at the end)
    assert redis_client.llen(f"{namespace}:work.p3") > 5_000


class CountingConnection(redis.Connection):
    """A real connection that counts the requests it writes to the socket."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        super().send_packed_command(command, check_health)


def test_publish_many_writes_two_thousand_events_in_a_handful_of_round_trips(bus, redis_client, namespace):
    # Given a publisher whose Redis connections count the requests they send
    pool = bus.client.connection_pool
    pool.disconnect()
    pool.connection_class = CountingConnection
    bus.client.ping()  # loads nothing; opens the counted connection
    CountingConnection.sends = 0
    # When it publishes 2,000 events at once
    events = publish_many([("q.work", {"n": i}) for i in range(2_000)])
    # Then all are queued, in far fewer round trips than messages (500 per script call, one pipeline;
    # the ledger's buffered "waiting" records and a script load may add one each)
    assert redis_client.llen(f"{namespace}:events") == 2_000
    assert len({e.id for e in events}) == 2_000
    assert CountingConnection.sends <= 5, CountingConnection.sends
