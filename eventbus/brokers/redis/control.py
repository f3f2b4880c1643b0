"""The control plane's store on Redis: the ledger's keys (see ``eventbus.brokers.redis.ledger``) beside Dramatiq's.

Dead letters are Dramatiq's ``<q>.XQ`` (zset of broker ids by dead-letter time) and ``<q>.XQ.msgs``.
Taking entries is a Lua script (ZREM, and only if that removed it, HGET+HDEL), so two operators
never requeue the same letter twice. Never ``broker.flush``: it drops the queue too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import dramatiq
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from eventbus.brokers import PRIORITY_SUFFIX
from eventbus.brokers.redis.guard import check_redis_config
from eventbus.brokers.redis.ledger import RedisLedger
from eventbus.brokers.redis.lua import load
from eventbus.brokers.redis.pause import paused_key
from eventbus.brokers.redis.schedule import SCHEDULE_COUNTS_KEY
from eventbus.clock import now_ms
from eventbus.delivery import EVENTS_QUEUE
from eventbus.job_record import JobRecord
from eventbus.ledger import JobState
from eventbus.priority import Priority
from eventbus.reports import HealthCheck, QueueDepth, QueueStats, Stats, WorkerInfo, stats_of
from eventbus.retention import BUCKET_MS, Retention
from eventbus.settings import Settings
from eventbus.stores import DeadRow

LIVE_WORKER_MS = 60_000  # a worker with a heartbeat this recent counts as live in the depths

PING_TIMEOUT_S = 1.0

_STATS = load("control_stats")
_REMOVE_WAITING = load("control_remove_waiting")
_TAKE = load("control_take_dead")
_TAKE_OLDER = load("control_take_dead_older")

_PAYLOAD_SUFFIX = {
    JobState.WAITING: ".msgs",
    JobState.ACTIVE: ".msgs",
    JobState.DELAYED: ".DQ.msgs",
    JobState.RETRYING: ".DQ.msgs",
    JobState.DEAD: ".XQ.msgs",
}


class RedisControlStore(RedisLedger):
    """The control plane's reads and writes under one Redis namespace."""

    def __init__(self, broker: Any, settings: Settings) -> None:
        super().__init__(broker.client, broker.namespace, Retention.from_settings(settings))
        self.url: str = broker.url
        self.require_persistence = settings.redis_require_persistence
        self._scripts: dict[str, Any] = {}

    def script(self, name: str, source: str) -> Any:
        """A registered Lua script (registered once per store)."""
        if name not in self._scripts:
            self._scripts[name] = self.client.register_script(source)
        return self._scripts[name]

    # -- ledger -------------------------------------------------------------------------------

    def job_ids(self, queue: str, state: JobState, top: float, start: int, num: int) -> list[tuple[str, float]]:
        rows = self.client.zrevrangebyscore(
            self.state_key(queue, state), top, "-inf", start=start, num=num, withscores=True
        )
        return [(member.decode(), float(score)) for member, score in rows]

    def delete_job(self, job_id: str, queue: str) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.delete(self.job_key(job_id))
            for state in JobState:
                pipe.zrem(self.state_key(queue, state), job_id)
            pipe.execute()

    # -- messages -----------------------------------------------------------------------------

    def _rmid(self, job_id: str) -> str | None:
        raw = self.client.hget(self.job_key(job_id), "redis_message_id")
        return raw.decode() if raw else None

    def message_data(self, record: JobRecord) -> bytes | None:
        suffix = _PAYLOAD_SUFFIX.get(record.state)
        rmid = self._rmid(record.id)
        if suffix is None or not rmid:
            return None
        data = self.client.hget(self.key(record.queue + suffix), rmid)
        return cast(bytes, data) if data else None

    def waiting_event_data(self, job_id: str) -> bytes | None:
        data = self.client.hget(self.key(EVENTS_QUEUE + ".msgs"), job_id)
        return cast(bytes, data) if data else None

    def remove_waiting(self, record: JobRecord) -> bool | None:
        rmid = self._rmid(record.id)
        if not rmid:
            return None
        base = self.key(record.queue)
        lists = [base + ".p0", base + ".p1", base, base + ".p3"]
        script = self.script("remove_waiting", _REMOVE_WAITING)
        return bool(int(script(keys=[base + ".msgs", *lists], args=[rmid])))

    # -- stats, pause -------------------------------------------------------------------------

    def stats(self, local_queues: Sequence[str]) -> Stats:
        at = now_ms()
        script = self.script("stats", _STATS)
        rows, topic_raw = script(args=[self.namespace, at, BUCKET_MS, *local_queues])
        queues = [
            QueueStats(
                queue=row[0].decode(),
                waiting=int(row[1]),
                active=int(row[2]),
                delayed=int(row[3]),
                completed=int(row[4]),
                failed=int(row[5]),
                dead=int(row[6]),
                paused=bool(row[7]),
                processed_last_minute=int(row[8]),
            )
            for row in rows
        ]
        counts: dict[str, dict[str, int]] = {}
        for i in range(0, len(topic_raw), 2):
            topic, _, name = topic_raw[i].decode().rpartition("|")
            counts.setdefault(topic, {})[name] = int(topic_raw[i + 1])
        return stats_of(queues, counts, at)

    def pause(self, queue: str) -> None:
        self.client.sadd(paused_key(self.namespace), queue)

    def resume(self, queue: str) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.srem(paused_key(self.namespace), queue)
            pipe.publish(self.key("__bell__"), queue)  # idle consumers fetch at once (eventbus.brokers.redis.doorbell)
            pipe.execute()

    def paused(self) -> set[str]:
        return {q.decode() for q in self.client.smembers(paused_key(self.namespace))}

    # -- dead letters -------------------------------------------------------------------------

    def _xq(self, queue: str) -> tuple[str, str]:
        return self.key(queue + ".XQ"), self.key(queue + ".XQ.msgs")

    def dead_rows(self, queue: str, top: float, start: int, num: int) -> list[DeadRow]:
        zkey, hkey = self._xq(queue)
        rows = self.client.zrevrangebyscore(zkey, top, "-inf", start=start, num=num, withscores=True)
        if not rows:
            return []
        datas = self.client.hmget(hkey, [member for member, _ in rows])
        return [(member.decode(), float(score), data) for (member, score), data in zip(rows, datas)]

    def locate_dead(self, job_id: str, queues: Sequence[str]) -> tuple[str, str, bytes] | None:
        record = self.get([job_id])[0]
        raw_rmid = self.client.hget(self.job_key(job_id), "redis_message_id") if record else None
        if record is not None and raw_rmid:
            data = self.client.hget(self._xq(record.queue)[1], raw_rmid)
            if data:
                return record.queue, raw_rmid.decode(), data
        needle = f'"message_id":"{job_id}"'.encode()
        for queue in queues:
            for rmid, data in self.client.hscan_iter(self._xq(queue)[1], count=500):
                if needle in data:
                    return queue, rmid.decode(), data
        return None

    def dead_score(self, queue: str, broker_id: str) -> float:
        return float(self.client.zscore(self._xq(queue)[0], broker_id) or 0.0)

    def take_dead(self, queue: str, broker_ids: Sequence[str]) -> list[bytes]:
        script = self.script("dlq_take", _TAKE)
        out: list[bytes] = []
        ids = list(broker_ids)
        for i in range(0, len(ids), 500):
            out.extend(d for d in script(keys=list(self._xq(queue)), args=ids[i : i + 500]) if d)
        return out

    def take_dead_older(self, queue: str, cutoff_ms: int) -> list[bytes]:
        script = self.script("dlq_take_older", _TAKE_OLDER)
        return list(script(keys=list(self._xq(queue)), args=[cutoff_ms]))

    def put_back_dead(self, queue: str, datas: Sequence[bytes]) -> None:
        zkey, hkey = self._xq(queue)
        with self.client.pipeline(transaction=True) as pipe:
            for data in datas:
                rmid = dramatiq.Message.decode(data).options["redis_message_id"]
                pipe.zadd(zkey, {rmid: now_ms()})
                pipe.hset(hkey, rmid, data)
            pipe.execute()

    # -- workers, subscriptions, locks, health ------------------------------------------------

    def heartbeat(self, worker: str, at_ms: int) -> None:
        self.client.zadd(self.key("workers"), {worker: at_ms})

    def forget_worker(self, worker: str) -> None:
        self.client.zrem(self.key("workers"), worker)

    def prune_workers(self, before_ms: int) -> None:
        self.client.zremrangebyscore(self.key("workers"), "-inf", before_ms)

    def live_workers(self, since_ms: int, client: Any = None) -> list[WorkerInfo]:
        rows = (client or self.client).zrangebyscore(self.key("workers"), since_ms, "+inf", withscores=True)
        return [WorkerInfo(name.decode(), int(score)) for name, score in rows]

    def register_subscriptions(self, subscriptions: Mapping[str, str]) -> None:
        if subscriptions:
            self.client.hset(self.key("subscriptions"), mapping=cast(Any, dict(subscriptions)))

    def subscription(self, name: str) -> str | None:
        raw = self.client.hget(self.key("subscriptions"), name)
        return raw.decode() if raw else None

    def try_lock(self, name: str, owner: str, ttl_ms: int) -> bool:
        return bool(self.client.set(self.key(*name.split(":")), owner, nx=True, px=ttl_ms))

    def depths(self, queues: Sequence[str]) -> tuple[list[QueueDepth], int | None]:
        """Every queue's counts and the live worker count, in one pipelined round trip (no KEYS/SCAN)."""
        levels = [(p.value, PRIORITY_SUFFIX[p.rank]) for p in Priority]
        with self.client.pipeline(transaction=False) as pipe:
            for queue in queues:
                for _, suffix in levels:
                    pipe.llen(self.key(queue + suffix))
                pipe.hlen(self.key(f"{queue}.msgs"))
                pipe.hget(self.key(SCHEDULE_COUNTS_KEY), queue)
            pipe.zcount(self.key("__heartbeats__"), now_ms() - LIVE_WORKER_MS, "+inf")
            values = pipe.execute()
        depths, width = [], len(levels) + 2
        for i, queue in enumerate(queues):
            row = values[i * width : (i + 1) * width]
            ready = {level: int(n) for (level, _), n in zip(levels, row)}
            stored, scheduled = (int(n or 0) for n in row[len(levels) :])
            depths.append(QueueDepth(queue, ready, max(0, stored - sum(ready.values())), scheduled))
        return depths, int(values[-1])

    def probe(self) -> list[HealthCheck]:
        """Ping within 1 s without retries (so health answers within 2 s), then the memory policy."""
        client = self.quick_client()
        try:
            client.ping()
        except (redis.RedisError, OSError) as exc:
            reason = f"broker unreachable: {exc}; is Redis running at EVENTBUS_BROKER_URL / REDIS_URL?"
            return [HealthCheck("broker", False, reason)]
        try:
            problems = check_redis_config(client, require_persistence=self.require_persistence)
        except redis.RedisError as exc:
            problems = [f"cannot read the Redis configuration ({exc})"]
        config = HealthCheck("redis_config", not problems, "; ".join(problems) or "no eviction; persistence on")
        return [HealthCheck("broker", True, "reachable"), config]

    def quick_client(self) -> redis.Redis:  # type: ignore[type-arg]
        """A client that gives up after PING_TIMEOUT_S, without retries."""
        return redis.Redis.from_url(
            self.url, socket_connect_timeout=PING_TIMEOUT_S, socket_timeout=PING_TIMEOUT_S, retry=Retry(NoBackoff(), 0)
        )
