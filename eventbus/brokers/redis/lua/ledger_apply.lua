-- Apply ledger writes in order (see RedisLedger.apply). ARGV: namespace, writes (JSON), the six
-- retention values. Returns the number applied, then the ids of compact writes that found no record.
local ns = ARGV[1]
local ops = cjson.decode(ARGV[2])
local r = 3
-- #include ledger_prelude

-- hist with entry (state@ms) put before the first later entry: a late write keeps the time order.
local function with_entry(hist, entry, t)
    local out, placed = {}, false
    for e in string.gmatch(hist, "[^,]+") do
        if not placed and (tonumber(string.match(e, "@(%d+)$")) or 0) > t then
            out[#out + 1] = entry
            placed = true
        end
        out[#out + 1] = e
    end
    if not placed then
        out[#out + 1] = entry
    end
    return table.concat(out, ",")
end

for _, op in ipairs(ops) do
    local key = ns .. ":job:" .. op.id
    local cur = redis.call("hmget", key, "seq", "state", "queue", "history")
    if op.c and cur[1] == false then
        missing[#missing + 1] = op.id
    else
        if op.ev then
            redis.call("set", ns .. ":event:" .. op.eid, op.ev, "NX", "PX", event_ttl)
        end
        local cur_seq = tonumber(cur[1])
        local seq = tonumber(op.seq)
        local store_seq = op.seq
        if op.force and cur_seq and cur_seq > seq then
            store_seq = cur[1]
        end
        if op.existing and cur_seq == nil then
            seq = -1
            cur_seq = 0
        end
        if op.force and seq >= 0 or cur_seq == nil or seq >= cur_seq then
            applied = applied + 1
            local hist = history(cur[4], op.h or (code[op.s] .. "@" .. op.t))
            local args = {"state", op.s, "seq", store_seq, "updated_at", op.t, "history", hist}
            for k, v in pairs(op.f) do
                args[#args + 1] = k
                args[#args + 1] = v
            end
            redis.call("hset", key, unpack(args))
            moved(key, op.id, cur, op.q, op.s, op.t, op.kind, op.topic)
        elseif op.s == "active" and op.f.started_at_ms and math.floor(seq / 10) == math.floor(cur_seq / 10) then
            -- A late active write: its job's completion, sent with the ack on another connection, came
            -- first. The record keeps its later state and gains the start (once).
            local entry = code.active .. "@" .. op.t
            local hist = cur[4] or ""
            if not string.find("," .. hist .. ",", "," .. entry .. ",", 1, true) then
                redis.call("hset", key, "started_at_ms", op.f.started_at_ms, "worker", op.f.worker or "",
                    "history", with_entry(hist, entry, tonumber(op.t)))
            end
        end
    end
end
-- #include ledger_epilogue

return {applied, unpack(missing)}
