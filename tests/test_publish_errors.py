"""Bad input raises a typed EventBusError and writes nothing (issue 2, acceptance 5 and 6)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel, EmailStr

from eventbus import (
    EventBusError,
    InvalidTopicName,
    PayloadInvalid,
    PayloadNotSerializable,
    PublishError,
    SubscriptionError,
    UnknownTopic,
    declare_topic,
    publish_event,
    subscribe,
    topic,
)
from eventbus.broker import make_broker, set_broker
from eventbus.settings import Settings, set_settings


@topic("shop.order_placed")
class OrderPlaced(BaseModel):
    order_id: int
    email: EmailStr


declare_topic("shop.cart_emptied")


def written(redis_client: Any, namespace: str) -> list[bytes]:
    return list(redis_client.scan_iter(f"{namespace}:*"))


@pytest.mark.redis
class TestBadInputEnqueuesNothing:
    def test_unknown_topic_suggests_the_close_one(self, bus, redis_client, namespace):
        with pytest.raises(UnknownTopic, match=r"did you mean 'shop.order_placed'\?"):
            publish_event("shop.order_plcaed", {"order_id": 1, "email": "a@b.co"})
        assert written(redis_client, namespace) == []

    def test_schema_violation_names_the_field(self, bus, redis_client, namespace):
        with pytest.raises(PayloadInvalid, match="field 'email'"):
            publish_event("shop.order_placed", {"order_id": 1, "email": "not-an-address"})
        with pytest.raises(PayloadInvalid, match="field 'order_id'"):
            publish_event("shop.order_placed", {"email": "a@b.co"})
        assert written(redis_client, namespace) == []

    def test_payload_that_is_not_json_serialisable(self, bus, redis_client, namespace):
        with pytest.raises(PayloadNotSerializable, match="JSON"):
            publish_event("shop.cart_emptied", {"when": datetime.now()})
        with pytest.raises(PayloadNotSerializable):
            publish_event("shop.cart_emptied", {"ok": 1}, headers={"x": 1})  # type: ignore[dict-item]
        assert written(redis_client, namespace) == []

    def test_payload_must_be_an_object(self, bus, redis_client, namespace):
        with pytest.raises(PayloadInvalid, match="JSON object"):
            publish_event("shop.cart_emptied", [1, 2])  # type: ignore[arg-type]
        assert written(redis_client, namespace) == []

    @pytest.mark.parametrize("name", ["Vote.Created", "vote..created", "vote created", "", "vote.", "1vote.x"])
    def test_invalid_topic_name(self, bus, redis_client, namespace, name):
        with pytest.raises(InvalidTopicName, match="lowercase dotted"):
            publish_event(name, {})
        with pytest.raises(InvalidTopicName):
            declare_topic(name)
        assert written(redis_client, namespace) == []

    def test_bad_delay_and_priority(self, bus, redis_client, namespace):
        with pytest.raises(EventBusError, match="timezone-aware"):
            publish_event("shop.cart_emptied", {}, at=datetime.now())
        with pytest.raises(EventBusError, match="unknown priority 'asap'"):
            publish_event("shop.cart_emptied", {}, priority="asap")
        assert written(redis_client, namespace) == []


def test_unknown_subscribe_option_is_rejected_when_the_decorator_runs():
    with pytest.raises(SubscriptionError, match=r"unknown option 'max_age'.*valid options are"):
        subscribe("shop.order_placed", max_age=10)
    with pytest.raises(SubscriptionError, match="invalid subscription pattern"):
        subscribe("shop.*.placed")
    with pytest.raises(SubscriptionError, match="max_retries"):
        subscribe("shop.order_placed", max_retries=-1)
    with pytest.raises(SubscriptionError, match="queue name"):
        subscribe("shop.order_placed", queue="email.fast")


def test_every_error_is_an_eventbus_error():
    for cls in (
        UnknownTopic,
        PayloadInvalid,
        PayloadNotSerializable,
        InvalidTopicName,
        SubscriptionError,
        PublishError,
    ):
        assert issubclass(cls, EventBusError)


class TestBrokerUnreachable:
    def publish_with(self, url: str, timeout_s: float = 2.0) -> float:
        settings = replace(Settings(), broker_url=url, namespace="unreachable", publish_timeout_s=timeout_s)
        set_settings(settings)
        set_broker(make_broker(settings))
        try:
            started = time.monotonic()
            with pytest.raises(PublishError, match="could not publish") as info:
                publish_event("shop.cart_emptied", {"n": 1})
            assert info.value.__cause__ is None and "redis" not in type(info.value).__module__
            return time.monotonic() - started
        finally:
            set_broker(None)
            set_settings(None)

    def test_nothing_listening_raises_publish_error_quickly(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound but not listening: connection refused
            assert self.publish_with(f"redis://127.0.0.1:{port}/0") < 2.0

    def test_a_server_that_never_answers_raises_within_the_timeout(self):
        # Given a TCP server on loopback that accepts connections and never replies (a stalled Redis)
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        held: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            server.settimeout(0.1)
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    held.append(server.accept()[0])

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            elapsed = self.publish_with(f"redis://127.0.0.1:{server.getsockname()[1]}/0", timeout_s=2.0)
            assert elapsed < 2.0
        finally:
            stop.set()
            thread.join()
            for conn in held:
                conn.close()
            server.close()
