-- Cancel a job: take its message off the queue if no worker has fetched it yet, and tell every
-- worker (one of them may be running it, or hold it prefetched) on the cancel channel.
--
-- KEYS[1]  $namespace:$queue         list of message ids
-- KEYS[2]  $namespace:$queue.msgs    hash of message id -> encoded message
-- ARGV[1]  message id (Dramatiq's redis_message_id)
-- ARGV[2]  cancel channel
-- ARGV[3]  job id
--
-- Returns 1 when the message was still queued (so no worker will ever see it), else 0.

local removed = redis.call("lrem", KEYS[1], 0, ARGV[1])
if removed > 0 then
    redis.call("hdel", KEYS[2], ARGV[1])
end
redis.call("publish", ARGV[2], ARGV[3])
return removed
