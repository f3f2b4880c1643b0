-- The shared start of the ledger's write scripts (ledger_apply, and ack_many, which writes the jobs'
-- completions with their acks). It expects ``ns`` (namespace) and ``r`` (index of the six retention
-- values in ARGV) to be set; ledger_completions also ``c0``, the index of the first completion, 8
-- values each (see eventbus.ledger.Completion.flat): job id, sequence, finished ms, started ms (""
-- once its active write went out), attempts, requeues, redis message id, worker. The state sets,
-- counters, the queues set and keep-N trimming are gathered per call, so a write costs two commands
-- of its own (HMGET, HSET): every command a script calls adds Redis time, which the workers' fetches
-- wait behind.
local code = {waiting = "w", delayed = "d", active = "a", retrying = "r", completed = "c", dead = "x", failed = "f", cancelled = "k"}  -- history entries (see eventbus.ledger.HISTORY_CODES)
local keep = {completed = tonumber(ARGV[r]), failed = tonumber(ARGV[r + 1])}
local dead_ttl = tonumber(ARGV[r + 4])  -- ARGV[r + 2] and [r + 3], the ages, are Upkeep's to enforce
local terminal = {completed = true, failed = true, dead = true, cancelled = true}
local event_ttl = tonumber(ARGV[r + 5])
local applied, missing = 0, {}
local processed, stats, queues, trim = {}, {}, {}, {}

local function history(prev, entry)
    if not prev then
        return entry
    end
    local hist = prev .. "," .. entry
    if #hist > 1500 then
        local cut = string.find(hist, ",", #hist - 1500, true)
        if cut then hist = string.sub(hist, cut + 1) end
    end
    return hist
end

-- The state sets change once per call, not once per record: each gets one ZREM and one ZADD with
-- every id that left or entered it (ZREMs first, so a record moved twice in a call ends up in the
-- set it entered last).
local leaving, entering = {}, {}

local function pending(sets, zkey)
    local ids = sets[zkey]
    if not ids then
        ids = {}
        sets[zkey] = ids
    end
    return ids
end

-- Keys and counter names are built once per call (each string a script makes is hashed by Lua).
local set_keys = {}

local function set_key(q, s)
    local by_state = pending(set_keys, q)
    local zkey = by_state[s]
    if not zkey then
        zkey = ns .. ":jobs:" .. q .. ":" .. s
        by_state[s] = zkey
    end
    return zkey
end

local function count(counters, a, b)
    local by = pending(counters, a)
    by[b] = (by[b] or 0) + 1
end

-- The record at key (as it was: cur = seq, state, queue) now is in state s of queue q since t.
-- Completed and failed records need no TTL: keep-N trims them here, and Upkeep trims them by age.
local function moved(key, id, cur, q, s, t, kind, topic)
    if cur[2] and cur[3] then
        local old = set_key(cur[3], cur[2])
        pending(leaving, old)[id] = true
        if entering[old] then
            entering[old][id] = nil
        end
    end
    local zkey = set_key(q, s)
    pending(entering, zkey)[id] = t
    if cur[1] == false then
        queues[q] = true
        if kind == "fanout" then
            count(stats, topic, "published")
        end
    end
    if (s == "completed" or s == "dead") and cur[2] ~= s then
        count(processed, q, math.floor(tonumber(t) / 5000))
        if kind == "delivery" then
            count(stats, topic, s == "completed" and "deliveries" or "failed")
        end
    end
    if s == "dead" then
        redis.call("pexpire", key, dead_ttl)
    elseif cur[2] and terminal[cur[2]] and cur[2] ~= s then
        redis.call("persist", key)  -- its TTL as a dead letter's record ends with that state
    end
    if keep[s] then
        trim[zkey] = keep[s]
    end
end

-- redis.call(command, [key,] ...items), in calls of at most 4,000 items (Lua's unpack limit is 8,000).
local function call_with(command, key, items)
    for i = 1, #items, 4000 do
        local j = math.min(i + 3999, #items)
        if key then
            redis.call(command, key, unpack(items, i, j))
        else
            redis.call(command, unpack(items, i, j))
        end
    end
end
