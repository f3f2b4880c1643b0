"""Inbound webhooks: one verifier per signing scheme, a registry by source, and the publish step.

A verified delivery is published as ``webhook.<source>.received`` with event id
``webhook:<source>:<delivery id>``, so a sender's retry of the same delivery publishes once
(within the bus's dedup window, EVENTBUS_DEDUP_WINDOW_S).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from eventbus.bus import publish_event
from eventbus.errors import UnknownWebhookSource, WebhookPayloadInvalid, WebhookRejected
from eventbus.event import Event
from eventbus.settings import Settings, webhook_env_suffix
from eventbus.topic import declare_topic

MAX_CLOCK_SKEW_S = 300
SOURCE_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
_SOURCE = re.compile(SOURCE_PATTERN)
_DELIVERY_ID = re.compile(r"^[\x21-\x7e]{1,150}$")


@dataclass(frozen=True)
class Delivery:
    """What a verifier hands back: the sender's delivery id, the parsed body and headers worth keeping."""

    delivery_id: str
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


# (secret, raw body, request headers (case-insensitive), now in unix seconds) -> Delivery
Verifier = Callable[[bytes, bytes, Mapping[str, str], float], Delivery]


def verify_shopify(secret: bytes, body: bytes, headers: Mapping[str, str], now_s: float) -> Delivery:
    """``X-Shopify-Hmac-Sha256`` = base64(HMAC-SHA256(secret, body)); id from ``X-Shopify-Webhook-Id``."""
    expected = base64.b64encode(hmac.digest(secret, body, hashlib.sha256))
    _check(expected, headers.get("x-shopify-hmac-sha256", "").strip(), "X-Shopify-Hmac-Sha256")
    kept = {"shopify_topic": "x-shopify-topic", "shop_domain": "x-shopify-shop-domain"}
    return Delivery(
        _delivery_id(headers.get("x-shopify-webhook-id"), "header X-Shopify-Webhook-Id"),
        _json_object(body),
        {key: headers[name] for key, name in kept.items() if headers.get(name)},
    )


def verify_coinpayments(secret: bytes, body: bytes, headers: Mapping[str, str], now_s: float) -> Delivery:
    """``HMAC`` = hex(HMAC-SHA512(secret, body)) over the form-encoded IPN; id from the body's ``ipn_id``."""
    expected = hmac.new(secret, body, hashlib.sha512).hexdigest().encode()
    _check(expected, headers.get("hmac", "").strip().lower(), "HMAC")
    try:
        fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body)))
    except (UnicodeDecodeError, ValueError):
        raise WebhookPayloadInvalid(
            "coinpayments body is not form-encoded UTF-8 (application/x-www-form-urlencoded); check the sender"
        ) from None
    return Delivery(_delivery_id(fields.get("ipn_id"), "body field ipn_id"), dict(fields))


def verify_generic(secret: bytes, body: bytes, headers: Mapping[str, str], now_s: float) -> Delivery:
    """``X-Eventbus-Signature: sha256=hex(HMAC-SHA256(secret, "<timestamp>.<body>"))``, timestamp within 300 s."""
    raw_ts = headers.get("x-eventbus-timestamp", "").strip()
    if not raw_ts.isdigit() or len(raw_ts) > 12:
        raise WebhookRejected("header X-Eventbus-Timestamp must be the unix time in whole seconds")
    expected = b"sha256=" + hmac.new(secret, raw_ts.encode() + b"." + body, hashlib.sha256).hexdigest().encode()
    _check(expected, headers.get("x-eventbus-signature", "").strip(), "X-Eventbus-Signature")
    if abs(now_s - int(raw_ts)) > MAX_CLOCK_SKEW_S:
        raise WebhookRejected(
            f"X-Eventbus-Timestamp {raw_ts} is more than {MAX_CLOCK_SKEW_S} s from this server's clock; "
            "sign with the current time (and check the sender's clock)"
        )
    payload = _json_object(body) if body.strip() else {}
    return Delivery(_delivery_id(headers.get("x-eventbus-delivery"), "header X-Eventbus-Delivery"), payload)


VERIFIERS: dict[str, Verifier] = {"shopify": verify_shopify, "coinpayments": verify_coinpayments}


def verifier_for(source: str) -> Verifier:
    """The scheme of ``source``: a named one from VERIFIERS, else the generic signature."""
    return VERIFIERS.get(source, verify_generic)


def webhook_topic(source: str) -> str:
    """``my-shop`` -> ``webhook.my_shop.received``."""
    return f"webhook.{source.replace('-', '_')}.received"


def secret_for(settings: Settings, source: str) -> bytes:
    """The configured secret of ``source``, or UnknownWebhookSource (answered as 404)."""
    if not _SOURCE.match(source):
        raise UnknownWebhookSource("no such webhook source; sources are lowercase letters, digits, '-' and '_'")
    secret = settings.webhook_secret(source)
    if not secret:
        raise UnknownWebhookSource(
            f"no webhook source {source!r}; configure it with EVENTBUS_WEBHOOK_SECRET_{webhook_env_suffix(source)}"
        )
    return secret.encode()


def declare_webhook_topics(settings: Settings) -> list[str]:
    """Declare ``webhook.<source>.received`` for every configured source; returns the topic names."""
    names = []
    for suffix, _ in settings.webhook_secrets:
        source = suffix.lower()
        if _SOURCE.match(source):
            names.append(declare_topic(webhook_topic(source), description=f"A verified {source} webhook").name)
    return names


def receive_webhook(settings: Settings, source: str, body: bytes, headers: Mapping[str, str], now_s: float) -> Event:
    """Verify, then publish once per delivery id; raises before anything is written when it cannot."""
    delivery = verifier_for(source)(secret_for(settings, source), body, headers, now_s)
    topic = declare_topic(webhook_topic(source), description=f"A verified {source} webhook").name
    return publish_event(
        topic,
        delivery.payload,
        event_id=f"webhook:{source}:{delivery.delivery_id}",
        headers={"webhook_source": source, "webhook_delivery_id": delivery.delivery_id, **delivery.headers},
    )


def _check(expected: bytes, given: str, header: str) -> None:
    if not given:
        raise WebhookRejected(f"missing header {header}; sign the request as described for this source")
    if not hmac.compare_digest(expected, given.encode("latin-1", errors="replace")):
        raise WebhookRejected(f"signature in {header} does not match the body; check the shared secret")


def _delivery_id(value: str | None, where: str) -> str:
    if value is None or not _DELIVERY_ID.match(value.strip()):
        raise WebhookPayloadInvalid(f"{where} must carry the delivery id (1-150 visible ASCII characters)")
    return value.strip()


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise WebhookPayloadInvalid("body is not valid JSON; send a JSON object") from None
    if not isinstance(data, dict):
        raise WebhookPayloadInvalid(f"body must be a JSON object, got a JSON {type(data).__name__}")
    return data
