"""Redis settings that can lose queued work: the health check reports them as reasons to be degraded.

A queue on Redis is only as durable as that Redis: an eviction policy may delete waiting
messages, dead letters and dedup keys under memory pressure, and without persistence a restart
empties everything. ``check_redis_config`` reads the settings (``CONFIG GET``, falling back to
``INFO`` on managed services that refuse CONFIG) and returns one sentence per problem, each
naming the fix; an empty list means nothing to report.
"""

from __future__ import annotations

from typing import Any

import redis


def check_redis_config(client: Any, *, require_persistence: bool = True) -> list[str]:
    """Reasons this Redis can lose queued work (empty when none); never raises for a refused CONFIG.

    ``require_persistence=False`` (``EVENTBUS_REDIS_REQUIRE_PERSISTENCE=0``) accepts a Redis that keeps
    nothing on disk, e.g. a development or CI server whose queues may be lost on restart.
    """
    config = _config(client)
    reasons: list[str] = []
    policy = str(config.get("maxmemory-policy", "noeviction"))
    maxmemory = int(config.get("maxmemory", 0) or 0)
    if policy != "noeviction" and maxmemory > 0:
        reasons.append(
            f"Redis maxmemory-policy is {policy} (maxmemory {maxmemory} bytes): under memory pressure it evicts "
            "keys, including queued messages and dedup keys; set maxmemory-policy noeviction"
        )
    save, appendonly = config.get("save"), config.get("appendonly")
    no_disk = save is not None and appendonly is not None and not str(save).strip() and str(appendonly) == "no"
    if require_persistence and no_disk:
        reasons.append(
            'Redis persistence is off (save "" and appendonly no): a restart loses every queued message; '
            "set appendonly yes (or a save schedule), or EVENTBUS_REDIS_REQUIRE_PERSISTENCE=0 to accept it"
        )
    return reasons


def _config(client: Any) -> dict[str, Any]:
    try:
        found: dict[str, Any] = {}
        for name in ("maxmemory-policy", "maxmemory", "save", "appendonly"):
            found.update(_text(client.config_get(name)))
        return found
    except redis.ResponseError:  # CONFIG is disabled (managed Redis): INFO still tells most of it
        memory, persistence = _text(client.info("memory")), _text(client.info("persistence"))
        return {
            "maxmemory-policy": memory.get("maxmemory_policy", "noeviction"),
            "maxmemory": memory.get("maxmemory", 0),
            "appendonly": "yes" if str(persistence.get("aof_enabled", "0")) == "1" else "no",
        }


def _text(values: dict[Any, Any]) -> dict[str, Any]:
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else v)
        for k, v in values.items()
    }
