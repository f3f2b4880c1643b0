for i = c0, #ARGV, 8 do
    local id, seq, t, started = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local key = ns .. ":job:" .. id
    local cur = redis.call("hmget", key, "seq", "state", "queue", "history", "kind", "topic")
    if cur[1] == false or cur[3] == false then
        missing[#missing + 1] = id
    elseif tonumber(seq) >= tonumber(cur[1]) then
        applied = applied + 1
        local entry = code.completed .. "@" .. t
        local args
        if started ~= "" then
            entry = code.active .. "@" .. started .. "," .. entry
            args = {"state", "completed", "seq", seq, "updated_at", t, "finished_at_ms", t,
                "history", history(cur[4], entry), "started_at_ms", started, "worker", ARGV[i + 7]}
        else
            args = {"state", "completed", "seq", seq, "updated_at", t, "finished_at_ms", t,
                "history", history(cur[4], entry)}
        end
        -- Attempts, requeues and message id change with the attempt (seq // 10), not within one.
        if math.floor(tonumber(seq) / 10) ~= math.floor(tonumber(cur[1]) / 10) then
            args[#args + 1], args[#args + 2] = "attempts", ARGV[i + 4]
            args[#args + 1], args[#args + 2] = "requeues", ARGV[i + 5]
            if ARGV[i + 6] ~= "" then
                args[#args + 1], args[#args + 2] = "redis_message_id", ARGV[i + 6]
            end
        end
        redis.call("hset", key, unpack(args))
        moved(key, id, cur, cur[3], "completed", t, cur[5], cur[6] or "")
    end
end
