    -- A fetch returns the messages, then one more value: the ids among them that were in the hands of
    -- a worker that died (comma-separated; their start marks are written before they run).
    if n > 0 then
        redis.call("sadd", namespace .. ":__ackq__." .. worker_id, queue_name)
        local out = redis.call("hmget", queue_messages, unpack(message_ids))
        local careful = {}
        for k = 1, n do
            if redis.call("exists", namespace .. ":lost:" .. message_ids[k]) == 1 then
                careful[#careful + 1] = message_ids[k]
            end
        end
        out[n + 1] = table.concat(careful, ",")
        return out
