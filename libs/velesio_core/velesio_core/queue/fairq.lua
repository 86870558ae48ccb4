-- The fair queue: one Dramatiq queue's waiting jobs, served fairly between API keys, weighted by
-- each key's weight: between top-level keys first, then between the keys one of them minted.
-- docs/decisions.md ("Fair queue") has the design; fair.py calls each command.
--
-- Layout, for the queue Q (P = $namespace:Q, KEYS[1] of every command):
--   P              Dramatiq's own list, now the *ready* list: jobs that went back on the queue
--                  (a consumer's hand-back, the reaper, Dramatiq's maintenance) wait here and
--                  are fetched before any lane, their turn having been taken fairly already.
--   P.msgs         Dramatiq's hash of message id -> message, for every job, lane or not.
--   P.lane.<lane>  list: one key's new jobs, oldest first (<lane>: the key's id, or api_tokens).
--   P.subs.<top>   sorted set: the non-empty lanes of one top-level key (its own and its minted
--                  keys') -> the virtual start time of each lane's next job.
--   P.tops         sorted set: the top-level keys with jobs in a lane -> their next start time.
--   P.where        hash: message id -> its lane, for each job waiting in a lane.
--   P.fair         hash, the scheduler's state (deleted whenever no lane holds a job):
--                    v         virtual time between top-level keys: the start of the last job served
--                    n         jobs waiting in lanes
--                    tv:<top>  virtual time between the lanes of a top-level key; tn:<top> its
--                              waiting jobs; tw:<top> its weight; tf:<top> its next start, kept
--                              while it has nothing waiting
--                    lw:<lane> a lane's weight; lt:<lane> its top-level key; lf:<lane> its next
--                              start, kept while it is empty
--
-- Start-time fair queuing, twice: a job served advances its lane by STRIDE / (lane weight) and
-- its top-level key by STRIDE / (top weight); the lane (the key) with the lowest start is served
-- next, ties going to the lower name, as a sorted set orders them. A lane that fills again starts
-- at max(its kept start, the virtual time), so an idle key banks no credit. Start times are whole
-- numbers, so that every script computes the same order exactly.
--
-- Lanes are named from their key ids, not passed in: like Dramatiq's dispatch.lua and reap.lua,
-- this needs a single Redis (or Sentinel), not Redis Cluster.

local STRIDE = 720720 -- divisible by every weight from 1 to 16
local P = KEYS[1]
local msgs = P .. ".msgs"
local tops = P .. ".tops"
local where = P .. ".where"
local fair = P .. ".fair"
local command = ARGV[1]

local function lane_list(lane)
    return P .. ".lane." .. lane
end

local function subs_of(top)
    return P .. ".subs." .. top
end

local function state(field)
    return tonumber(redis.call("hget", fair, field) or 0)
end

-- The whole state at once, for the commands that read it for every key: one call, not one a field.
local function all_state()
    local flat = redis.call("hgetall", fair)
    local fields = {}
    for i = 1, #flat, 2 do
        fields[flat[i]] = tonumber(flat[i + 1])
    end
    return function(field)
        return fields[field] or 0
    end
end

local function whole(x)
    return string.format("%.0f", x)
end

local function stride(weight)
    return math.floor(STRIDE / math.max(weight, 1))
end

-- A lane just went from empty to holding a job: schedule it, and its top-level key with it.
local function schedule(lane, top)
    local subs = subs_of(top)
    if redis.call("zcard", subs) == 0 then
        local start = math.max(state("v"), state("tf:" .. top))
        redis.call("hdel", fair, "tf:" .. top)
        redis.call("zadd", tops, whole(start), top)
    end
    local start = math.max(state("tv:" .. top), state("lf:" .. lane))
    redis.call("hdel", fair, "lf:" .. lane)
    redis.call("zadd", subs, whole(start), lane)
end

-- A lane that holds nothing any more leaves the schedule, keeping its next start. True when its
-- top-level key still has lanes scheduled.
local function unschedule(lane, top, lane_next, top_next)
    local subs = subs_of(top)
    redis.call("zrem", subs, lane)
    redis.call("hset", fair, "lf:" .. lane, whole(lane_next))
    if redis.call("zcard", subs) == 0 then
        redis.call("zrem", tops, top)
        redis.call("hset", fair, "tf:" .. top, whole(top_next))
        if redis.call("zcard", tops) == 0 then
            -- Nobody waits: nobody is owed anything, and the state starts afresh.
            redis.call("del", fair)
        end
        return false
    end
    return true
end

local function wake(max_tokens)
    if redis.call("rpush", P .. ".wake", "1") > tonumber(max_tokens) then
        redis.call("ltrim", P .. ".wake", -tonumber(max_tokens), -1)
    end
end

-- The next job of the lanes, taken off its lane; nil when the lanes are empty.
local function pop_lane()
    while true do
        local first = redis.call("zrange", tops, 0, 0, "WITHSCORES")
        if #first == 0 then
            return nil
        end
        local top, top_start = first[1], tonumber(first[2])
        local subs = subs_of(top)
        local lane_first = redis.call("zrange", subs, 0, 0, "WITHSCORES")
        local id = false
        local lane, lane_start = top, top_start
        if #lane_first > 0 then
            lane, lane_start = lane_first[1], tonumber(lane_first[2])
            id = redis.call("lpop", lane_list(lane))
        end
        local top_next = top_start
        if id then
            redis.call("hset", fair, "v", whole(top_start), "tv:" .. top, whole(lane_start))
            redis.call("hincrby", fair, "n", -1)
            redis.call("hincrby", fair, "tn:" .. top, -1)
            redis.call("hdel", where, id)
            top_next = top_start + stride(state("tw:" .. top))
        end
        local lane_next = lane_start + (id and stride(state("lw:" .. lane)) or 0)
        if #lane_first > 0 and redis.call("llen", lane_list(lane)) > 0 then
            redis.call("zadd", subs, whole(lane_next), lane)
            redis.call("zadd", tops, whole(top_next), top)
        else
            -- The lane emptied (or, with no id, had been emptied behind the schedule's back).
            if unschedule(lane, top, lane_next, top_next) then
                redis.call("zadd", tops, whole(top_next), top)
            end
        end
        if id and redis.call("hexists", msgs, id) == 1 then
            return id
        end
    end
end

-- Bytewise order, as a sorted set orders equal scores (Lua's < follows the locale).
local function before(a, b)
    for i = 1, math.min(#a, #b) do
        local x, y = string.byte(a, i), string.byte(b, i)
        if x ~= y then
            return x < y
        end
    end
    return #a < #b
end

-- Each item's rank by name, for ties: integers compare faster than names, and ties are common
-- (keys of equal weight move in step).
local function rank_by_name(items)
    local names = {}
    for _, item in ipairs(items) do
        table.insert(names, item.name)
    end
    table.sort(names, before)
    local ranks = {}
    for rank, name in ipairs(names) do
        ranks[name] = rank
    end
    for _, item in ipairs(items) do
        item.rank = ranks[item.name]
    end
end

local function earliest(items)
    local best = 1
    for i = 2, #items do
        local item, top = items[i], items[best]
        if item.start < top.start or (item.start == top.start and item.rank < top.rank) then
            best = i
        end
    end
    return best
end

-- The lanes as fetch would serve them from now on, if no job arrived.
local function load_schedule()
    local state = all_state()
    local schedule_now = {}
    local raw = redis.call("zrange", tops, 0, -1, "WITHSCORES")
    for i = 1, #raw, 2 do
        local top = raw[i]
        local entry = {name = top, start = tonumber(raw[i + 1]), stride = stride(state("tw:" .. top)), lanes = {}}
        local subs = redis.call("zrange", subs_of(top), 0, -1, "WITHSCORES")
        for j = 1, #subs, 2 do
            local lane = subs[j]
            local left = redis.call("llen", lane_list(lane))
            if left > 0 then
                table.insert(entry.lanes, {
                    name = lane, start = tonumber(subs[j + 1]), stride = stride(state("lw:" .. lane)),
                    left = left, served = 0,
                })
            end
        end
        if #entry.lanes > 0 then
            rank_by_name(entry.lanes)
            table.insert(schedule_now, entry)
        end
    end
    rank_by_name(schedule_now)
    return schedule_now
end

-- One job served in the simulation: its lane's name and its index in that lane.
local function serve(schedule_now)
    local t = earliest(schedule_now)
    local top = schedule_now[t]
    local l = earliest(top.lanes)
    local lane = top.lanes[l]
    local index = lane.served
    lane.served, lane.left, lane.start = lane.served + 1, lane.left - 1, lane.start + lane.stride
    if lane.left == 0 then
        table.remove(top.lanes, l)
    end
    top.start = top.start + top.stride
    if #top.lanes == 0 then
        table.remove(schedule_now, t)
    end
    return lane.name, index
end

-- How many of a lane's (or a key's) next ``count`` jobs, the first starting at ``start`` and
-- each ``step`` after the last, are served before a job starting at ``target``: those starting
-- earlier, and those starting with it when their name comes first.
local function served_before(start, step, count, target, first_on_ties)
    local gap = target - start
    local earlier
    if first_on_ties then
        earlier = gap >= 0 and math.floor(gap / step) + 1 or 0
    else
        earlier = gap > 0 and math.floor((gap - 1) / step) + 1 or 0
    end
    return math.min(earlier, count)
end

-- A job's place in the order (0: fetched next), or -1 when it is not waiting. Counted per lane
-- and per key rather than simulated: a streamed job's enqueue asks for it.
local function position_of(id)
    local ready = redis.call("lpos", P, id)
    if ready then
        return ready
    end
    local lane = redis.call("hget", where, id)
    if not lane then
        return -1
    end
    local index = redis.call("lpos", lane_list(lane), id)
    local top = redis.call("hget", fair, "lt:" .. lane)
    local lane_start = tonumber(redis.call("zscore", subs_of(top), lane))
    local top_start = tonumber(redis.call("zscore", tops, top))
    if not index or not lane_start or not top_start then
        return -1
    end
    local state = all_state()
    -- Its turn among its top-level key's jobs...
    local target = lane_start + index * stride(state("lw:" .. lane))
    local turn = index
    local subs = redis.call("zrange", subs_of(top), 0, -1, "WITHSCORES")
    for j = 1, #subs, 2 do
        local other = subs[j]
        if other ~= lane then
            turn = turn + served_before(tonumber(subs[j + 1]), stride(state("lw:" .. other)),
                redis.call("llen", lane_list(other)), target, before(other, lane))
        end
    end
    -- ...then that turn among every key's.
    target = top_start + turn * stride(state("tw:" .. top))
    local position = redis.call("llen", P) + turn
    local raw = redis.call("zrange", tops, 0, -1, "WITHSCORES")
    for i = 1, #raw, 2 do
        local other = raw[i]
        if other ~= top then
            position = position + served_before(tonumber(raw[i + 1]), stride(state("tw:" .. other)),
                state("tn:" .. other), target, before(other, top))
        end
    end
    return position
end

if command == "enqueue" then
    -- KEYS[2] (optional) the job's event stream
    -- ARGV: message id, message, queue cap (0: none), lane cap (0: none), wake tokens kept,
    --       lane, lane weight, top-level key, its weight, the stream's TTL s, "1" for the position,
    --       (optional) the id of the stream's first entry ("*", Redis's choice, when absent): a
    --       fixed one lets the caller send its first XREAD with this call, in the same write.
    -- Returns {1, the stream's first entry id (or 1), position (or -1)}; {0} when the queue is
    -- full, {-1} when the lane is.
    local id, message = ARGV[2], ARGV[3]
    local cap, lane_cap = tonumber(ARGV[4]), tonumber(ARGV[5])
    local lane, lane_weight, top, top_weight = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
    local lane_key = lane_list(lane)
    if cap > 0 and redis.call("llen", P) + state("n") >= cap then
        return {0}
    end
    if lane_cap > 0 and redis.call("llen", lane_key) >= lane_cap then
        return {-1}
    end
    local queued = 1
    if KEYS[2] then
        queued = redis.call("xadd", KEYS[2], ARGV[13] or "*", "t", "queued", "d", "{}")
        redis.call("expire", KEYS[2], ARGV[11])
    end
    redis.call("hset", msgs, id, message)
    redis.call("hset", where, id, lane)
    redis.call("hset", fair, "lw:" .. lane, lane_weight, "lt:" .. lane, top, "tw:" .. top, top_weight)
    redis.call("hincrby", fair, "n", 1)
    redis.call("hincrby", fair, "tn:" .. top, 1)
    if redis.call("rpush", lane_key, id) == 1 then
        schedule(lane, top)
    end
    wake(ARGV[6])
    local position = -1
    if ARGV[12] == "1" then
        position = position_of(id)
    end
    return {1, queued, position}

elseif command == "fetch" then
    -- Dramatiq's dispatch.lua "fetch", lanes after its list: ids move into the consumer's
    -- unacked set and their messages are returned, so acks, nacks and requeues stay Dramatiq's.
    -- KEYS[2] $namespace:__acks__.$broker_id.$queue   KEYS[3] $namespace:__heartbeats__
    -- ARGV: how many, broker id, now (ms)
    local room = tonumber(ARGV[2])
    redis.call("zadd", KEYS[3], ARGV[4], ARGV[3])
    local ids = {}
    while #ids < room do
        local id = redis.call("lpop", P)
        if not id then
            break
        end
        table.insert(ids, id)
    end
    while #ids < room do
        local id = pop_lane()
        if not id then
            break
        end
        table.insert(ids, id)
    end
    if #ids == 0 then
        return {}
    end
    redis.call("sadd", KEYS[2], unpack(ids))
    return redis.call("hmget", msgs, unpack(ids))

elseif command == "cancel" then
    -- Take a job off the queue if no worker fetched it yet, and tell every worker.
    -- ARGV: message id, cancel channel, job id. Returns 1 when it was still waiting, else 0.
    local id = ARGV[2]
    local removed = redis.call("lrem", P, 0, id)
    local lane = redis.call("hget", where, id)
    if removed == 0 and lane then
        redis.call("hdel", where, id)
        removed = redis.call("lrem", lane_list(lane), 0, id)
        if removed > 0 then
            local top = redis.call("hget", fair, "lt:" .. lane)
            redis.call("hincrby", fair, "n", -1)
            redis.call("hincrby", fair, "tn:" .. top, -1)
            if redis.call("llen", lane_list(lane)) == 0 then
                -- Not served: the lane and its key keep the start they had.
                local lane_start = tonumber(redis.call("zscore", subs_of(top), lane) or 0)
                local top_start = tonumber(redis.call("zscore", tops, top) or 0)
                unschedule(lane, top, lane_start, top_start)
            end
        end
    end
    if removed > 0 then
        redis.call("hdel", msgs, id)
    end
    redis.call("publish", ARGV[3], ARGV[4])
    return removed

elseif command == "order" then
    -- The waiting jobs' ids in the order they would be fetched, at most ARGV[2] (-1: all).
    local limit = tonumber(ARGV[2])
    if limit == 0 then
        return {}
    end
    local ids = redis.call("lrange", P, 0, limit < 0 and -1 or limit - 1)
    local schedule_now = load_schedule()
    local picks, deepest = {}, {}
    while #schedule_now > 0 and (limit < 0 or #ids + #picks < limit) do
        local lane, index = serve(schedule_now)
        table.insert(picks, {lane, index})
        deepest[lane] = index
    end
    local lanes = {}
    for lane, index in pairs(deepest) do
        lanes[lane] = redis.call("lrange", lane_list(lane), 0, index)
    end
    for _, pick in ipairs(picks) do
        table.insert(ids, lanes[pick[1]][pick[2] + 1])
    end
    return ids

elseif command == "position" then
    -- ARGV[2] a message id: its place in the order (0: next), or -1 when it is not waiting.
    return position_of(ARGV[2])

elseif command == "stats" then
    -- {waiting jobs, the ids of the oldest job of the ready list and of each lane}.
    local heads = {}
    local ready_head = redis.call("lindex", P, 0)
    if ready_head then
        table.insert(heads, ready_head)
    end
    for _, top in ipairs(redis.call("zrange", tops, 0, -1)) do
        for _, lane in ipairs(redis.call("zrange", subs_of(top), 0, -1)) do
            local head = redis.call("lindex", lane_list(lane), 0)
            if head then
                table.insert(heads, head)
            end
        end
    end
    return {redis.call("llen", P) + state("n"), heads}
end
return redis.error_reply("fairq.lua: unknown command " .. tostring(command))
