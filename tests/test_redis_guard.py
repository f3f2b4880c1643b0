"""The Redis configuration guard: eviction and missing persistence are reasons for a degraded health."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest

from eventbus import declare_topic
from eventbus.broker import make_broker
from eventbus.brokers.redis.guard import check_redis_config
from eventbus.control import ControlPlane
from eventbus.delivery import EVENTS_QUEUE, FANOUT_ACTOR, build_message
from eventbus.event import Event
from eventbus.outbox import get_outbox
from eventbus.settings import Settings
from tests.conftest import need
from tests.private_redis import RedisServer


@pytest.fixture
def server(tmp_path):
    need("redis-server", shutil.which("redis-server") is not None)
    srv = RedisServer(tmp_path / "redis", persistent=True)
    srv.start()
    yield srv
    srv.stop()


def test_a_persistent_redis_without_eviction_has_nothing_to_report(server):
    assert check_redis_config(server.client()) == []


def test_an_evicting_policy_with_a_memory_limit_is_reported_with_the_fix(server):
    client = server.client()
    client.config_set("maxmemory-policy", "allkeys-lru")
    assert check_redis_config(client) == []  # no maxmemory: nothing can be evicted yet
    client.config_set("maxmemory", "100mb")
    (reason,) = check_redis_config(client)
    assert "maxmemory-policy is allkeys-lru" in reason and "set maxmemory-policy noeviction" in reason
    client.config_set("maxmemory-policy", "volatile-lru")  # evicts dedup keys (they have a TTL)
    assert "volatile-lru" in check_redis_config(client)[0]


def test_persistence_off_is_reported_with_the_fix(server):
    client = server.client()
    client.config_set("appendonly", "no")
    client.config_set("save", "")
    (reason,) = check_redis_config(client)
    assert "persistence is off" in reason and "appendonly yes" in reason
    client.config_set("save", "3600 1")
    assert check_redis_config(client) == []


def test_both_problems_are_reported(server):
    client = server.client()
    client.config_set("appendonly", "no")
    client.config_set("save", "")
    client.config_set("maxmemory", "50mb")
    client.config_set("maxmemory-policy", "allkeys-random")
    assert len(check_redis_config(client)) == 2


def test_a_managed_redis_that_refuses_config_is_read_through_info(tmp_path):
    # Given a Redis where CONFIG is disabled (as on managed services), evicting and without AOF
    need("redis-server", shutil.which("redis-server") is not None)
    srv = RedisServer(
        tmp_path / "managed",
        persistent=False,
        extra_args=("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru", "--rename-command", "CONFIG", ""),
    )
    srv.start()
    try:
        # Then the eviction policy is still reported (persistence cannot be told apart from a save schedule)
        reasons = check_redis_config(srv.client())
        assert len(reasons) == 1 and "allkeys-lru" in reasons[0]
    finally:
        srv.stop()


@contextmanager
def plane(server: RedisServer, **overrides) -> Iterator[ControlPlane]:
    settings = replace(Settings(), broker_url=server.url, namespace="guard", **overrides)
    broker = make_broker(settings)
    try:
        yield ControlPlane(broker, settings)
    finally:
        broker.client.connection_pool.disconnect()


def test_health_is_degraded_by_a_redis_that_keeps_nothing_on_disk_unless_that_is_accepted(tmp_path):
    # Given a Redis without persistence
    need("redis-server", shutil.which("redis-server") is not None)
    srv = RedisServer(tmp_path / "ephemeral", persistent=False)
    srv.start()
    try:
        # Then health is degraded and names the fix
        with plane(srv) as cp:
            report = cp.health()
        assert report.status.value == "degraded"
        assert any("persistence is off" in r and "appendonly yes" in r for r in report.reasons)
        # And an operator who accepts it (EVENTBUS_REDIS_REQUIRE_PERSISTENCE=0) no longer sees that reason
        with plane(srv, redis_require_persistence=False) as cp:
            assert not any("persistence" in r for r in cp.health().reasons)
            # But an evicting policy with a memory limit degrades it either way
            srv.client().config_set("maxmemory", "64mb")
            srv.client().config_set("maxmemory-policy", "allkeys-lru")
            assert any("set maxmemory-policy noeviction" in r for r in cp.health().reasons)
    finally:
        srv.stop()


def test_events_waiting_in_the_outbox_show_in_stats_and_degrade_health(server, tmp_path):
    declare_topic("guard.happened")
    path = str(tmp_path / "outbox.db")
    # Given two events the outbox kept while the broker was unreachable
    outbox = get_outbox(Settings(outbox_path=path))
    assert outbox is not None
    events = [Event("guard.happened", {"n": n}) for n in range(2)]
    messages = [build_message(EVENTS_QUEUE, FANOUT_ACTOR, {"event": e.to_dict()}, {}, e.id) for e in events]
    outbox.put(messages, [f"event:{e.id}" for e in events], delay_ms=None, error="connection refused")
    # Then the control plane shows them, and health is degraded with the way out
    with plane(server, outbox_path=path) as cp:
        assert cp.stats().outbox["depth"] == 2 and cp.stats().outbox["queues"] == {"events": 2}
        reasons = cp.health().reasons
    assert any("2 messages wait in the outbox" in r and "eventbus outbox relay" in r for r in reasons)
