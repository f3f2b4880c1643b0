-- Remove records of one (queue, state): older than a cutoff, or beyond the newest ``keep``.
local ns, zkey = ARGV[1], ARGV[2]
local ids
if ARGV[3] ~= "" then
    ids = redis.call("zrangebyscore", zkey, "-inf", ARGV[3], "LIMIT", 0, 1000)
else
    local n = redis.call("zcard", zkey) - tonumber(ARGV[4])
    if n <= 0 then return 0 end
    ids = redis.call("zrange", zkey, 0, math.min(n, 1000) - 1)
end
for _, id in ipairs(ids) do
    redis.call("zrem", zkey, id)
    redis.call("del", ns .. ":job:" .. id)
end
return #ids
