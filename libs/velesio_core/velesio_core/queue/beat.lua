-- A worker says it is alive, on Redis's clock (so that the hosts' clocks never matter).
--
-- KEYS[1]  velesio:beats   sorted set of worker id -> last beat, ms
-- ARGV[1]  worker id
--
-- Returns 1 when the worker was not in the set: new, or reaped while it was silent.
local now = redis.call("time")
return redis.call("zadd", KEYS[1], tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000), ARGV[1])
