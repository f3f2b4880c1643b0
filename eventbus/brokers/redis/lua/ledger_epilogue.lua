for zkey, ids in pairs(leaving) do
    local items = {}
    for id in pairs(ids) do
        items[#items + 1] = id
    end
    call_with("zrem", zkey, items)
end
for zkey, ids in pairs(entering) do
    local items = {}
    for id, t in pairs(ids) do
        items[#items + 1] = t
        items[#items + 1] = id
    end
    call_with("zadd", zkey, items)
end
for q, buckets in pairs(processed) do
    for bucket, n in pairs(buckets) do
        local counter = ns .. ":processed:" .. q .. ":" .. bucket
        redis.call("incrby", counter, n)
        redis.call("pexpire", counter, 70000)
    end
end
for topic, counts in pairs(stats) do
    for name, n in pairs(counts) do
        redis.call("hincrby", ns .. ":topicstats", topic .. "|" .. name, n)
    end
end
for queue in pairs(queues) do
    redis.call("sadd", ns .. ":queues", queue)
end
for zkey, n_keep in pairs(trim) do
    local n = redis.call("zcard", zkey)
    if n > n_keep then
        local old = redis.call("zpopmin", zkey, n - n_keep)
        local keys = {}
        for i = 1, #old, 2 do
            keys[#keys + 1] = ns .. ":job:" .. old[i]
        end
        call_with("del", nil, keys)
    end
end
