"""Signed inbound webhooks over real HTTP into real Redis (issue 6, acceptance 3)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import dramatiq
import pytest

from tests.admin.conftest import SECRETS, Server

pytestmark = [pytest.mark.redis]


def published(redis_client: Any, ns: str) -> list[dict[str, Any]]:
    """The events waiting in the events queue (nothing consumes them: no worker runs here)."""
    ids = [i for suffix in (".p0", ".p1", "", ".p3") for i in redis_client.lrange(f"{ns}:events{suffix}", 0, -1)]
    raw = [redis_client.hget(f"{ns}:events.msgs", i) for i in ids]
    return [dramatiq.Message.decode(r).kwargs["event"] for r in raw]


def shopify(body: bytes, delivery: str, secret: str = SECRETS["SHOPIFY"]) -> dict[str, str]:
    digest = base64.b64encode(hmac.digest(secret.encode(), body, hashlib.sha256)).decode()
    return {
        "X-Shopify-Hmac-Sha256": digest,
        "X-Shopify-Webhook-Id": delivery,
        "X-Shopify-Topic": "orders/create",
        "Content-Type": "application/json",
    }


def coinpayments(body: bytes) -> dict[str, str]:
    digest = hmac.new(SECRETS["COINPAYMENTS"].encode(), body, hashlib.sha512).hexdigest()
    return {"HMAC": digest, "Content-Type": "application/x-www-form-urlencoded"}


def generic(body: bytes, delivery: str, ts: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    digest = hmac.new(SECRETS["BILLING_SYSTEM"].encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "X-Eventbus-Timestamp": stamp,
        "X-Eventbus-Signature": f"sha256={digest}",
        "X-Eventbus-Delivery": delivery,
        "Content-Type": "application/json",
    }


def flip_one_byte(body: bytes) -> bytes:
    return body[:-2] + bytes([body[-2] ^ 1]) + body[-1:]


SHOPIFY_BODY = json.dumps({"id": 820982911946154508, "email": "jon@example.com", "total_price": "199.00"}).encode()
IPN_BODY = urlencode(
    {"ipn_version": "1.0", "ipn_id": "ipn-5531", "ipn_mode": "hmac", "merchant": "m-1", "status": "100"}
).encode()
GENERIC_BODY = json.dumps({"invoice": "INV-9", "paid": True}).encode()


def test_shopify_valid_signature_publishes_once_and_again_is_still_once(server: Server, redis_client, namespace):
    # Given a Shopify delivery signed with the configured secret
    with server.client(token=None) as http:
        # When it arrives, and Shopify retries the same delivery
        first = http.post("/webhooks/shopify", content=SHOPIFY_BODY, headers=shopify(SHOPIFY_BODY, "wh-1"))
        again = http.post("/webhooks/shopify", content=SHOPIFY_BODY, headers=shopify(SHOPIFY_BODY, "wh-1"))
    # Then both answer 2xx and exactly one webhook.shopify.received event carries the parsed body
    assert first.status_code == 202, first.text
    assert again.status_code == 202, again.text
    assert first.json() == {"event_id": "webhook:shopify:wh-1", "topic": "webhook.shopify.received"}
    events = published(redis_client, namespace)
    assert len(events) == 1
    assert events[0]["topic"] == "webhook.shopify.received"
    assert events[0]["payload"] == json.loads(SHOPIFY_BODY)
    assert events[0]["headers"]["shopify_topic"] == "orders/create"


def test_shopify_body_with_one_byte_changed_is_rejected(server: Server, redis_client, namespace):
    headers = shopify(SHOPIFY_BODY, "wh-2")
    with server.client(token=None) as http:
        response = http.post("/webhooks/shopify", content=flip_one_byte(SHOPIFY_BODY), headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "bad_signature"
    assert "X-Shopify-Hmac-Sha256" in response.json()["detail"]
    assert published(redis_client, namespace) == []


def test_coinpayments_valid_ipn_publishes_form_fields_once_and_again_is_still_once(
    server: Server, redis_client, namespace
):
    with server.client(token=None) as http:
        first = http.post("/webhooks/coinpayments", content=IPN_BODY, headers=coinpayments(IPN_BODY))
        again = http.post("/webhooks/coinpayments", content=IPN_BODY, headers=coinpayments(IPN_BODY))
    assert first.status_code == 202, first.text
    assert again.status_code == 202, again.text
    events = published(redis_client, namespace)
    assert len(events) == 1
    assert events[0]["id"] == "webhook:coinpayments:ipn-5531"
    assert events[0]["topic"] == "webhook.coinpayments.received"
    assert events[0]["payload"]["status"] == "100" and events[0]["payload"]["merchant"] == "m-1"


def test_coinpayments_body_with_one_byte_changed_is_rejected(server: Server, redis_client, namespace):
    headers = coinpayments(IPN_BODY)
    with server.client(token=None) as http:
        response = http.post("/webhooks/coinpayments", content=flip_one_byte(IPN_BODY), headers=headers)
    assert response.status_code == 401
    assert published(redis_client, namespace) == []


def test_generic_valid_signature_publishes_once_and_again_is_still_once(server: Server, redis_client, namespace):
    # Given a source with no named scheme ("billing-system"), signed the generic way
    with server.client(token=None) as http:
        first = http.post("/webhooks/billing-system", content=GENERIC_BODY, headers=generic(GENERIC_BODY, "d-1"))
        again = http.post("/webhooks/billing-system", content=GENERIC_BODY, headers=generic(GENERIC_BODY, "d-1"))
        other = http.post("/webhooks/billing-system", content=GENERIC_BODY, headers=generic(GENERIC_BODY, "d-2"))
    assert [r.status_code for r in (first, again, other)] == [202, 202, 202]
    events = published(redis_client, namespace)
    assert [e["id"] for e in events] == ["webhook:billing-system:d-1", "webhook:billing-system:d-2"]
    assert {e["topic"] for e in events} == {"webhook.billing_system.received"}
    assert events[0]["payload"] == {"invoice": "INV-9", "paid": True}


def test_generic_body_with_one_byte_changed_is_rejected(server: Server, redis_client, namespace):
    headers = generic(GENERIC_BODY, "d-3")
    with server.client(token=None) as http:
        response = http.post("/webhooks/billing-system", content=flip_one_byte(GENERIC_BODY), headers=headers)
    assert response.status_code == 401
    assert published(redis_client, namespace) == []


def test_generic_timestamp_301_seconds_old_is_rejected_even_when_signed(server: Server, redis_client, namespace):
    headers = generic(GENERIC_BODY, "d-4", ts=int(time.time()) - 301)
    with server.client(token=None) as http:
        response = http.post("/webhooks/billing-system", content=GENERIC_BODY, headers=headers)
    assert response.status_code == 401
    assert "300 s" in response.json()["detail"]
    assert published(redis_client, namespace) == []


def test_a_source_without_a_secret_is_not_found(server: Server, redis_client, namespace):
    with server.client(token=None) as http:
        response = http.post("/webhooks/stripe", content=GENERIC_BODY, headers=generic(GENERIC_BODY, "d-5"))
    assert response.status_code == 404
    assert "EVENTBUS_WEBHOOK_SECRET_STRIPE" in response.json()["detail"]
    assert published(redis_client, namespace) == []


def test_a_verified_delivery_without_its_delivery_id_names_what_is_missing(server: Server, redis_client, namespace):
    headers = shopify(SHOPIFY_BODY, "x")
    del headers["X-Shopify-Webhook-Id"]
    with server.client(token=None) as http:
        response = http.post("/webhooks/shopify", content=SHOPIFY_BODY, headers=headers)
    assert response.status_code == 422
    assert "X-Shopify-Webhook-Id" in response.json()["detail"]


def test_configured_webhook_topics_are_listed(server: Server):
    with server.client() as http:
        names = {t["name"] for t in http.get("/api/topics").json()["topics"]}
    assert {"webhook.shopify.received", "webhook.coinpayments.received", "webhook.billing_system.received"} <= names
