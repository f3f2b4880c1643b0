"""Queue and topic statistics, read in one round trip (one Lua call)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventbus.control.types import QueueStats, Stats, TopicStats
from eventbus.ledger import now_ms
from eventbus.ledger_redis import BUCKET_MS

if TYPE_CHECKING:
    from eventbus.control import ControlPlane

# The one place counts are computed. waiting = the four priority lists; delayed = the delay queue's
# messages (scheduled and retries in backoff); active/completed/failed = ledger; dead = dead letters.
_STATS = """
local ns = ARGV[1]
local bucket = math.floor(tonumber(ARGV[2]) / tonumber(ARGV[3]))
local queues, seen = {}, {}
for _, q in ipairs(redis.call("smembers", ns .. ":queues")) do
    seen[q] = true
    queues[#queues + 1] = q
end
for i = 4, #ARGV do
    if not seen[ARGV[i]] then
        seen[ARGV[i]] = true
        queues[#queues + 1] = ARGV[i]
    end
end
local out = {}
for _, q in ipairs(queues) do
    local base = ns .. ":" .. q
    local jobs = ns .. ":jobs:" .. q .. ":"
    local waiting = redis.call("llen", base .. ".p0") + redis.call("llen", base .. ".p1")
        + redis.call("llen", base) + redis.call("llen", base .. ".p3")
    local processed = 0
    for b = bucket - 11, bucket do
        processed = processed + (tonumber(redis.call("get", ns .. ":processed:" .. q .. ":" .. b)) or 0)
    end
    out[#out + 1] = {
        q,
        waiting,
        redis.call("zcard", jobs .. "active"),
        redis.call("hlen", base .. ".DQ.msgs"),
        redis.call("zcard", jobs .. "completed"),
        redis.call("zcard", jobs .. "failed"),
        redis.call("zcard", base .. ".XQ"),
        redis.call("sismember", ns .. ":__paused__", q),
        processed,
    }
end
return {out, redis.call("hgetall", ns .. ":topicstats")}
"""


def read_stats(cp: ControlPlane) -> Stats:
    """Stats of every known queue and topic."""
    at = now_ms()
    script = cp.script("stats", _STATS)
    rows, topic_raw = script(args=[cp.namespace, at, BUCKET_MS, *cp.local_queues()])
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
    topics = [
        TopicStats(topic, c.get("published", 0), c.get("deliveries", 0), c.get("failed", 0))
        for topic, c in sorted(counts.items())
    ]
    return Stats(queues=sorted(queues, key=lambda q: q.queue), topics=topics, at_ms=at)
