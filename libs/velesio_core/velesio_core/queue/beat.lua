-- A worker says it is alive, on Redis's clock (so that the hosts' clocks never matter).
--
-- KEYS[1]  velesio:beats   sorted set of worker id -> last beat, ms
-- ARGV[1]  worker id
local now = redis.call("time")
redis.call("zadd", KEYS[1], tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000), ARGV[1])
return 1
