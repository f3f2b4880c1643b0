local t = redis.call("time")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call("zremrangebyscore", KEYS[1], "-inf", now)
if redis.call("zcard", KEYS[1]) < tonumber(ARGV[1]) then
    redis.call("zadd", KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
    redis.call("pexpire", KEYS[1], tonumber(ARGV[3]) * 2)
    return 1
end
return 0
