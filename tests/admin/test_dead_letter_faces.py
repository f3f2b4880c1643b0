"""A dead letter's reason and attempts on every face: Python, the CLI, the HTTP API and the dashboard.

Real Redis, a real worker that a poison message SIGKILLs (restarted by the test, as a supervisor
would), the real ``eventbus`` command and a real HTTP server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import closing

import pytest

import tests.apps.queues  # noqa: F401  declares the test topics in this (publisher) process
from eventbus import publish_event
from eventbus.control import ControlPlane
from eventbus.deadletter import DeadReason
from eventbus.delivery import delivery_id
from tests.admin.conftest import Server
from tests.admin.test_dashboard import signed_in
from tests.conftest import REDIS_URL, ROOT, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = "tests.apps.queues"
QUICK_RECOVERY = {"EVENTBUS_HEARTBEAT_TIMEOUT_S": "2", "EVENTBUS_HEARTBEAT_INTERVAL_S": "0.5"}


def eventbus(namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m eventbus ARGS`` on this test's namespace."""
    env = dict(
        os.environ,
        EVENTBUS_BROKER_URL=REDIS_URL,
        EVENTBUS_NAMESPACE=namespace,
        EVENTBUS_DEFAULT_SUBSCRIBERS="0",
        PYTHONPATH=str(ROOT),
    )
    result = subprocess.run(
        [sys.executable, "-m", "eventbus", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result


def test_a_poison_letter_and_a_failed_one_say_why_on_every_face(
    start_server, start_worker, bus, settings, namespace, redis_client
):
    # Given a worker (restarted whenever it dies), an event whose subscriber fails every attempt
    # (max_retries=2), and one whose subscriber SIGKILLs its worker 200 ms into every run
    cp = ControlPlane(bus, settings)
    worker = start_worker(APP, threads=4, extra_env=QUICK_RECOVERY)
    failing = publish_event("q.flaky", {"n": 1})
    killer = publish_event("q.poison", {"kill": True, "kill_after_ms": 200})
    failed_id, lost_id = delivery_id(failing.id, "fails_each_attempt"), delivery_id(killer.id, "poison")
    deadline = time.monotonic() + 120
    restarts = 0
    while redis_client.zcard(f"{namespace}:poison.XQ") == 0:
        assert time.monotonic() < deadline, worker.output()[-3000:]
        if worker.proc.poll() is not None:
            assert restarts < 6, "the poison message was redelivered more than 4 times"
            restarts += 1
            worker = start_worker(APP, threads=4, extra_env=QUICK_RECOVERY)
        time.sleep(0.1)
    if worker.proc.poll() is not None:
        worker = start_worker(APP, threads=4, extra_env=QUICK_RECOVERY)
    wait_for(lambda: redis_client.zcard(f"{namespace}:flaky.XQ") == 1, 60, worker)
    expected = {lost_id: ("worker_lost", 3), failed_id: ("failed", 3)}
    # Then Python says why each is dead, and how many times it ran
    letters = cp.dead_letters(limit=100).items
    assert {d.job_id: (d.reason, d.attempts) for d in letters} == expected
    assert cp.get_dead_letter(lost_id).reason == DeadReason.WORKER_LOST
    # And so does the CLI: dlq list --json, dlq show --json, and the table
    listed = json.loads(eventbus(namespace, "dlq", "list", "--json").stdout)["items"]
    assert {d["job_id"]: (d["reason"], d["attempts"]) for d in listed} == expected
    shown = json.loads(eventbus(namespace, "dlq", "show", lost_id, "--json").stdout)
    assert (shown["reason"], shown["attempts"], shown["error_type"]) == ("worker_lost", 3, "WorkerLost")
    table = eventbus(namespace, "dlq", "list").stdout
    assert "worker_lost" in table and "failed" in table
    assert "worker_lost" in eventbus(namespace, "dlq", "show", lost_id).stdout
    # And no count in stats is below zero
    stats = json.loads(eventbus(namespace, "stats", "--json").stdout)
    poison = next(q for q in stats["queues"] if q["queue"] == "poison")
    assert poison["delayed"] == 0 and all(v >= 0 for q in stats["queues"] for v in q.values() if isinstance(v, int))
    # And the HTTP API
    server: Server = start_server(modules=(APP,))
    with server.client() as http:
        page = http.get("/api/dead-letters").json()
        assert {d["job_id"]: (d["reason"], d["attempts"]) for d in page["items"]} == expected
        one = http.get("/api/dead-letters", params={"queue": "poison"}).json()["items"]
        assert [(d["job_id"], d["reason"]) for d in one] == [(lost_id, "worker_lost")]
    # And the dashboard's dead-letter page
    with closing(signed_in(server)) as http:
        html = http.get("/dead-letters").text
        assert f'data-dead-letter="{lost_id}"' in html and 'data-reason="worker_lost"' in html
        assert 'data-reason="failed"' in html and "<th>Reason</th>" in html
