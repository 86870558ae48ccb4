-- Reap the workers that stopped beating, each exactly once: whichever process runs this first
-- takes a dead worker out of the beats set, and with it everything the worker held.
--
-- Each message the dead worker had fetched and not acknowledged (Dramatiq's unacked set of its
-- broker, for each queue on its card) goes back by hand_back's rule: to the head of its queue if
-- nothing reached its client (at least once until the first output), else its job ends with
-- ARGV[3], an error event the API relays in its client's dialect (at most once after it). Then
-- the worker's card and its Dramatiq heartbeat are removed.
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

-- #include hand_back

for _, worker in ipairs(dead) do
    redis.call("zrem", KEYS[1], worker)
    local counts = {0, 0}
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
            for _, id in ipairs(redis.call("smembers", acks)) do
                tally(counts, hand_back(id, ns, queue, ARGV[3], ARGV[4], ARGV[5]))
            end
            redis.call("del", acks)
        end
    end
    table.insert(report, worker)
    table.insert(report, counts[1])
    table.insert(report, counts[2])
end
return report
