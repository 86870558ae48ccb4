-- Write a job's final event and, in the same step, acknowledge its Dramatiq message the way
-- Dramatiq's dispatch.lua "ack" does. A worker that dies after this line has left nothing to
-- redeliver; one that dies before it leaves the message unacked, for the reaper (reap.lua).
-- A worker that no longer holds the message (it was reaped) writes nothing: see emit.lua.
--
-- KEYS[1]  the job's event stream
-- KEYS[2]  (optional) $namespace:__acks__.$broker_id.$queue   the worker's unacked messages
-- KEYS[3]  (with KEYS[2]) $namespace:$queue.msgs               hash of message id -> message
-- ARGV[1]  event type
-- ARGV[2]  event data
-- ARGV[3]  how long the finished stream may wait for its reader, in seconds
-- ARGV[4]  (with KEYS[2]) message id
--
-- Returns 1 when written, 0 when the worker has lost the job.

if KEYS[2] then
    if redis.call("srem", KEYS[2], ARGV[4]) == 0 then
        return 0
    end
    redis.call("hdel", KEYS[3], ARGV[4])
end
redis.call("xadd", KEYS[1], "*", "t", ARGV[1], "d", ARGV[2])
redis.call("expire", KEYS[1], ARGV[3])
return 1
