-- ARGV: namespace, once-key ttl s, the queue of messages to ack ("" for none), broker id, the number of
-- ids to ack, those ids, the number of queues this worker takes messages of, (queue, how many) pairs,
-- then 5 values per message (queue, list, broker id, data, once-key or "").
-- A message of a queue this worker takes goes straight into its ack set (flag 2) instead of its list,
-- but only while the queue is not paused and none of its priority lists holds anything: the worker
-- that fanned an event out runs its deliveries without a ring and a fetch, and no waiting message of
-- any priority is overtaken. The acks run last: a script that fails half-way has acked nothing (its
-- deliveries are once-only).
local ns = ARGV[1]
local ttl = tonumber(ARGV[2])
local worker = ARGV[4]
local n_acks = tonumber(ARGV[5])
local i = 6 + n_acks
local budget = {}
for _ = 1, tonumber(ARGV[i]) do
    budget[ARGV[i + 1]] = tonumber(ARGV[i + 2])
    i = i + 2
end
local function idle(queue)
    local base = ns .. ":" .. queue
    return redis.call("sismember", ns .. ":__paused__", queue) == 0 and redis.call("llen", base) == 0
        and redis.call("llen", base .. ".p0") == 0 and redis.call("llen", base .. ".p1") == 0
        and redis.call("llen", base .. ".p3") == 0
end
local flags = {}
local rung = {}
local n = 0
for j = i + 1, #ARGV, 5 do
    local ok = true
    local once = ARGV[j + 4]
    if once ~= "" then
        ok = redis.call("set", ns .. ":once:" .. once, "1", "NX", "EX", ttl)
    end
    n = n + 1
    flags[n] = 0
    if ok then
        local queue = ARGV[j]
        redis.call("hset", ns .. ":" .. queue .. ".msgs", ARGV[j + 2], ARGV[j + 3])
        if budget[queue] and budget[queue] > 0 and idle(queue) then
            budget[queue] = budget[queue] - 1
            redis.call("sadd", ns .. ":__acks__." .. worker .. "." .. queue, ARGV[j + 2])
            redis.call("sadd", ns .. ":__ackq__." .. worker, queue)
            flags[n] = 2
        else
            budget[queue] = 0  -- keep order: nothing after a queued message is taken
            local waiting = redis.call("rpush", ns .. ":" .. ARGV[j + 1], ARGV[j + 2])
            flags[n] = 1
            -- Ring only when the list was empty: a backlog means its consumers are busy fetching anyway.
            if waiting == 1 and not rung[queue] then
                rung[queue] = true
                redis.call("publish", ns .. ":__bell__", queue)
            end
        end
    end
end
if n_acks > 0 then
    local acks = ns .. ":__acks__." .. worker .. "." .. ARGV[3]
    local msgs = ns .. ":" .. ARGV[3] .. ".msgs"
    for j = 6, 5 + n_acks do
        redis.call("srem", acks, ARGV[j])
        redis.call("hdel", msgs, ARGV[j])
    end
end
return flags
