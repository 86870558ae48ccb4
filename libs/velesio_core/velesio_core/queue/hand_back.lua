-- hand_back(id, ns, queue, error_data, ttl, wake_max): a message a worker took off a queue and will
-- never run goes back, as velesio's delivery rule says (docs/decisions.md, "Delivery"):
--   * its job's stream holds only "queued"/"started": nothing reached the client, so the message
--     goes back to the head of its queue and an idle consumer is woken: "requeued";
--   * the stream holds output: the job ends now with the error event ``error_data``, and the
--     message is dropped: "ended";
--   * the stream is gone (its client was answered or gave up): the message is dropped: "dropped".
-- The caller has taken the id out of the worker's unacked set. Included by the scripts that use it.

local function has_output(stream)
    -- A run writes at most one "started" before its output; a few requeues add one each.
    local entries = redis.call("xrange", stream, "-", "+", "COUNT", 16)
    if #entries == 16 then
        return true
    end
    for _, entry in ipairs(entries) do
        local kind = entry[2][2]
        if kind ~= "queued" and kind ~= "started" then
            return true
        end
    end
    return false
end

local function hand_back(id, ns, queue, error_data, ttl, wake_max)
    local stream = "velesio:job:" .. id .. ":events"
    local messages = ns .. ":" .. queue .. ".msgs"
    if redis.call("exists", stream) == 0 then
        redis.call("hdel", messages, id)
        return "dropped"
    end
    if has_output(stream) then
        redis.call("xadd", stream, "*", "t", "error", "d", error_data)
        redis.call("expire", stream, ttl)
        redis.call("hdel", messages, id)
        return "ended"
    end
    redis.call("lpush", ns .. ":" .. queue, id)
    redis.call("rpush", ns .. ":" .. queue .. ".wake", "1")
    redis.call("ltrim", ns .. ":" .. queue .. ".wake", -tonumber(wake_max), -1)
    return "requeued"
end

-- Counts hand_back's outcomes in ``counts``: {requeued, ended}.
local function tally(counts, outcome)
    if outcome == "requeued" then
        counts[1] = counts[1] + 1
    elseif outcome == "ended" then
        counts[2] = counts[2] + 1
    end
end
