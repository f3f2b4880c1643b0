"""The control-plane CLI on a SQLite file, as real processes: a worker, `eventbus stats/dlq/pause/resume/health`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest

import tests.apps.sqlite_control as app
from eventbus import publish_many
from eventbus.delivery import delivery_id
from tests.conftest import ROOT, wait_for

pytestmark = [pytest.mark.slow]

APP = "tests.apps.sqlite_control"


def eventbus(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m eventbus ARGS`` on the test's file."""
    env = dict(os.environ, EVENTBUS_BROKER_URL=url, EVENTBUS_DEFAULT_SUBSCRIBERS="0", PYTHONPATH=str(ROOT))
    env.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "eventbus", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def as_json(url: str, *args: str) -> Any:
    result = eventbus(url, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def queue(stats: dict[str, Any], name: str) -> dict[str, Any]:
    return next(q for q in stats["queues"] if q["queue"] == name)


def calls(bus: Any) -> Counter[str]:
    app.store()
    return Counter(f"{s}|{e}" for s, e in bus.store.execute("SELECT subscription, event_id FROM test_ctl_calls"))


def test_stats_dlq_requeue_pause_and_resume_from_the_cli_on_a_sqlite_file(sqlite_bus, sqlite_url, start_sqlite_worker):
    # Given a worker process on the file, and 20 events reaching one good and one always failing subscriber
    worker = start_sqlite_worker(APP, threads=4)
    app.store()  # the recording tables exist before anyone reads them
    events = publish_many([("sqc.happened", {"n": i}) for i in range(20)])

    def topic() -> dict[str, Any]:
        stats = as_json(sqlite_url, "stats")
        return next((t for t in stats["topics"] if t["topic"] == "sqc.happened"), {"failed": 0})

    wait_for(lambda: topic()["failed"] >= 20, 90, worker)
    # When `eventbus stats --json` runs, Then it shows 20 completed, 20 dead, and the topic's counts
    stats = as_json(sqlite_url, "stats")
    assert (queue(stats, "sqc_ok")["completed"], queue(stats, "sqc_ok")["dead"]) == (20, 0)
    assert (queue(stats, "sqc_dead")["completed"], queue(stats, "sqc_dead")["dead"]) == (0, 20)
    assert queue(stats, "events")["completed"] == 20
    assert topic() == {"topic": "sqc.happened", "published": 20, "deliveries": 20, "failed": 20}
    # And `eventbus dlq list --json` lists 20 letters with 3 attempts and the final traceback each
    page = as_json(sqlite_url, "dlq", "list", "--subscription", "sqc_broken", "--limit", "100")
    assert sorted(d["job_id"] for d in page["items"]) == sorted(delivery_id(e.id, "sqc_broken") for e in events)
    assert {d["attempts"] for d in page["items"]} == {3}
    assert all(f"sqc_broken cannot handle {d['event_id']}" in d["traceback"] for d in page["items"])
    # And health is degraded by the dead letters, with the worker seen live
    report = as_json(sqlite_url, "health")
    assert report["status"] == "degraded" and any("20 failed jobs" in r for r in report["reasons"])
    assert {c["name"]: c["ok"] for c in report["checks"]}["workers"] is True
    # When the subscriber is fixed and `eventbus dlq requeue --all` runs
    sqlite_bus.store.execute("INSERT INTO test_fixed VALUES (1)")
    requeued = as_json(sqlite_url, "dlq", "requeue", "--all")["requeued"]
    assert len(requeued) == 20
    # Then each dead delivery runs exactly once more and completes
    wait_for(lambda: queue(as_json(sqlite_url, "stats"), "sqc_dead")["completed"] == 20, 60, worker)
    time.sleep(0.5)
    fixed = {k: n for k, n in calls(sqlite_bus).items() if k.startswith("sqc_fixed|")}
    assert fixed == {f"sqc_fixed|{e.id}": 1 for e in events}
    assert queue(as_json(sqlite_url, "stats"), "sqc_dead")["dead"] == 0
    assert as_json(sqlite_url, "dlq", "requeue", "--all")["requeued"] == []
    # When `eventbus pause sqc_ok` runs and 5 more events are published
    assert eventbus(sqlite_url, "pause", "sqc_ok").returncode == 0
    more = publish_many([("sqc.happened", {"n": i}) for i in range(5)])
    # Then their sqc_ok deliveries wait, and nothing of sqc_ok runs
    wait_for(lambda: queue(as_json(sqlite_url, "stats"), "sqc_ok")["waiting"] == 5, 30, worker)
    time.sleep(0.5)
    stats = as_json(sqlite_url, "stats")
    assert queue(stats, "sqc_ok")["paused"] and queue(stats, "sqc_ok")["completed"] == 20
    assert not any(calls(sqlite_bus)[f"sqc_ok|{e.id}"] for e in more)
    # And after `eventbus resume sqc_ok` all 5 run once
    assert eventbus(sqlite_url, "resume", "sqc_ok").returncode == 0
    wait_for(lambda: queue(as_json(sqlite_url, "stats"), "sqc_ok")["completed"] == 25, 30, worker)
    stats = as_json(sqlite_url, "stats")
    assert (queue(stats, "sqc_ok")["waiting"], queue(stats, "sqc_ok")["paused"]) == (0, False)
    assert all(calls(sqlite_bus)[f"sqc_ok|{e.id}"] == 1 for e in more)
