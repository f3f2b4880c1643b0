"""The control-plane CLI against real Redis and real workers (issue 5, acceptance 2, 5 and 6).

``eventbus`` runs as a real subprocess (``python -m eventbus``) where the acceptance line names the
command, and in-process through ``eventbus.cli.main`` where a timing or many calls are needed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest

import tests.apps.control  # noqa: F401  declares the test topics in this (publisher) process
from eventbus import publish_event, publish_many
from eventbus.brokers.redis.guard import check_redis_config
from eventbus.cli import main
from eventbus.control import ControlPlane, JobState
from eventbus.delivery import delivery_id
from tests.conftest import REDIS_URL, ROOT, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = "tests.apps.control"


def eventbus(namespace: str, *args: str, broker_url: str = REDIS_URL) -> subprocess.CompletedProcess[str]:
    """Run ``python -m eventbus ARGS`` on this test's namespace."""
    env = dict(
        os.environ,
        EVENTBUS_BROKER_URL=broker_url,
        EVENTBUS_NAMESPACE=namespace,
        EVENTBUS_DEFAULT_SUBSCRIBERS="0",
        PYTHONPATH=str(ROOT),
    )
    return subprocess.run(
        [sys.executable, "-m", "eventbus", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def calls(redis_client: Any, ns: str) -> Counter[str]:
    raw = redis_client.hgetall(f"{ns}:test:calls")
    return Counter({k.decode(): int(v) for k, v in raw.items()})


def test_dlq_requeue_all_runs_each_dead_delivery_exactly_once_after_the_fix(
    bus, settings, start_worker, redis_client, namespace
):
    # Given 100 dead deliveries of a subscriber that always failed
    worker = start_worker(APP)
    cp = ControlPlane(bus, settings)
    events = publish_many([("ctl.happened", {"n": i}) for i in range(100)])
    wait_for(lambda: sum(t.failed for t in cp.stats().topics) >= 100, 120, worker)
    assert cp.stats().queue("ctl_dead").dead == 100
    report = eventbus(namespace, "health", "--json")
    assert report.returncode == 0
    assert any("100 failed jobs" in r for r in json.loads(report.stdout)["reasons"])
    # When the subscriber is fixed and an operator runs `eventbus dlq requeue --all`
    redis_client.set(f"{namespace}:test:fixed", 1)
    result = eventbus(namespace, "dlq", "requeue", "--all", "--json")
    assert result.returncode == 0, result.stderr
    requeued = json.loads(result.stdout)["requeued"]
    assert sorted(requeued) == sorted(delivery_id(e.id, "broken") for e in events)
    # Then each dead delivery runs exactly once more, and succeeds
    wait_for(
        lambda: sum(n for k, n in calls(redis_client, namespace).items() if k.startswith("broken_fixed")) >= 100,
        60,
        worker,
    )
    wait_for(lambda: cp.stats().queue("ctl_dead").completed == 100, 30, worker)
    time.sleep(0.5)  # room for a duplicate to show up
    fixed = {k: n for k, n in calls(redis_client, namespace).items() if k.startswith("broken_fixed|")}
    assert fixed == {f"broken_fixed|{e.id}": 1 for e in events}
    assert cp.stats().queue("ctl_dead").dead == 0
    job = cp.get_job(requeued[0])
    assert (job.state, job.requeues, job.attempts) == (JobState.COMPLETED, 1, 1)
    # And a second requeue finds nothing to do
    again = eventbus(namespace, "dlq", "requeue", "--all", "--json")
    assert json.loads(again.stdout)["requeued"] == []


def test_replay_delivers_a_past_event_to_exactly_one_named_subscription(
    bus, settings, start_worker, redis_client, namespace
):
    # Given an event that reached its three subscribers once
    redis_client.set(f"{namespace}:test:fixed", 1)
    worker = start_worker(APP)
    event = publish_event("ctl.happened", {"n": 1})
    once = {f"ok_a|{event.id}": 1, f"ok_b|{event.id}": 1, f"broken_fixed|{event.id}": 1}
    wait_for(lambda: calls(redis_client, namespace) == once, 30, worker)
    # When an operator replays it to ok_b
    result = eventbus(namespace, "replay", event.id, "--to", "ok_b", "--json")
    assert result.returncode == 0, result.stderr
    replayed = json.loads(result.stdout)
    assert replayed["subscription"] == "ok_b" and replayed["job_id"] != delivery_id(event.id, "ok_b")
    # Then ok_b runs once more and nobody else does
    wait_for(lambda: calls(redis_client, namespace)[f"ok_b|{event.id}"] == 2, 30, worker)
    time.sleep(0.5)
    assert calls(redis_client, namespace) == {**once, f"ok_b|{event.id}": 2}
    cp = ControlPlane(bus, settings)
    wait_for(lambda: cp.get_job(replayed["job_id"]).state == JobState.COMPLETED, 10, worker)
    # And replays of unknown events or subscriptions are "not found" (exit 1); a wrong topic is bad usage (exit 2)
    assert eventbus(namespace, "replay", "NOSUCHEVENT", "--to", "ok_b").returncode == 1
    assert eventbus(namespace, "replay", event.id, "--to", "nobody").returncode == 1
    wrong = eventbus(namespace, "replay", event.id, "--to", "ctl_slow")
    assert wrong.returncode == 2 and "does not receive topic 'ctl.happened'" in wrong.stderr


def test_health_exits_1_within_2_s_when_redis_is_unreachable(namespace, capsys):
    # Given a broker URL where nothing answers (connection refused)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    # When `eventbus health` runs, Then it reports unhealthy and exits 1
    result = eventbus(namespace, "health", broker_url=f"redis://127.0.0.1:{closed_port}/0")
    assert result.returncode == 1
    assert result.stdout.startswith("unhealthy") and "broker unreachable" in result.stdout
    # Given a server that accepts connections but never answers (a hung Redis)
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        url = f"redis://127.0.0.1:{hung.getsockname()[1]}/0"
        # When health runs, Then it gives up and exits 1 within 2 s
        started = time.monotonic()
        code = main(["--broker-url", url, "health", "--json"])
        elapsed = time.monotonic() - started
    assert code == 1 and elapsed < 2.0, elapsed
    assert json.loads(capsys.readouterr().out)["status"] == "unhealthy"


def test_health_reports_degraded_past_a_threshold(bus, settings, start_worker, redis_client, namespace, capsys):
    # Given a live worker and a paused queue with 5 waiting jobs
    worker = start_worker(APP)
    cp = ControlPlane(bus, settings)
    wait_for(cp.workers, 30, worker)
    if not check_redis_config(redis_client, require_persistence=settings.redis_require_persistence):
        assert main(["--broker-url", REDIS_URL, "--namespace", namespace, "health", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["status"] == "healthy"
    cp.pause("slow")
    publish_many([("ctl.slow", {"n": i}) for i in range(5)])
    wait_for(lambda: cp.stats().queue("slow").waiting == 5, 30, worker)
    # When health runs with a waiting threshold of 3
    code = main(["--broker-url", REDIS_URL, "--namespace", namespace, "health", "--max-waiting", "3", "--json"])
    # Then it is degraded (exit 0) and says why
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["status"] == "degraded"
    assert any(r.startswith("5 waiting jobs (threshold 3): slow 5") for r in report["reasons"])
    # And with no live worker it is degraded too
    worker.terminate()
    assert main(["--broker-url", REDIS_URL, "--namespace", namespace, "health"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("degraded") and "no live worker" in out
