-- Push the expiry of running jobs' leases forward, on Redis's clock. Only leases still present are
-- renewed (XX): a lease already released or reclaimed stays gone.
-- KEYS: lease sorted sets; ARGV: ttl ms, then one lease id per key.
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', expiry, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[1]) * 2)
end
return #KEYS
