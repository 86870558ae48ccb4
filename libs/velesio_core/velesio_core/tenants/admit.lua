-- Admit one job for a key and its parent, atomically: every limit of both is checked before
-- anything is recorded, so a refused request leaves no trace and two API processes can never
-- both take the last slot.
--
-- KEYS, five per key (the key first, then its parent): record hash, request log (sorted set of
-- request ids by time, ms), leases (sorted set of lease ids by expiry, ms), token buckets (hash of
-- unix second -> tokens), daily usage (hash: day, tokens, images).
-- ARGV: now in ms ('' reads Redis's clock, the one every API process shares), lease id ('' only
-- peeks: nothing is checked or recorded), lease ttl ms, images the job will make, window ms, and
-- '0' when the job is a further step of a request already counted (Ollama's templated generate
-- runs three jobs): rpm counts client requests, so such a job is neither refused nor counted by it.
--
-- Returns {0, reason, retry_after_ms, key index, limit} when refused (reason: revoked | quota |
-- rate), else {1, request limit, requests remaining, requests reset ms, token limit, tokens
-- remaining, tokens reset ms} for the tightest key (-1: no such limit).
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local lease = ARGV[2]
local recording = lease ~= ''
local ttl = tonumber(ARGV[3])
local images = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local new_request = ARGV[6] ~= '0'
local day = math.floor(now / 86400000)
local day_reset = (day + 1) * 86400000 - now
local count = #KEYS / 5

local function number(value)
  if value == false or value == nil or value == '' then return nil end
  return tonumber(value)
end

-- Tokens charged within the window, and the ms until enough age out to go below `limit`.
local function tokens_used(key, limit)
  local fields = redis.call('HGETALL', key)
  local horizon = math.floor((now - window) / 1000)
  local buckets, total = {}, 0
  for i = 1, #fields, 2 do
    local second = tonumber(fields[i])
    if second <= horizon then
      redis.call('HDEL', key, fields[i])
    else
      local tokens = tonumber(fields[i + 1])
      total = total + tokens
      buckets[#buckets + 1] = {second, tokens}
    end
  end
  local reset = 0
  if total >= limit then
    table.sort(buckets, function(a, b) return a[1] < b[1] end)
    local left = total
    for _, bucket in ipairs(buckets) do
      left = left - bucket[2]
      if left < limit then
        reset = (bucket[1] + 1) * 1000 + window - now
        break
      end
    end
  elseif #buckets > 0 then
    local oldest = buckets[1][1]
    for _, bucket in ipairs(buckets) do
      if bucket[1] < oldest then oldest = bucket[1] end
    end
    reset = (oldest + 1) * 1000 + window - now
  end
  return total, reset
end

local states = {}
for i = 1, count do
  local base = (i - 1) * 5
  local f = redis.call('HMGET', KEYS[base + 1], 'disabled', 'expires_at', 'rpm', 'tpm', 'parallel',
    'tokens_per_day', 'images_per_day')
  if f[1] == false then return {0, 'revoked', 0, i, 'deleted'} end
  if f[1] == '1' then return {0, 'revoked', 0, i, 'disabled'} end
  local expires_at = number(f[2])
  if expires_at and expires_at * 1000 <= now then return {0, 'revoked', 0, i, 'expired'} end
  local rpm, tpm, parallel = number(f[3]), number(f[4]), number(f[5])
  local tokens_per_day, images_per_day = number(f[6]), number(f[7])
  local state = {rpm = rpm, tpm = tpm, parallel = parallel}

  if recording and (tokens_per_day or images_per_day) then
    local d = redis.call('HMGET', KEYS[base + 5], 'day', 'tokens', 'images')
    local used_tokens, used_images = 0, 0
    if tonumber(d[1]) == day then
      used_tokens, used_images = tonumber(d[2]) or 0, tonumber(d[3]) or 0
    end
    if tokens_per_day and used_tokens >= tokens_per_day then
      return {0, 'quota', day_reset, i, 'tokens_per_day'}
    end
    if images_per_day and images > 0 and used_images + images > images_per_day then
      return {0, 'quota', day_reset, i, 'images_per_day'}
    end
  end

  if rpm then
    redis.call('ZREMRANGEBYSCORE', KEYS[base + 2], '-inf', now - window)
    state.requests = redis.call('ZCARD', KEYS[base + 2])
    if recording and new_request and state.requests >= rpm then
      local oldest = redis.call('ZRANGE', KEYS[base + 2], 0, 0, 'WITHSCORES')
      return {0, 'rate', tonumber(oldest[2]) + window - now, i, 'rpm'}
    end
  end

  if tpm then
    state.tokens, state.tokens_reset = tokens_used(KEYS[base + 4], tpm)
    if recording and state.tokens >= tpm then
      return {0, 'rate', state.tokens_reset, i, 'tpm'}
    end
  end

  if parallel and recording then
    redis.call('ZREMRANGEBYSCORE', KEYS[base + 3], '-inf', now)
    if redis.call('ZCARD', KEYS[base + 3]) >= parallel then
      -- A running job frees the slot; when is unknown, so a client polls once a second.
      return {0, 'rate', 1000, i, 'parallel'}
    end
  end
  states[i] = state
end

local answer = {1, -1, -1, -1, -1, -1, -1}
for i = 1, count do
  local base = (i - 1) * 5
  local state = states[i]
  if recording then
    if state.rpm and new_request then
      redis.call('ZADD', KEYS[base + 2], now, lease)
      redis.call('PEXPIRE', KEYS[base + 2], window + 1000)
      state.requests = state.requests + 1
    end
    if state.parallel then
      redis.call('ZADD', KEYS[base + 3], now + ttl, lease)
      redis.call('PEXPIRE', KEYS[base + 3], ttl * 2)
    end
    if images > 0 then
      if tonumber(redis.call('HGET', KEYS[base + 5], 'day')) ~= day then
        redis.call('HSET', KEYS[base + 5], 'day', day, 'tokens', 0, 'images', 0)
      end
      redis.call('HINCRBY', KEYS[base + 5], 'images', images)
      redis.call('EXPIRE', KEYS[base + 5], 172800)
    end
  end
  if state.rpm then
    local remaining = math.max(state.rpm - state.requests, 0)
    if answer[3] == -1 or remaining < answer[3] then
      local reset = 0
      if state.requests > 0 then
        local oldest = redis.call('ZRANGE', KEYS[base + 2], 0, 0, 'WITHSCORES')
        if oldest[2] then reset = tonumber(oldest[2]) + window - now end
      end
      answer[2], answer[3], answer[4] = state.rpm, remaining, reset
    end
  end
  if state.tpm then
    local remaining = math.max(state.tpm - state.tokens, 0)
    if answer[6] == -1 or remaining < answer[6] then
      answer[5], answer[6], answer[7] = state.tpm, remaining, state.tokens_reset
    end
  end
end
return answer
