local t = redis.call("time")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
    redis.call("zadd", ARGV[i], "XX", now + ttl, ARGV[i + 1])
    redis.call("pexpire", ARGV[i], ttl * 2)
end
return 1
