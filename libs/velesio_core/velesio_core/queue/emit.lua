-- Append events to a job's stream, but only while the worker still holds the job's message.
-- A worker that was reaped (reap.lua) no longer does: its job was handed to another worker or
-- ended with an error, and nothing it writes may reach the client any more. The events of one
-- call are written all or none, behind one check.
--
-- KEYS[1]  the job's event stream
-- KEYS[2]  $namespace:__acks__.$broker_id.$queue   the worker's unacked messages
-- ARGV[1]  message id
-- ARGV[2], ARGV[3], ...  each event's type, then its data
--
-- Returns 1 when written, 0 when the worker has lost the job.
if redis.call("sismember", KEYS[2], ARGV[1]) == 0 then
    return 0
end
for index = 2, #ARGV, 2 do
    redis.call("xadd", KEYS[1], "*", "t", ARGV[index], "d", ARGV[index + 1])
end
return 1
