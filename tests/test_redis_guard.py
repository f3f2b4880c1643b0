"""The Redis configuration guard: eviction and missing persistence are reasons for a degraded health."""

from __future__ import annotations

import shutil

import pytest

from eventbus.redis_guard import check_redis_config
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
