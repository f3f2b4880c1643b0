"""Health: healthy / degraded / unhealthy, with one reason per failed check."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from eventbus.control.types import HealthCheck, HealthReport, HealthStatus, WorkerInfo
from eventbus.ledger import now_ms

if TYPE_CHECKING:
    from eventbus.control import ControlPlane

PING_TIMEOUT_S = 1.0
WORKER_TTL_S = 15.0


def workers_key(cp: ControlPlane) -> str:
    """zset of worker processes (``host:pid``) by last heartbeat (ms)."""
    return cp.key("workers")


def live_workers(cp: ControlPlane, client: redis.Redis | None = None) -> list[WorkerInfo]:  # type: ignore[type-arg]
    """Worker processes with a heartbeat in the last 15 s."""
    rows = (client or cp.client).zrangebyscore(workers_key(cp), now_ms() - WORKER_TTL_S * 1000, "+inf", withscores=True)
    return [WorkerInfo(name.decode(), int(score)) for name, score in rows]


def memory_policy_check(policy: str | None) -> HealthCheck:
    """Only ``noeviction`` keeps Redis from silently dropping queued jobs when memory runs out."""
    if policy is None:
        return HealthCheck("memory_policy", True, "maxmemory-policy unknown (CONFIG not allowed)")
    if policy == "noeviction":
        return HealthCheck("memory_policy", True, "maxmemory-policy noeviction")
    return HealthCheck(
        "memory_policy",
        False,
        f"Redis maxmemory-policy is {policy}: Redis may evict queued jobs; set maxmemory-policy noeviction",
    )


def check(cp: ControlPlane, *, max_failed: int | None = None, max_waiting: int | None = None) -> HealthReport:
    """Broker reachable (1 s), memory policy, dead letters and waiting jobs under thresholds, a live worker."""
    max_failed = cp.settings.health_max_failed if max_failed is None else max_failed
    max_waiting = cp.settings.health_max_waiting if max_waiting is None else max_waiting
    client = _quick_client(cp)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        reason = f"broker unreachable: {exc}; is Redis running at EVENTBUS_BROKER_URL / REDIS_URL?"
        return HealthReport(HealthStatus.UNHEALTHY, [reason], [HealthCheck("broker", False, reason)])
    checks = [HealthCheck("broker", True, "reachable")]
    try:
        policy_raw = client.config_get("maxmemory-policy").get("maxmemory-policy")
        policy = policy_raw.decode() if isinstance(policy_raw, bytes) else policy_raw
    except redis.RedisError:
        policy = None
    checks.append(memory_policy_check(policy))
    stats = cp.stats()
    dead = {q.queue: q.dead for q in stats.queues if q.dead}
    total_dead = sum(dead.values())
    checks.append(
        HealthCheck(
            "failed",
            total_dead <= max_failed,
            f"{total_dead} failed jobs in dead letters (threshold {max_failed})"
            + (f": {_per_queue(dead)}; see `eventbus dlq list`" if total_dead > max_failed else ""),
        )
    )
    waiting = {q.queue: q.waiting for q in stats.queues if q.waiting}
    total_waiting = sum(waiting.values())
    checks.append(
        HealthCheck(
            "waiting",
            total_waiting <= max_waiting,
            f"{total_waiting} waiting jobs (threshold {max_waiting})"
            + (f": {_per_queue(waiting)}; add workers or check paused queues" if total_waiting > max_waiting else ""),
        )
    )
    workers = live_workers(cp, client)
    checks.append(
        HealthCheck(
            "workers",
            bool(workers),
            f"{len(workers)} live workers"
            if workers
            else f"no live worker (no heartbeat in {WORKER_TTL_S:.0f} s); start one: eventbus worker",
        )
    )
    reasons = [c.detail for c in checks if not c.ok]
    return HealthReport(HealthStatus.DEGRADED if reasons else HealthStatus.HEALTHY, reasons, checks)


def _per_queue(counts: dict[str, int]) -> str:
    return ", ".join(f"{q} {n}" for q, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _quick_client(cp: ControlPlane) -> redis.Redis:  # type: ignore[type-arg]
    """A client that gives up after PING_TIMEOUT_S, without retries, so health answers within 2 s."""
    return redis.Redis.from_url(
        cast(Any, cp.broker).url,
        socket_connect_timeout=PING_TIMEOUT_S,
        socket_timeout=PING_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
