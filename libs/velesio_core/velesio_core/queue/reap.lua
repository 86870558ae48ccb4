-- Reap the workers that stopped beating, each exactly once: whichever process runs this first
-- takes a dead worker out of the beats set, and with it everything the worker held.
--
-- For each message the dead worker had fetched and not acknowledged (Dramatiq's unacked set of
-- its broker, for each queue on its card):
--   * the job's stream holds only "queued"/"started": nothing reached its client, so the message
--     goes back to the head of its queue and an idle consumer is woken (at least once until the
--     first output);
--   * the stream holds output: the job ends now with ARGV[3], an error event the API relays in
--     its client's dialect, and the message is dropped (at most once after the first output);
--   * the stream is gone (its client was answered or gave up): the message is dropped.
-- Then the worker's card and its Dramatiq heartbeat are removed.
--
-- The keys are named from the cards, not passed in: like Dramatiq's own dispatch.lua, this
-- needs a single Redis (or Sentinel), not Redis Cluster.
--
-- KEYS[1]  velesio:beats      sorted set of worker id -> last beat (ms, Redis's clock)
-- KEYS[2]  velesio:workers    hash of worker id -> card (JSON, with broker_id and queues)
-- ARGV[1]  how long a worker may be silent, ms
-- ARGV[2]  Dramatiq's namespace
-- ARGV[3]  the error event's data
-- ARGV[4]  how long an ended stream may wait for its reader, s
-- ARGV[5]  how many wake tokens may pile up
-- ARGV[6]  optional: a stopping worker's own id, reaped alone and whatever its last beat
--
-- Returns a flat list: worker id, requeued count, ended count, for each worker reaped.

local now = redis.call("time")
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local dead
if ARGV[6] then
    dead = {ARGV[6]}
else
    dead = redis.call("zrangebyscore", KEYS[1], "-inf", now_ms - tonumber(ARGV[1]))
end
local ns = ARGV[2]
local report = {}

local function has_output(stream)
    -- A run writes at most one "started" before its output; a few requeues add one each.
    local entries = redis.call("xrange", stream, "-", "+", "COUNT", 16)
    if #entries == 16 then
        return true
    end
    for _, entry in ipairs(entries) do
        local kind = entry[2][2]
        if kind ~= "queued" and kind ~= "started" then
            return true
        end
    end
    return false
end

for _, worker in ipairs(dead) do
    redis.call("zrem", KEYS[1], worker)
    local requeued, ended = 0, 0
    local raw = redis.call("hget", KEYS[2], worker)
    redis.call("hdel", KEYS[2], worker)
    local ok, card = false, nil
    if raw then
        ok, card = pcall(cjson.decode, raw)
    end
    if ok and type(card) == "table" and type(card.broker_id) == "string" then
        local broker = card.broker_id
        redis.call("zrem", ns .. ":__heartbeats__", broker)
        for _, queue in ipairs(card.queues or {}) do
            local acks = ns .. ":__acks__." .. broker .. "." .. queue
            local messages = ns .. ":" .. queue .. ".msgs"
            for _, id in ipairs(redis.call("smembers", acks)) do
                local stream = "velesio:job:" .. id .. ":events"
                if redis.call("exists", stream) == 0 then
                    redis.call("hdel", messages, id)
                elseif has_output(stream) then
                    redis.call("xadd", stream, "*", "t", "error", "d", ARGV[3])
                    redis.call("expire", stream, ARGV[4])
                    redis.call("hdel", messages, id)
                    ended = ended + 1
                else
                    redis.call("lpush", ns .. ":" .. queue, id)
                    redis.call("rpush", ns .. ":" .. queue .. ".wake", "1")
                    redis.call("ltrim", ns .. ":" .. queue .. ".wake", -tonumber(ARGV[5]), -1)
                    requeued = requeued + 1
                end
            end
            redis.call("del", acks)
        end
    end
    table.insert(report, worker)
    table.insert(report, requeued)
    table.insert(report, ended)
end
return report
