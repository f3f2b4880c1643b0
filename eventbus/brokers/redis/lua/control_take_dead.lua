local out = {}
for i, id in ipairs(ARGV) do
    out[i] = false
    if redis.call("zrem", KEYS[1], id) == 1 then
        out[i] = redis.call("hget", KEYS[2], id)
        redis.call("hdel", KEYS[2], id)
    end
end
return out
