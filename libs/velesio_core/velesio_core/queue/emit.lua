-- Append an event to a job's stream, but only while the worker still holds the job's message.
-- A worker that was reaped (reap.lua) no longer does: its job was handed to another worker or
-- ended with an error, and nothing it writes may reach the client any more.
--
-- KEYS[1]  the job's event stream
-- KEYS[2]  $namespace:__acks__.$broker_id.$queue   the worker's unacked messages
-- ARGV[1]  event type
-- ARGV[2]  event data
-- ARGV[3]  message id
--
-- Returns 1 when written, 0 when the worker has lost the job.
if redis.call("sismember", KEYS[2], ARGV[3]) == 0 then
    return 0
end
redis.call("xadd", KEYS[1], "*", "t", ARGV[1], "d", ARGV[2])
return 1
