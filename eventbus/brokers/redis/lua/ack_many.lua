-- Acks of one group commit in one call (Dramatiq's dispatch script takes one ack per call, and its
-- preamble costs more than the ack), with the ledger's completions of those jobs (see
-- eventbus.brokers.redis.ledger). ARGV: namespace, broker id, now ms, the number of acks, (queue, message id)
-- pairs, the six ledger retention values, then 8 values per completion. Returns the ids of
-- completions whose job has no record yet.
-- Each ack does what dispatch's ack does, with this package's recovery patch: forget the start mark,
-- then drop the message if it was still this worker's (the broker checks dispatch's ack at start).
local ns, worker = ARGV[1], ARGV[2]
redis.call("zadd", ns .. ":__heartbeats__", ARGV[3], worker)
local started = ns .. ":__started__." .. worker
local acks = ns .. ":__acks__." .. worker .. "."
local n = tonumber(ARGV[4])
for i = 5, 4 + 2 * n, 2 do
    local queue, message_id = ARGV[i], ARGV[i + 1]
    redis.call("srem", started, message_id)
    if redis.call("srem", acks .. queue, message_id) > 0 then
        redis.call("hdel", ns .. ":" .. queue .. ".msgs", message_id)
    end
end
local r = 5 + 2 * n
local c0 = r + 6
-- #include ledger_prelude
-- The acks are written: whatever goes wrong in the ledger's part must not fail them. The caller
-- then writes every completion of this call in full, on the ledger's own path.
local ok = pcall(function()
-- #include ledger_completions
-- #include ledger_epilogue
end)
if not ok then
    missing = {}
    for i = c0, #ARGV, 8 do
        missing[#missing + 1] = ARGV[i]
    end
end
return missing
