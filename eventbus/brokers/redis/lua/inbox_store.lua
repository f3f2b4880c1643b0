-- Store one notification in a user's inbox (idempotent by id) and trim the oldest past the limit.
-- KEYS: zset, items, unread; ARGV: id, score, json, max items
if redis.call("zadd", KEYS[1], "NX", ARGV[2], ARGV[1]) == 1 then
    redis.call("hset", KEYS[2], ARGV[1], ARGV[3])
    redis.call("sadd", KEYS[3], ARGV[1])
end
local extra = redis.call("zcard", KEYS[1]) - tonumber(ARGV[4])
if extra > 0 then
    local old = redis.call("zrange", KEYS[1], 0, extra - 1)
    redis.call("zremrangebyrank", KEYS[1], 0, extra - 1)
    redis.call("hdel", KEYS[2], unpack(old))
    redis.call("srem", KEYS[3], unpack(old))
end
return 1
