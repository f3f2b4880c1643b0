-- A batch of claims and finishes (eventbus.mail.record.Claim / Finish), in order, in one call.
-- KEYS[1] stats, KEYS[1 + i] the record of op i. ARGV[1] ttl_s, ARGV[2] now_ms, ARGV[3] the
-- uncertain text, then three per op: "claim", "finish" or "peek", the finish's counter, its fields
-- as JSON. Returns one entry per op: {state, accepted} as they were before a claim or at a peek
-- (state nil: missing), 0 for a finish.
local out = {}
for i = 2, #KEYS do
    local key = KEYS[i]
    local at = 4 + (i - 2) * 3
    local fields = cjson.decode(ARGV[at + 2])
    if ARGV[at] == "peek" then
        out[#out + 1] = redis.call("hmget", key, "state", "accepted")
    elseif ARGV[at] == "finish" then
        local flat = {}
        for k, v in pairs(fields) do
            flat[#flat + 1] = k
            flat[#flat + 1] = v
        end
        redis.call("hset", key, unpack(flat))
        redis.call("hincrby", KEYS[1], ARGV[at + 1], 1)
        out[#out + 1] = 0
    else
        local old = redis.call("hmget", key, "state", "accepted")
        local state = old[1] or "pending"
        if not old[1] then
            local flat = {"state", "pending", "attempts", "0", "accepted", "[]"}
            for k, v in pairs(fields) do
                flat[#flat + 1] = k
                flat[#flat + 1] = v
            end
            redis.call("hset", key, unpack(flat))
            redis.call("expire", key, ARGV[1])
        end
        if state == "pending" then
            redis.call("hset", key, "state", "sending", "updated_ms", ARGV[2])
            redis.call("hincrby", key, "attempts", 1)
        elseif state == "sending" then
            redis.call("hset", key, "state", "failed", "code", "", "text", ARGV[3], "updated_ms", ARGV[2])
            redis.call("hincrby", KEYS[1], "uncertain", 1)
        else
            redis.call("hincrby", KEYS[1], "skipped", 1)
        end
        out[#out + 1] = old
    end
end
return out
