-- Whether a job its client still waits on exists anywhere in Redis, read when the job's stream
-- has been silent for one XREAD block. A Sentinel failover or a restart without persistence can
-- lose a job's message, its stream, or both (writes the old master took but never replicated);
-- the client's handle then queues the job again, or ends it, instead of waiting out its deadline.
--
-- KEYS[1]  $namespace:$queue.msgs   Dramatiq's hash of message id -> message
-- KEYS[2]  the job's event stream
-- ARGV[1]  the job's message id
-- ARGV[2]  the id of the last stream entry the reader has read
--
-- Returns 0 while the job lives, 1 when its stream is gone, 2 when its stream is there but its
-- message is in no queue and with no worker, while nothing was written after what the reader
-- read. A worker writes a job's final event and acknowledges its message in one step
-- (finish.lua), so a message that is gone without a new event was lost, not finished.

if redis.call("exists", KEYS[2]) == 0 then
    return 1
end
if redis.call("hexists", KEYS[1], ARGV[1]) == 1 then
    return 0
end
local last = redis.call("xrevrange", KEYS[2], "+", "-", "COUNT", 1)[1]
if last and last[1] ~= ARGV[2] then
    -- Events came since the empty read: the next XREAD returns them.
    return 0
end
return 2
