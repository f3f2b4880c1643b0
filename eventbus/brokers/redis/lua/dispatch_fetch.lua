-- Replaces the fetch branch of Dramatiq's dispatch script. Paused queues hand out nothing (their
-- .DQ still moves due messages in); otherwise take from the highest priority list first.
elseif command == "fetch" then
    if redis.call("sismember", namespace .. ":__paused__", queue_name) == 1 then
        return {}
    end
    local prefetch = math.min(ARGS[1], max_unpack_size)
    local lists = {queue_full_name .. ".p0", queue_full_name .. ".p1", queue_full_name, queue_full_name .. ".p3"}
    if queue_name ~= queue_canonical_name then
        lists = {queue_full_name}
    end
    local message_ids = {}
    local n = 0
    for _, list in ipairs(lists) do
        while n < prefetch do
            local message_id = redis.call("lpop", list)
            if not message_id then
                break
            end
            n = n + 1
            message_ids[n] = message_id
            redis.call("sadd", queue_acks, message_id)
        end
    end
    if n > 0 then
        return redis.call("hmget", queue_messages, unpack(message_ids))
    end
    return {}
