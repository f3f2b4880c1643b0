"""The control plane over real HTTP, against real workers on Redis (issue 6, part 2: control routes)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker

import tests.apps.control  # noqa: F401  declares the test topics in this (publisher) process
from eventbus import publish_many
from eventbus.broker import get_broker, make_broker, set_broker
from eventbus.control import ControlPlane
from eventbus.delivery import delivery_id
from eventbus.errors import ConfigError, ControlPlaneUnavailable
from tests.admin.conftest import Server
from tests.conftest import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = "tests.apps.control"


def dead_deliveries(cp: ControlPlane, worker: Any, n: int) -> list[str]:
    """Publish n ctl.happened events; the job ids of their n deliveries to ``broken`` once all are dead."""
    events = publish_many([("ctl.happened", {"n": i}) for i in range(n)])
    wait_for(lambda: cp.stats().queue("ctl_dead").dead >= n, 60, worker)
    wait_for(lambda: cp.stats().queue("ctl").completed >= 2 * n, 30, worker)
    return [delivery_id(e.id, "broken") for e in events]


def test_health_needs_no_token_and_names_its_checks(start_server, start_worker):
    server = start_server(modules=(APP,))
    start_worker(APP)
    with server.client(token=None) as http:
        response = http.get("/api/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] in ("healthy", "degraded")
    assert {c["name"] for c in body["checks"]} >= {"broker", "workers", "failed", "waiting"}


def test_stats_jobs_and_dead_letters_answer_what_the_control_plane_says(
    start_server, start_worker, bus, settings, redis_client, namespace
):
    # Given 3 deliveries dead in queue ctl_dead, 6 completed in queue ctl
    server: Server = start_server(modules=(APP,))
    worker = start_worker(APP)
    cp = ControlPlane(bus, settings)
    ids = dead_deliveries(cp, worker, 3)
    with server.client() as http:
        # When stats are read, overall and per queue
        stats = http.get("/api/stats").json()
        one = http.get("/api/queues/ctl_dead/stats").json()
        # Then they are the control plane's figures
        expected = cp.stats().to_dict()
        assert [q for q in stats["queues"]] == expected["queues"]
        assert one == cp.queue_stats("ctl_dead").__dict__
        assert one["dead"] == 3
        # When the dead jobs are listed page by page, and one is shown
        first = http.get("/api/queues/ctl_dead/jobs", params={"state": "dead", "limit": 2}).json()
        rest = http.get(
            "/api/queues/ctl_dead/jobs", params={"state": "dead", "limit": 2, "cursor": first["next_cursor"]}
        ).json()
        assert sorted(j["id"] for j in first["items"] + rest["items"]) == sorted(ids)
        job = http.get(f"/api/jobs/{ids[0]}").json()
        assert job["state"] == "dead" and "Traceback" in job["traceback"] and job["attempts"] == 3
        # and the dead letters are listed by subscription
        letters = http.get("/api/dead-letters", params={"subscription": "broken"}).json()
        assert sorted(d["job_id"] for d in letters["items"]) == sorted(ids)
        # When the subscriber is fixed, one letter is requeued and one purged
        redis_client.set(f"{namespace}:test:fixed", 1)
        assert http.post(f"/api/dead-letters/{ids[0]}/requeue").json()["requeued"] == [ids[0]]
        wait_for(lambda: cp.get_job(ids[0]).state == "completed", 30, worker)
        assert http.delete(f"/api/dead-letters/{ids[1]}").json() == {"purged": 1}
        assert http.get(f"/api/jobs/{ids[1]}").json()["state"] == "failed"
        # and the last dead job is retried through the jobs route, then all failed ones (none left)
        assert http.post(f"/api/jobs/{ids[2]}/retry").status_code == 200
        wait_for(lambda: cp.get_job(ids[2]).state == "completed", 30, worker)
        assert http.post("/api/queues/ctl_dead/retry-failed").json() == {"requeued": []}
        # Then retrying a completed job is 409, and unknown things are 404 with a JSON error
        conflict = http.post(f"/api/jobs/{ids[0]}/retry")
        assert conflict.status_code == 409 and conflict.json()["error"] == "invalid_job_state"
        assert http.get("/api/jobs/nope").json()["error"] == "job_not_found"
        assert http.get("/api/queues/nope/stats").status_code == 404
        assert http.post("/api/dead-letters/nope/requeue").json()["error"] == "dead_letter_not_found"
        assert http.delete("/api/dead-letters/nope").status_code == 404
        bad = http.get("/api/queues/ctl/jobs", params={"state": "completed", "cursor": "!!"})
        assert bad.status_code == 400 and "cursor" in bad.json()["detail"]
        # and a completed job can be removed, then is gone
        assert http.delete(f"/api/jobs/{ids[0]}").json()["id"] == ids[0]
        assert http.get(f"/api/jobs/{ids[0]}").status_code == 404


def test_pause_resume_and_clean(start_server, start_worker, bus, settings):
    server: Server = start_server(modules=(APP,))
    worker = start_worker(APP)
    cp = ControlPlane(bus, settings)
    dead_deliveries(cp, worker, 2)
    with server.client() as http:
        assert http.post("/api/queues/ctl/pause").json() == {"queue": "ctl", "paused": True}
        assert cp.paused() == ["ctl"] and cp.queue_stats("ctl").paused
        assert http.post("/api/queues/ctl/resume").json() == {"queue": "ctl", "paused": False}
        assert cp.paused() == []
        needs_one = http.post("/api/queues/ctl/clean", json={})
        assert needs_one.status_code == 422 and "older_than_s" in needs_one.json()["detail"]
        assert http.post("/api/queues/ctl/clean", json={"state": "dead", "keep": 0}).status_code == 422
        assert http.post("/api/queues/ctl/clean", json={"keep": 1}).json() == {"removed": 3}
        assert cp.queue_stats("ctl").completed == 1
        assert http.post("/api/queues/ctl/clean", json={"older_than_s": 0}).json() == {"removed": 1}


class ForeignBroker(StubBroker):
    """A Dramatiq broker from outside eventbus: it can enqueue, but keeps no control data."""

    def enqueue_many(self, messages: Any, **options: Any) -> list[Any]:
        return [self.enqueue(message) for message in messages]


def test_a_broker_from_outside_eventbus_is_refused_with_the_fix_named():
    # Given a Dramatiq broker that keeps none of the bus's stores
    foreign = ForeignBroker()
    # When it is made the process-wide broker, or a control plane is built on it, Then both refuse it
    with pytest.raises(ConfigError, match=r"not an eventbus broker .*use one from eventbus\.brokers"):
        set_broker(foreign)
    with pytest.raises(ControlPlaneUnavailable, match=r"build one with eventbus\.broker\.make_broker"):
        ControlPlane(foreign)


def test_health_is_503_unhealthy_when_redis_is_unreachable(start_server, settings):
    server: Server = start_server(modules=(APP,))
    redis_broker = get_broker()
    set_broker(make_broker(replace(settings, broker_url="redis://127.0.0.1:1/0")))  # nothing listens on port 1
    try:
        with server.client(token=None) as http:
            health = http.get("/api/health")
    finally:
        set_broker(redis_broker)
    assert health.status_code == 503
    body = health.json()
    assert body["status"] == "unhealthy" and "broker unreachable" in body["reasons"][0]
