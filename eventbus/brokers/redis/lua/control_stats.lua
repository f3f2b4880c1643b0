-- The one place counts are computed. waiting = the four priority lists; delayed = the durable schedule's
-- count for the queue (scheduled sends, retries in backoff) plus any message in Dramatiq's delay queue;
-- active/completed/failed = ledger; dead = dead letters.
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
        redis.call("hlen", base .. ".DQ.msgs") + (tonumber(redis.call("hget", ns .. ":schedule.counts", q)) or 0),
        redis.call("zcard", jobs .. "completed"),
        redis.call("zcard", jobs .. "failed"),
        redis.call("zcard", base .. ".XQ"),
        redis.call("sismember", ns .. ":__paused__", q),
        processed,
    }
end
return {out, redis.call("hgetall", ns .. ":topicstats")}
