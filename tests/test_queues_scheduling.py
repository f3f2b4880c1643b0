"""Durable, cancellable scheduling (issue 4, acceptance 2) on real Redis with real workers."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import tests.apps.queues  # noqa: F401  declares the test topics in this process
from eventbus import Priority, cancel, publish_event, publish_many, scheduled
from tests.conftest import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = "tests.apps.queues"


def worker_children_rss_kb(pid: int) -> int:
    """VmRSS of the worker processes dramatiq forked from ``pid`` (the ones that hold messages)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    total = 0
    for child in children:
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    assert children, "the worker has no child process"
    return total


def test_ten_thousand_emails_scheduled_an_hour_ahead_stay_in_redis_and_survive_a_restart(
    bus, start_worker, redis_client, namespace
):
    # Given a running worker whose memory has settled
    worker = start_worker(APP, threads=8)
    time.sleep(3)
    rss_before_kb = worker_children_rss_kb(worker.proc.pid)
    # When 10,000 emails (1 KB payloads) are scheduled an hour ahead, and two more in 2 s, one then cancelled
    body = "x" * 1000
    later = publish_many([("q.email", {"n": i, "body": body}) for i in range(10_000)], delay=timedelta(hours=1))
    keep = publish_event("q.email", {"n": "keep"}, at=datetime.now(UTC) + timedelta(seconds=2))
    drop = publish_event("q.email", {"n": "drop"}, delay=timedelta(seconds=2))
    assert cancel(drop.id) is True
    assert cancel(drop.id) is False
    time.sleep(4)  # many promoter passes
    # Then the worker holds none of them in memory: its RSS grew by less than 20 MB
    grown_mb = (worker_children_rss_kb(worker.proc.pid) - rss_before_kb) / 1024
    assert grown_mb < 20, f"worker RSS grew by {grown_mb:.1f} MB"
    # and all 10,000 wait in Redis's schedule, none in Dramatiq's delay queues
    assert redis_client.zcard(f"{namespace}:schedule") == 10_000
    assert redis_client.hlen(f"{namespace}:events.DQ.msgs") == 0
    wait_for(lambda: redis_client.hget(f"{namespace}:test:calls", keep.id), 30, worker)
    # When the workers are restarted
    assert worker.terminate() == 0
    worker = start_worker(APP, threads=8)
    # Then all are still scheduled, listed soonest first with their ids, and the cancelled one never ran
    page = scheduled(limit=500)
    assert page.total == 10_000
    assert {item.message_id for item in page.items} <= {e.id for e in later}
    assert all(item.due_at > datetime.now(UTC) + timedelta(minutes=55) for item in page.items)
    assert [i.due_at for i in page.items] == sorted(i.due_at for i in page.items)
    time.sleep(3)
    assert redis_client.hget(f"{namespace}:test:calls", drop.id) is None
    assert int(redis_client.hget(f"{namespace}:test:calls", keep.id)) == 1


def test_a_due_scheduled_message_keeps_its_priority_and_is_released_once(bus, redis_client, namespace):
    # Given a CRITICAL and a LOW event due now
    critical = publish_event("q.work", {"n": 1}, priority=Priority.CRITICAL, delay=timedelta(0))
    low = publish_event("q.work", {"n": 2}, priority="low", delay=timedelta(0))
    # When two promoters race to release them
    first, second = bus.schedule.promote(), bus.schedule.promote()
    # Then each is released exactly once, to its own priority list
    assert sorted(m.message_id for m in first + second) == sorted([critical.id, low.id])
    assert redis_client.llen(f"{namespace}:events.p0") == 1
    assert redis_client.llen(f"{namespace}:events.p3") == 1
    assert redis_client.zcard(f"{namespace}:schedule") == 0
    assert cancel(critical.id) is False


def test_paging_through_scheduled_messages(bus):
    # Given 25 scheduled events
    events = publish_many([("q.work", {"n": i}) for i in range(25)], delay=timedelta(minutes=5))
    # When they are listed 10 at a time
    seen, cursor = [], 0
    while cursor is not None:
        page = scheduled(limit=10, cursor=cursor)
        seen += [item.message_id for item in page.items]
        cursor = page.next_cursor
    # Then every one is listed once, with its topic
    assert sorted(seen) == sorted(e.id for e in events)
    assert scheduled(limit=1).items[0].topic == "q.work"


def test_the_cli_lists_and_cancels_scheduled_events(bus, namespace, capsys, monkeypatch):
    from eventbus.cli import main

    # Given two events scheduled in an hour
    first, second = publish_many([("q.work", {"n": 1}), ("q.work", {"n": 2})], delay=timedelta(hours=1))
    monkeypatch.setenv("EVENTBUS_BROKER_URL", bus.url)
    monkeypatch.setenv("EVENTBUS_NAMESPACE", namespace)
    # When one is cancelled from the command line, twice
    assert main(["cancel", first.id]) == 0
    assert main(["cancel", first.id]) == 1
    # Then the listing shows only the other
    assert main(["scheduled", "--json"]) == 0
    out = capsys.readouterr().out
    listed = json.loads(out[out.index("{") :])
    assert [item["id"] for item in listed["items"]] == [second.id]
