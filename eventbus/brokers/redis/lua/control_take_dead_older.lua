local ids = redis.call("zrangebyscore", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, 500)
local out = {}
for i, id in ipairs(ids) do
    redis.call("zrem", KEYS[1], id)
    out[i] = redis.call("hget", KEYS[2], id) or ""
    redis.call("hdel", KEYS[2], id)
end
return out
