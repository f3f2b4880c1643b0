"""Deliveries a fan-out takes straight into this worker's hands (``RedisBroker.write(take=...)``)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import replace

import dramatiq
import pytest

from eventbus.brokers.redis.broker import RedisBroker
from eventbus.brokers.redis.reconnect import InHand
from eventbus.encoder import JSONEncoder
from eventbus.settings import Settings, set_settings
from tests.conftest import need
from tests.private_redis import RedisServer

pytestmark = pytest.mark.redis


def message(n: int, priority: str = "normal") -> dramatiq.Message:
    return dramatiq.Message(queue_name="q", actor_name="a", args=(n,), kwargs={}, options={"priority": priority})


def make_broker(url: str, namespace: str) -> RedisBroker:
    set_settings(replace(Settings(), broker_url=url, namespace=namespace))
    dramatiq.set_encoder(JSONEncoder())
    return RedisBroker(url=url, namespace=namespace, timeout_s=1.0, middleware=[])


def drain(consumer: object, seconds: float) -> list[dramatiq.MessageProxy]:
    got, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        proxy = next(consumer)  # type: ignore[call-overload]
        if proxy is not None:
            got.append(proxy)
    return got


@pytest.fixture
def broker(redis_client, namespace) -> Iterator[RedisBroker]:
    b = make_broker("redis://127.0.0.1:6379/0", namespace)
    yield b
    b.close()


def test_deliveries_of_an_idle_queue_are_taken_and_handed_out_without_touching_its_list(broker, redis_client):
    # Given a consumer of q with room, and q idle
    consumer = broker.consume("q", prefetch=4, timeout=50)
    # When two deliveries are written with a take budget of one
    queued, taken = broker.write([message(1), message(2)], [None, None], 60, take={"q": 1})
    # Then the first is in this worker's hands (its ack set) and the second waits in the list
    assert [m.args for m in taken] == [(1,)] and [m.args for m in queued] == [(2,)]
    acks = {m.decode() for m in redis_client.smembers(consumer.acks_key)}
    assert acks == {taken[0].options["redis_message_id"]}
    assert redis_client.llen(f"{broker.namespace}:q") == 1
    # And a later one is not taken while a message waits: nothing is overtaken
    _, later = broker.write([message(3, "critical")], [None], 60, take={"q": 1})
    assert later == []


def test_nothing_is_taken_from_a_paused_queue(broker, redis_client):
    broker.consume("q", prefetch=4, timeout=50)
    redis_client.sadd(f"{broker.namespace}:__paused__", "q")
    queued, taken = broker.write([message(1)], [None], 60, take={"q": 4})
    assert taken == [] and len(queued) == 1


def test_a_taken_delivery_outlives_a_consumer_restart_during_a_redis_stall(tmp_path, namespace):
    need("redis-server", shutil.which("redis-server") is not None)
    server = RedisServer(tmp_path / "redis", persistent=False)
    server.start()
    try:
        broker = make_broker(server.url, namespace)
        # Given a delivery taken into the hands of q's consumer, not yet handed out
        consumer = broker.consume("q", prefetch=4, timeout=50)
        _, taken = broker.write([message(1)], [None], 60, take={"q": consumer.room()})
        broker.handed["q"].extend(taken)
        # When Redis stalls and the consumer closes (as after a connection error): it cannot give it back
        server.pause()
        try:
            consumer.close()
        finally:
            server.resume()
        # Then the restarted consumer hands it out, once
        again = broker.consume("q", prefetch=4, timeout=50)
        got = drain(again, 3)
        assert [p.message_id for p in got] == [taken[0].message_id]
        broker.close()
    finally:
        server.stop()


def test_a_message_being_taken_is_never_requeued_by_a_reconciliation(broker, redis_client):
    # Given a message a fan-out script put into this worker's ack set, before it was handed out
    in_hand = InHand.of(broker.broker_id, "r")
    acks = broker.key(f"__acks__.{broker.broker_id}.r")
    redis_client.sadd(acks, "m1")
    in_hand.reserve("m1")
    # Then reconciliation leaves it alone while it is being taken, and requeues it once given up
    requeued: list[str] = []
    assert in_hand.reconcile(redis_client, acks, requeued.extend) == []
    in_hand.release("m1")
    assert in_hand.reconcile(redis_client, acks, requeued.extend) == ["m1"] == requeued


def test_a_closing_consumer_gives_back_what_it_fetched_and_no_worker_thread_took(broker, redis_client):
    # Given a consumer that fetched five messages and handed one out (its thread stopped right after)
    sent = [broker.enqueue(message(n)) for n in range(5)]
    consumer = broker.consume("q", prefetch=8, timeout=50)
    first = next(consumer)
    assert first is not None and first.message_id == sent[0].message_id
    # When it closes
    consumer.close()
    # Then only the one handed out stays in its hands; the other four wait in the queue again, at once
    assert {m.decode() for m in redis_client.smembers(consumer.acks_key)} == {first.options["redis_message_id"]}
    assert redis_client.llen(f"{broker.namespace}:q") == 4


def test_a_careful_message_handed_back_unstarted_is_forgotten(broker):
    # Given a fetched message its fetch named careful (a dead worker held it), not started yet
    broker.enqueue(message(1))
    consumer = broker.consume("q", prefetch=4, timeout=50)
    proxy = next(consumer)
    rid = proxy.options["redis_message_id"]
    broker.recovery.careful.add(rid)
    # When it is handed back (the pause gate, a stopping worker)
    consumer.requeue([proxy])
    # Then this worker forgets it: whoever fetches it next decides again
    assert rid not in broker.recovery.careful
