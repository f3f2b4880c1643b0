-- Take a waiting message out of its lists (only if no worker fetched it yet) and drop its data.
local removed = 0
for i = 2, #KEYS do
    removed = removed + redis.call("lrem", KEYS[i], 0, ARGV[1])
end
if removed > 0 then
    redis.call("hdel", KEYS[1], ARGV[1])
end
return removed
