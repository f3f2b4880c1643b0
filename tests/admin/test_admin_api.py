"""Admin API over real HTTP: token, publish, topics, errors as JSON, body limit (issue 6, acceptance 4)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from eventbus.admin.routes import default_routers
from tests.admin.conftest import Server
from tests.admin.test_webhooks import published

pytestmark = [pytest.mark.redis]

ORDER = {"order_id": 7, "amount_cents": 1999, "email": "ann@example.com"}


PUBLIC = {"/api/health"}


def admin_routes() -> list[tuple[str, str]]:
    """Every (method, path) under /api that the app serves (but the public ones), with example path values."""
    routes = []
    for router in default_routers():
        for route in router.routes:
            path = getattr(route, "path", "")
            if path.startswith("/api/") and path not in PUBLIC:
                example = re.sub(r"\{[a-z_]+\}", "x1", path.replace("{topic}", "order.placed"))
                routes.extend((method, example) for method in sorted(getattr(route, "methods", ())))
    return routes


def test_the_token_tests_cover_the_routes_of_this_step():
    assert {("GET", "/api/topics"), ("POST", "/api/events/order.placed")} <= set(admin_routes())
    control = {
        ("GET", "/api/stats"), ("GET", "/api/queues/x1/stats"), ("GET", "/api/queues/x1/jobs"),
        ("GET", "/api/jobs/x1"), ("DELETE", "/api/jobs/x1"), ("POST", "/api/jobs/x1/retry"),
        ("POST", "/api/queues/x1/pause"), ("POST", "/api/queues/x1/resume"), ("POST", "/api/queues/x1/clean"),
        ("POST", "/api/queues/x1/retry-failed"), ("GET", "/api/dead-letters"),
        ("POST", "/api/dead-letters/x1/requeue"), ("DELETE", "/api/dead-letters/x1"),
    }  # fmt: skip
    assert control <= set(admin_routes())
    assert ("GET", "/api/health") not in admin_routes()


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Bearer test-admin-token-5f2", "Basic dGVzdDp0ZXN0"],
    ids=["no-token", "wrong-token", "token-prefix", "basic-auth"],
)
@pytest.mark.parametrize(("method", "path"), admin_routes())
def test_every_admin_route_without_the_right_token_answers_401_json(
    server: Server, redis_client, namespace, method: str, path: str, authorization: str | None
):
    # Given a request with no token, a wrong one, or another scheme (a valid body, so only the token is wrong)
    headers = {"Authorization": authorization} if authorization is not None else {}
    with server.client(token=None) as http:
        response = http.request(method, path, json=ORDER if method == "POST" else None, headers=headers)
    # Then it is 401 with a JSON error, and nothing was published or paused
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"
    assert published(redis_client, namespace) == []
    assert redis_client.scard(f"{namespace}:__paused__") == 0


def test_a_malformed_body_without_a_token_is_still_401(server: Server):
    with server.client(token=None) as http:
        response = http.post(
            "/api/events/order.placed", content=b"{not json", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 401


def test_publish_answers_202_with_the_event_id_and_writes_one_event(server: Server, redis_client, namespace):
    with server.client() as http:
        response = http.post("/api/events/order.placed", json=ORDER, params={"priority": "high", "event_id": "o-7"})
    assert response.status_code == 202, response.text
    assert response.json() == {"event_id": "o-7", "topic": "order.placed"}
    [event] = published(redis_client, namespace)
    assert event["payload"] == ORDER and event["id"] == "o-7"
    assert redis_client.llen(f"{namespace}:events.p1") == 1  # priority=high


def test_publish_with_delay_writes_to_the_schedule(server: Server, redis_client, namespace):
    with server.client() as http:
        response = http.post("/api/events/order.placed", json=ORDER, params={"delay_s": 3600})
    assert response.status_code == 202
    assert redis_client.zcard(f"{namespace}:schedule") == 1
    assert redis_client.hget(f"{namespace}:schedule.counts", "events") == b"1"
    assert published(redis_client, namespace) == []


def test_a_payload_that_breaks_the_schema_is_422_naming_the_field(server: Server, redis_client, namespace):
    bad = {**ORDER, "amount_cents": -5}
    with server.client() as http:
        response = http.post("/api/events/order.placed", json=bad)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "payload_invalid"
    assert body["fields"] == ["amount_cents"]
    assert "amount_cents" in body["detail"]
    assert published(redis_client, namespace) == []


def test_a_bad_query_parameter_is_422_naming_it(server: Server):
    with server.client() as http:
        response = http.post("/api/events/order.placed", json=ORDER, params={"priority": "urgent"})
    assert response.status_code == 422
    assert response.json()["fields"] == ["query.priority"]


def test_a_body_that_is_not_an_object_is_422(server: Server):
    with server.client() as http:
        response = http.post("/api/events/order.placed", json=[1, 2])
    assert response.status_code == 422
    assert response.json()["fields"] == ["body"]


def test_an_unknown_topic_is_404_with_a_suggestion(server: Server):
    with server.client() as http:
        response = http.post("/api/events/order.placd", json=ORDER)
    assert response.status_code == 404
    assert response.json() == {
        "error": "unknown_topic",
        "detail": "unknown topic 'order.placd'; did you mean 'order.placed'?",
    }


def test_an_invalid_topic_name_is_422(server: Server):
    with server.client() as http:
        response = http.post("/api/events/Order-Placed", json=ORDER)
    assert response.status_code == 422
    assert response.json()["fields"] == ["path.topic"]


def test_a_declared_body_over_the_limit_is_413_json(server: Server, redis_client, namespace):
    # Given the server's limit of 4096 bytes (EVENTBUS_MAX_BODY_BYTES in the fixture)
    big = {"order_id": 1, "amount_cents": 1, "email": "x" * 5000}
    with server.client() as http:
        response = http.post("/api/events/order.placed", json=big)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert published(redis_client, namespace) == []


def test_a_streamed_body_over_the_limit_is_413_too(server: Server, redis_client, namespace):
    # Given a chunked body with no Content-Length, growing past the limit
    def chunks() -> Any:
        yield b'{"order_id": 1, "amount_cents": 1, "email": "'
        for _ in range(5):
            yield b"y" * 1000
        yield b'"}'

    with server.client() as http:
        response = http.post("/api/events/order.placed", content=chunks(), headers={"Content-Type": "application/json"})
        webhook = http.post("/webhooks/billing-system", content=chunks())
    assert response.status_code == 413, response.text
    assert webhook.status_code == 413, webhook.text
    assert published(redis_client, namespace) == []


def test_a_body_at_the_limit_is_accepted(server: Server):
    padding = 4096 - len(json.dumps({**ORDER, "email": ""}))
    exact = {**ORDER, "email": "e" * padding}
    with server.client() as http:
        response = http.post(
            "/api/events/order.placed", content=json.dumps(exact), headers={"Content-Type": "application/json"}
        )
    assert len(json.dumps(exact)) == 4096
    assert response.status_code == 202


def test_topics_lists_schemas_and_subscriptions(start_server):
    server = start_server(modules=("tests.apps.shop", "tests.apps.recording"))
    with server.client() as http:
        body = http.get("/api/topics").json()
    topics = {t["name"]: t for t in body["topics"]}
    assert topics["order.placed"]["schema"]["properties"]["amount_cents"]["minimum"] == 0
    assert topics["order.placed"]["description"] == "An order was placed."
    assert topics["test.happened"]["schema"] is None
    assert set(topics["test.happened"]["subscriptions"]) == {"first", "second", "third"}
    subs = {s["name"]: s for s in body["subscriptions"]}
    assert subs["second"]["queue"] == "second"
    assert subs["always_fails"]["max_retries"] == 3


def test_an_unknown_path_is_json_404(server: Server):
    with server.client() as http:
        response = http.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_the_broker_being_down_is_503_json_without_internals(start_server):
    # Given the app publishing to a Redis port where nothing listens
    server = start_server()
    from dataclasses import replace

    from eventbus.broker import make_broker, set_broker

    set_broker(make_broker(replace(server.settings, broker_url="redis://127.0.0.1:1/0", publish_timeout_s=0.5)))
    with server.client() as http:
        response = http.post("/api/events/order.placed", json=ORDER)
    assert response.status_code == 503
    assert response.json()["error"] == "broker_unavailable"
    assert "Traceback" not in response.text
