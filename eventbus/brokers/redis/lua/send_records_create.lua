-- KEYS[1] record; ARGV: ttl, then field/value pairs. Returns the old state or false.
local old = redis.call("hget", KEYS[1], "state")
if old then return old end
redis.call("hset", KEYS[1], unpack(ARGV, 2))
redis.call("expire", KEYS[1], ARGV[1])
return false
