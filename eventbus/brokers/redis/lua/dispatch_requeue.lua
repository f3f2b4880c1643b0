-- On graceful shutdown, prefetched messages go back to the head of their own priority list (Dramatiq
-- pushes them to the tail of the NORMAL list, so a requeued CRITICAL message would lose its place).
elseif command == "requeue" then
    local suffixes = {critical = ".p0", high = ".p1", low = ".p3"}
    for i = #ARGS, 1, -1 do
        local message_id = ARGS[i]
        if redis.call("srem", queue_acks, message_id) > 0 then
            local data = redis.call("hget", queue_messages, message_id)
            if data then
                local list = queue_full_name
                if queue_name == queue_canonical_name then
                    local ok, decoded = pcall(cjson.decode, data)
                    if ok and type(decoded) == "table" and type(decoded.options) == "table" then
                        list = list .. (suffixes[decoded.options.priority] or "")
                    end
                end
                -- Ring when the list was empty: a consumer waiting for the doorbell takes it at once.
                if redis.call("lpush", list, message_id) == 1 then
                    redis.call("publish", namespace .. ":__bell__", queue_name)
                end
            end
        end
    end
