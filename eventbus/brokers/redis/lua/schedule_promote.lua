-- Moves up to ARGV[1] due entries to their lists; returns their encoded messages.
local ns = KEYS[1]
local t = redis.call("time")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local zkey, hkey = ns .. ":schedule", ns .. ":schedule.msgs"
local ids = redis.call("zrangebyscore", zkey, "-inf", now, "LIMIT", 0, tonumber(ARGV[1]))
local out = {}
for _, id in ipairs(ids) do
    local entry = redis.call("hget", hkey, id)
    redis.call("zrem", zkey, id)
    redis.call("hdel", hkey, id)
    if entry then
        local a = string.find(entry, "\n", 1, true)
        local b = string.find(entry, "\n", a + 1, true)
        local c = string.find(entry, "\n", b + 1, true)
        local data = string.sub(entry, c + 1)
        redis.call("hset", ns .. ":" .. string.sub(entry, 1, a - 1) .. ".msgs", string.sub(entry, b + 1, c - 1), data)
        local queue = string.sub(entry, 1, a - 1)
        redis.call("hincrby", ns .. ":schedule.counts", queue, -1)
        if redis.call("rpush", ns .. ":" .. string.sub(entry, a + 1, b - 1), string.sub(entry, b + 1, c - 1)) == 1 then
            redis.call("publish", ns .. ":__bell__", queue)  -- wake an idle consumer (eventbus.brokers.redis.doorbell)
        end
        out[#out + 1] = data
    end
end
return out
