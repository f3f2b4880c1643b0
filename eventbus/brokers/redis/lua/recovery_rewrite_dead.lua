-- Replace a dead letter's stored copy only if it is still there.
if redis.call("hexists", KEYS[1], ARGV[1]) == 1 then
    redis.call("hset", KEYS[1], ARGV[1], ARGV[2])
    return 1
end
return 0
