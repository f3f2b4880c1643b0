local t = redis.call("time")
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call("get", KEYS[1]) or "0")
if tat < now then tat = now end
local wait = tat - now
if wait > tonumber(ARGV[2]) then
    return {0, tostring(wait)}
end
redis.call("set", KEYS[1], tostring(tat + interval), "PX", math.ceil(wait + interval) + 1000)
return {1, tostring(wait)}
