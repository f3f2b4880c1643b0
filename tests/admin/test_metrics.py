"""/metrics over real HTTP, read from Redis shared by several worker processes."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from eventbus import publish_event
from eventbus.control import ControlPlane
from tests.conftest import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = "tests.apps.recording"


def scrape(http: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_show_what_two_worker_processes_left_in_redis(start_server, start_worker, redis_client, namespace):
    # Given the server and two worker processes on one Redis
    server = start_server(modules=(APP,))
    worker = start_worker(APP, processes=2)
    # When three events dead-letter their failing subscription,
    for n in range(3):
        publish_event("test.flaky", {"n": n})
    wait_for(lambda: redis_client.zcard(f"{namespace}:default.XQ") >= 3, 60, worker)
    # queue "second" is paused while two deliveries for it arrive,
    redis_client.sadd(f"{namespace}:__paused__", "second")
    for n in range(2):
        publish_event("test.happened", {"n": n})
    wait_for(lambda: redis_client.llen(f"{namespace}:second") >= 2, 60, worker)
    # and one event is scheduled an hour ahead
    with server.client() as http:
        assert http.post("/api/events/test.happened", json={}, params={"delay_s": 3600}).status_code == 202
        metrics = scrape(http)
    # Then /metrics reports the dead letters, the waiting deliveries, the pause, the schedule and both workers
    assert metrics[("eventbus_queue_dead", (("queue", "default"),))] == 3
    assert metrics[("eventbus_queue_ready", (("priority", "normal"), ("queue", "second")))] == 2
    assert metrics[("eventbus_queue_ready", (("priority", "normal"), ("queue", "default")))] == 0
    assert metrics[("eventbus_queue_paused", (("queue", "second"),))] == 1
    assert metrics[("eventbus_queue_paused", (("queue", "default"),))] == 0
    assert metrics[("eventbus_queue_scheduled", (("queue", "events"),))] == 1
    assert metrics[("eventbus_workers", ())] == 2
    # and the counts are the ones in Redis
    assert metrics[("eventbus_queue_dead", (("queue", "default"),))] == redis_client.zcard(f"{namespace}:default.XQ")


def test_metrics_need_no_token(server):
    with server.client(token=None) as http:
        metrics = scrape(http)
    assert metrics[("eventbus_queue_ready", (("priority", "critical"), ("queue", "events")))] == 0


def test_every_per_queue_figure_equals_control_plane_stats(start_server, start_worker, bus, settings):
    """Acceptance 5: after a run with real workers (jobs completed, some dead), /metrics is ControlPlane.stats()."""
    # Given the server and a worker on one Redis, and events whose deliveries complete or die
    server = start_server(modules=(APP,))
    worker = start_worker(APP)
    cp = ControlPlane(bus, settings)
    for n in range(4):
        publish_event("test.flaky", {"n": n})
    for n in range(3):
        publish_event("test.happened", {"n": n})
    wait_for(lambda: cp.stats().queue("default").dead >= 4, 60, worker)
    wait_for(lambda: cp.stats().queue("second").completed >= 3, 60, worker)
    wait_for(lambda: all(q.waiting == q.active == q.delayed == 0 for q in cp.stats().queues), 30, worker)
    # When /metrics is scraped over HTTP
    with server.client() as http:
        metrics = scrape(http)
    stats = cp.stats()
    # Then every per-queue and per-topic figure is the control plane's
    assert {q.queue for q in stats.queues} >= {"default", "second", "events"}
    for q in stats.queues:
        for field in ("waiting", "active", "delayed", "completed", "failed", "dead", "processed_last_minute"):
            assert metrics[(f"eventbus_queue_{field}", (("queue", q.queue),))] == getattr(q, field), (q.queue, field)
        assert metrics[("eventbus_queue_paused", (("queue", q.queue),))] == int(q.paused)
    for t in stats.topics:
        for field in ("published", "deliveries", "failed"):
            assert metrics[(f"eventbus_topic_{field}", (("topic", t.topic),))] == getattr(t, field), (t.topic, field)
    # and the run left what it should: completed and dead jobs, counted per topic
    assert stats.queue("default").dead == 4 and stats.queue("default").completed >= 4 + 3
    assert {t.topic: t.published for t in stats.topics} == {"test.flaky": 4, "test.happened": 3}
