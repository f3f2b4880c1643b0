-- A batch of send-record ops (eventbus.send_record.Claim / Handover / Finish / Peek), in order, in one call.
-- KEYS[1] stats, KEYS[1 + i] the record of op i. ARGV[1] ttl_s, ARGV[2] now_ms, then three per op:
-- "claim", "handover", "finish" or "peek"; the finish's counter; the claim's or finish's fields as
-- JSON (for a handover and a fenced finish, "attempt" in them is the attempt that must hold the claim).
-- Returns one entry per op: {state, accepted, attempts} as they were before a claim or handover or
-- at a peek (state nil: missing), 0 for a finish.
local out = {}
for i = 2, #KEYS do
    local key = KEYS[i]
    local at = 3 + (i - 2) * 3
    local fields = cjson.decode(ARGV[at + 2])
    if ARGV[at] == "peek" then
        out[#out + 1] = redis.call("hmget", key, "state", "accepted", "attempts")
    elseif ARGV[at] == "handover" then
        local old = redis.call("hmget", key, "state", "accepted", "attempts")
        if old[1] == "connecting" and tonumber(old[3]) == tonumber(fields["attempt"]) then
            redis.call("hset", key, "state", "data_sent", "updated_ms", ARGV[2])
        end
        out[#out + 1] = old
    elseif ARGV[at] == "finish" then
        local attempt = tonumber(fields["attempt"] or "0")
        fields["attempt"] = nil
        if attempt == 0 or tonumber(redis.call("hget", key, "attempts")) == attempt then
            local flat = {}
            for k, v in pairs(fields) do
                flat[#flat + 1] = k
                flat[#flat + 1] = v
            end
            redis.call("hset", key, unpack(flat))
            redis.call("hincrby", KEYS[1], ARGV[at + 1], 1)
        end
        out[#out + 1] = 0
    else
        local old = redis.call("hmget", key, "state", "accepted", "attempts")
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
        if state == "pending" or state == "connecting" then
            redis.call("hset", key, "state", "connecting", "updated_ms", ARGV[2])
            redis.call("hincrby", key, "attempts", 1)
        elseif state ~= "data_sent" and state ~= "sending" then
            redis.call("hincrby", KEYS[1], "skipped", 1)
        end
        out[#out + 1] = old
    end
end
return out
