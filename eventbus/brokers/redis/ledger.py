"""The job ledger in Redis: every key it uses, the write script, and the reads the control plane needs.

Keys under the broker namespace:

- ``job:<id>`` hash: the record (see :class:`eventbus.ledger.JobRecord`)
- ``jobs:<queue>:<state>`` zset: job ids by time of entering that state (list newest first)
- ``queues`` set: every queue a job or worker used
- ``processed:<queue>:<5 s bucket>`` counters of finished jobs (expire after 70 s)
- ``topicstats`` hash: ``<topic>|published``, ``<topic>|deliveries``, ``<topic>|failed``
- ``event:<id>`` string: a published event (JSON), kept ``event_retention_s`` for replay
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import dramatiq
import redis

from eventbus import encoder
from eventbus.brokers.redis.direct import Direct
from eventbus.ledger import HISTORY_CODES, Completion, JobRecord, JobState, make_full
from eventbus.retention import Retention

# The pieces of a ledger write script, shared with the broker's ack script (which writes the jobs'
# completions with their acks, see eventbus.brokers.redis.broker). They expect ``ns`` (namespace) and ``r``
# (index of the six retention values in ARGV) to be set; LEDGER_COMPLETIONS also ``c0``, the index of
# the first completion, 8 values each (see :meth:`eventbus.ledger.Completion.flat`): job id,
# sequence, finished ms, started ms ("" once its active write went out), attempts, requeues, redis
# message id, worker. The state sets, counters, the queues set and keep-N trimming are gathered per
# call, so a write costs two commands of its own (HMGET, HSET): each command a script calls costs
# a few microseconds of Redis time, which the workers' fetches wait behind.
LEDGER_PRELUDE = (
    "local code = {"
    + ", ".join(f'{state} = "{letter}"' for state, letter in HISTORY_CODES.items())
    + "}  -- history entries (see eventbus.ledger.HISTORY_CODES)"
    + """
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
"""
)
LEDGER_COMPLETIONS = """
for i = c0, #ARGV, 8 do
    local id, seq, t, started = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local key = ns .. ":job:" .. id
    local cur = redis.call("hmget", key, "seq", "state", "queue", "history", "kind", "topic")
    if cur[1] == false or cur[3] == false then
        missing[#missing + 1] = id
    elseif tonumber(seq) >= tonumber(cur[1]) then
        applied = applied + 1
        local entry = code.completed .. "@" .. t
        local args
        if started ~= "" then
            entry = code.active .. "@" .. started .. "," .. entry
            args = {"state", "completed", "seq", seq, "updated_at", t, "finished_at_ms", t,
                "history", history(cur[4], entry), "started_at_ms", started, "worker", ARGV[i + 7]}
        else
            args = {"state", "completed", "seq", seq, "updated_at", t, "finished_at_ms", t,
                "history", history(cur[4], entry)}
        end
        -- Attempts, requeues and message id change with the attempt (seq // 10), not within one.
        if math.floor(tonumber(seq) / 10) ~= math.floor(tonumber(cur[1]) / 10) then
            args[#args + 1], args[#args + 2] = "attempts", ARGV[i + 4]
            args[#args + 1], args[#args + 2] = "requeues", ARGV[i + 5]
            if ARGV[i + 6] ~= "" then
                args[#args + 1], args[#args + 2] = "redis_message_id", ARGV[i + 6]
            end
        end
        redis.call("hset", key, unpack(args))
        moved(key, id, cur, cur[3], "completed", t, cur[5], cur[6] or "")
    end
end
"""
LEDGER_EPILOGUE = """
for zkey, ids in pairs(leaving) do
    local items = {}
    for id in pairs(ids) do
        items[#items + 1] = id
    end
    call_with("zrem", zkey, items)
end
for zkey, ids in pairs(entering) do
    local items = {}
    for id, t in pairs(ids) do
        items[#items + 1] = t
        items[#items + 1] = id
    end
    call_with("zadd", zkey, items)
end
for q, buckets in pairs(processed) do
    for bucket, n in pairs(buckets) do
        local counter = ns .. ":processed:" .. q .. ":" .. bucket
        redis.call("incrby", counter, n)
        redis.call("pexpire", counter, 70000)
    end
end
for topic, counts in pairs(stats) do
    for name, n in pairs(counts) do
        redis.call("hincrby", ns .. ":topicstats", topic .. "|" .. name, n)
    end
end
for queue in pairs(queues) do
    redis.call("sadd", ns .. ":queues", queue)
end
for zkey, n_keep in pairs(trim) do
    local n = redis.call("zcard", zkey)
    if n > n_keep then
        local old = redis.call("zpopmin", zkey, n - n_keep)
        local keys = {}
        for i = 1, #old, 2 do
            keys[#keys + 1] = ns .. ":job:" .. old[i]
        end
        call_with("del", nil, keys)
    end
end
"""
_APPLY = (
    """
local ns = ARGV[1]
local ops = cjson.decode(ARGV[2])
local r = 3
"""
    + LEDGER_PRELUDE
    + """
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
"""
    + LEDGER_EPILOGUE
    + """
return {applied, unpack(missing)}
"""
)

# Remove records of one (queue, state): older than a cutoff, or beyond the newest ``keep``.
_TRIM = """
local ns, zkey = ARGV[1], ARGV[2]
local ids
if ARGV[3] ~= "" then
    ids = redis.call("zrangebyscore", zkey, "-inf", ARGV[3], "LIMIT", 0, 1000)
else
    local n = redis.call("zcard", zkey) - tonumber(ARGV[4])
    if n <= 0 then return 0 end
    ids = redis.call("zrange", zkey, 0, math.min(n, 1000) - 1)
end
for _, id in ipairs(ids) do
    redis.call("zrem", zkey, id)
    redis.call("del", ns .. ":job:" .. id)
end
return #ids
"""

_CHUNK = 100


class RedisLedger:
    """Reads and writes the ledger of one namespace."""

    def __init__(
        self,
        client: redis.Redis,  # type: ignore[type-arg]
        namespace: str,
        retention: Retention,
        direct: Direct | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.retention = retention
        self._apply = client.register_script(_APPLY)
        self.direct = direct or Direct(client)
        self._trim = client.register_script(_TRIM)

    def key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    def job_key(self, job_id: str) -> str:
        return self.key("job", job_id)

    def state_key(self, queue: str, state: JobState | str) -> str:
        return self.key("jobs", queue, str(state))

    def apply(self, ops: Sequence[dict[str, Any]], done: Sequence[Completion] = ()) -> int:
        """Apply writes in order, then completions, in one round trip per ``_CHUNK``; returns how many
        were newer than the stored records. (A worker's completions usually go with its acks instead.)

        ARGV: namespace, writes (JSON), the six retention values. The script returns the number
        applied, then the ids of compact writes that found no record; those are sent again in full.
        """
        ops = [*ops, *(c.write() for c in done)]
        if not ops:
            return 0
        args = self.retention.args()
        applied, missing = 0, set[str]()
        for i in range(0, len(ops), _CHUNK):
            chunk = encoder.dumps_for_lua(ops[i : i + _CHUNK], omit=dramatiq.Message)
            reply = self.direct.evalsha(self._apply, self.namespace, chunk, *args)
            applied += int(reply[0])
            missing.update(job_id.decode() for job_id in reply[1:])
        if missing:  # compact writes of jobs with no record yet (their enqueue's write is still on its way)
            applied += self.apply([make_full(op) for op in ops if op["id"] in missing])
        return applied

    def get(self, job_ids: Iterable[str]) -> list[JobRecord | None]:
        """The records of ``job_ids`` (None where there is none), in one round trip."""
        ids = list(job_ids)
        if not ids:
            return []
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.job_key(job_id))
            raws = pipe.execute()
        return [JobRecord.from_hash(raw) if raw and b"id" in raw else None for raw in raws]

    def queues(self) -> set[str]:
        """Every queue a job or a worker used under this namespace."""
        return {q.decode() for q in self.client.smembers(self.key("queues"))}

    def register_queues(self, queues: Iterable[str]) -> None:
        names = list(queues)
        if names:
            self.client.sadd(self.key("queues"), *names)

    def trim(self, queue: str, state: JobState, *, older_than_ms: int | None = None, keep: int | None = None) -> int:
        """Remove records of ``queue`` in ``state`` older than the cutoff (epoch ms) or beyond the newest ``keep``."""
        removed = 0
        while True:
            n = int(
                self._trim(
                    args=[
                        self.namespace,
                        self.state_key(queue, state),
                        "" if older_than_ms is None else older_than_ms,
                        keep or 0,
                    ]
                )
            )
            removed += n
            if n < 1000:
                return removed

    def event(self, event_id: str) -> dict[str, Any] | None:
        """A stored published event, or None once past its retention."""
        raw = self.client.get(self.key("event", event_id))
        return json.loads(raw) if raw else None
