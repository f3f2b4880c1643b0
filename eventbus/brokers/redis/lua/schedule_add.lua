-- ARGV: ns, once ttl, delay ms, then rows of (message_id, entry, once key or "").
local ns = ARGV[1]
local ttl = tonumber(ARGV[2])
local t = redis.call("time")
local eta = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
local zkey, hkey, ckey = ns .. ":schedule", ns .. ":schedule.msgs", ns .. ":schedule.counts"
local flags = {}
local n = 0
for i = 4, #ARGV, 3 do
    local ok = true
    if ARGV[i + 2] ~= "" then
        ok = redis.call("set", ns .. ":once:" .. ARGV[i + 2], "1", "NX", "EX", ttl)
    end
    n = n + 1
    if ok then
        if redis.call("zadd", zkey, eta, ARGV[i]) == 1 then
            local entry = ARGV[i + 1]
            redis.call("hincrby", ckey, string.sub(entry, 1, string.find(entry, "\n", 1, true) - 1), 1)
        end
        redis.call("hset", hkey, ARGV[i], ARGV[i + 1])
        flags[n] = 1
    else
        flags[n] = 0
    end
end
return flags
