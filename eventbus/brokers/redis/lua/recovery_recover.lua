-- KEYS[1] = namespace; ARGV = now ms, timeout ms, max lost deliveries, lost-count ttl s, own worker id,
-- suspect spread ms.
-- Returns {recovered, dead_workers, queue, rid, lost, queue, rid, lost, ...} for poisoned messages.
local ns = KEYS[1]
local now = tonumber(ARGV[1])
local max_lost = tonumber(ARGV[3])
local heartbeats = ns .. ":__heartbeats__"
local suffix = {critical = ".p0", high = ".p1", low = ".p3"}
local dead = redis.call("zrangebyscore", heartbeats, 0, now - tonumber(ARGV[2]))
local spread = tonumber(ARGV[6])
local out = {0, 0}
for _, worker in ipairs(dead) do
    if worker ~= ARGV[5] then
        out[2] = out[2] + 1
        local suspects = 0
        local started = ns .. ":__started__." .. worker
        local ackq = ns .. ":__ackq__." .. worker
        for _, queue in ipairs(redis.call("smembers", ackq)) do
            local acks = ns .. ":__acks__." .. worker .. "." .. queue
            local msgs = ns .. ":" .. queue .. ".msgs"
            local delayed = string.sub(queue, -3) == ".DQ"
            for _, rid in ipairs(redis.call("smembers", acks)) do
                local data = redis.call("hget", msgs, rid)
                if data then
                    local lost = 0
                    if redis.call("sismember", started, rid) == 1 then
                        lost = redis.call("incr", ns .. ":lost:" .. rid)
                        redis.call("expire", ns .. ":lost:" .. rid, tonumber(ARGV[4]))
                    else
                        -- prefetched, or started with its mark not yet written: careful from now on
                        redis.call("set", ns .. ":lost:" .. rid, 0, "NX", "EX", tonumber(ARGV[4]))
                    end
                    if lost >= max_lost then
                        local canonical = queue
                        if delayed then canonical = string.sub(queue, 1, -4) end
                        redis.call("zadd", ns .. ":" .. canonical .. ".XQ", now, rid)
                        redis.call("hset", ns .. ":" .. canonical .. ".XQ.msgs", rid, data)
                        redis.call("hdel", msgs, rid)
                        out[#out + 1] = canonical
                        out[#out + 1] = rid
                        out[#out + 1] = lost
                    else
                        local list = queue
                        local ok, decoded = pcall(cjson.decode, data)
                        if not (ok and type(decoded) == "table" and type(decoded.options) == "table") then
                            decoded = nil
                        elseif not delayed then
                            list = queue .. (suffix[decoded.options.priority] or "")
                        end
                        if lost > 0 and decoded and type(decoded.message_id) == "string" then
                            -- a suspect: it was running when its worker died. Release suspects one by
                            -- one through the schedule, so an innocent job never runs beside the
                            -- poison one again.
                            -- Counted in schedule.counts like any scheduled entry: the promoter
                            -- decrements the count when it releases one.
                            local eta = now + suspects * spread
                            if redis.call("zadd", ns .. ":schedule", eta, decoded.message_id) == 1 then
                                redis.call("hincrby", ns .. ":schedule.counts", queue, 1)
                            end
                            redis.call("hset", ns .. ":schedule.msgs", decoded.message_id,
                                queue .. "\n" .. list .. "\n" .. rid .. "\n" .. data)
                            redis.call("hdel", msgs, rid)
                            suspects = suspects + 1
                        else
                            if redis.call("lpush", ns .. ":" .. list, rid) == 1 then
                                redis.call("publish", ns .. ":__bell__", queue)
                            end
                        end
                        out[1] = out[1] + 1
                    end
                end
            end
            redis.call("del", acks)
        end
        redis.call("del", ackq, started)
        redis.call("zrem", heartbeats, worker)
    end
end
return out
