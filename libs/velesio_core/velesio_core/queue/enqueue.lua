-- Enqueue one Dramatiq message, exactly as Dramatiq's own dispatch.lua "enqueue" command lays it
-- out (a list of message ids plus a hash of id -> message), and wake one idle consumer.
-- For a velesio job, also open the job's event stream with a TTL, so that a worker only ever
-- appends to it (one XADD per event) and an abandoned stream still expires.
--
-- KEYS[1]  $namespace:$queue         list of message ids
-- KEYS[2]  $namespace:$queue.msgs    hash of message id -> encoded message
-- KEYS[3]  $namespace:$queue.wake    list an idle consumer blocks on (BLPOP)
-- KEYS[4]  (optional) the job's event stream
-- ARGV[1]  message id (Dramatiq's redis_message_id)
-- ARGV[2]  encoded message
-- ARGV[3]  queue-depth cap: 0 accepts always, N refuses when N messages already wait
-- ARGV[4]  how many wake tokens may pile up when no consumer is idle
-- ARGV[5]  (with KEYS[4]) the event stream's TTL in seconds
--
-- Returns 0 when the queue was full; else 1, or with KEYS[4] the id of the stream's first
-- ("queued") entry, after which the job's events follow.

local cap = tonumber(ARGV[3])
if cap > 0 and redis.call("llen", KEYS[1]) >= cap then
    return 0
end

local queued = 1
if KEYS[4] then
    queued = redis.call("xadd", KEYS[4], "*", "t", "queued", "d", "{}")
    redis.call("expire", KEYS[4], ARGV[5])
end

redis.call("hset", KEYS[2], ARGV[1], ARGV[2])
redis.call("rpush", KEYS[1], ARGV[1])
redis.call("rpush", KEYS[3], "1")
redis.call("ltrim", KEYS[3], -tonumber(ARGV[4]), -1)
return queued
