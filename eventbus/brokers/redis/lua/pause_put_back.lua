-- Un-ack the message (its data stays) and put it back at the head of its list, right after the one this process put
-- back before it (so prefetched messages keep their order).
-- KEYS: this worker's acks set, the message's list; ARGV: redis message id, the id put back before it (or "")
redis.call("srem", KEYS[1], ARGV[1])
if ARGV[2] ~= "" and redis.call("linsert", KEYS[2], "AFTER", ARGV[2], ARGV[1]) > 0 then
    return 1
end
redis.call("lpush", KEYS[2], ARGV[1])
return 1
