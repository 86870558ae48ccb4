-- Release a job's lease and charge what it really used, for a key and its parent.
--
-- KEYS, three per key: leases, token buckets, daily usage (see admit.lua).
-- ARGV: now in ms ('' reads Redis's clock), lease id, tokens used, images reserved but not made,
-- window ms.
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local lease = ARGV[2]
local tokens = tonumber(ARGV[3])
local refund = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local day = math.floor(now / 86400000)
for i = 1, #KEYS / 3 do
  local base = (i - 1) * 3
  redis.call('ZREM', KEYS[base + 1], lease)
  if tokens > 0 then
    redis.call('HINCRBY', KEYS[base + 2], math.floor(now / 1000), tokens)
    redis.call('PEXPIRE', KEYS[base + 2], window + 2000)
  end
  if tokens > 0 or refund > 0 then
    local same_day = tonumber(redis.call('HGET', KEYS[base + 3], 'day')) == day
    if not same_day then
      redis.call('HSET', KEYS[base + 3], 'day', day, 'tokens', 0, 'images', 0)
    end
    redis.call('HINCRBY', KEYS[base + 3], 'tokens', tokens)
    -- Images are reserved at admission on the day they were asked for: a refund after midnight
    -- would give back today's.
    if refund > 0 and same_day then
      redis.call('HINCRBY', KEYS[base + 3], 'images', -refund)
    end
    redis.call('EXPIRE', KEYS[base + 3], 172800)
  end
end
return 1
