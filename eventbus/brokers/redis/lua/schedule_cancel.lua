if redis.call("zrem", KEYS[1], ARGV[1]) == 1 then
    local entry = redis.call("hget", KEYS[2], ARGV[1])
    if entry then
        redis.call("hincrby", KEYS[3], string.sub(entry, 1, string.find(entry, "\n", 1, true) - 1), -1)
    end
    redis.call("hdel", KEYS[2], ARGV[1])
    return 1
end
return 0
