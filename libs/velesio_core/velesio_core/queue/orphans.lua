-- Hand back messages a live worker's broker holds in Redis but none of its threads runs: a fetch
-- Redis ran whose reply the worker never read (its link dropped in between). Each id still in the
-- unacked set goes back by hand_back's rule; an id already gone (acknowledged, or reaped) is left.
--
-- KEYS[1]  the worker's unacked set for the queue ($namespace:__acks__.$broker.$queue)
-- ARGV[1]  Dramatiq's namespace
-- ARGV[2]  the queue
-- ARGV[3]  the error event's data, for a job that had sent output
-- ARGV[4]  how long an ended stream may wait for its reader, s
-- ARGV[5]  how many wake tokens may pile up
-- ARGV[6..] the message ids
--
-- Returns {requeued, ended}.

-- #include hand_back

local counts = {0, 0}
for index = 6, #ARGV do
    local id = ARGV[index]
    if redis.call("srem", KEYS[1], id) == 1 then
        tally(counts, hand_back(id, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]))
    end
end
return counts
