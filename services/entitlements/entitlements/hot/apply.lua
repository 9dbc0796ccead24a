-- Apply one usage-stream message to the hot states of the entitlements it concerns, atomically.
--
-- KEYS[1]             the namespace's applied-messages sorted set
-- KEYS[3i-1 .. 3i+1]  entitlement i: its state hash, its pending list, its consumptions hash (generation
--                     the caller assumed)
-- ARGV[1] message id, ARGV[2] its score (ms), ARGV[3] tx, ARGV[4] n, ARGV[4+i] entitlement i as JSON:
--   {gen, inc, late, cons: [[event_key, value]...], raw: [[time, value, event_key]...]}
--   inc: usage in the assumed segment from ordinary events; late: usage earlier in the period;
--   cons: deltas that may be consumptions already applied by CheckAndConsume; raw: every delta, kept
--   when the state is being rebuilt (or missing) and replayed by install.lua.
-- Returns {"duplicate"}, {"stale", i} (nothing written), or one entry per entitlement: the new usage,
-- "seen" (the state's snapshot counted the transaction) or "pending".

if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return {'duplicate'}
end
local tx = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local plans = {}
for i = 1, n do
  local entry = cjson.decode(ARGV[4 + i])
  local state = redis.call('HMGET', KEYS[3 * i - 1], 'gen', 'snap', 'u', 'rebuilding')
  if not state[1] or (state[4] and state[4] ~= '0') then
    plans[i] = {'pending', entry}
  elseif tonumber(state[1]) ~= tonumber(entry.gen) then
    return {'stale', i}
  else
    plans[i] = {'apply', entry, state}
  end
end
local out = {}
for i = 1, n do
  local plan, entry = plans[i][1], plans[i][2]
  if plan == 'pending' then
    redis.call('RPUSH', KEYS[3 * i], cjson.encode({tx = ARGV[3], raw = entry.raw}))
    redis.call('EXPIRE', KEYS[3 * i], 86400)
    out[i] = 'pending'
  else
    local state = plans[i][3]
    if tx_seen(tx, state[2]) then
      out[i] = 'seen'
    else
      local add = dec_add(entry.inc, entry.late)
      for _, c in ipairs(entry.cons) do
        if redis.call('HEXISTS', KEYS[3 * i + 1], c[1]) == 0 then
          add = dec_add(add, c[2])
        end
      end
      local usage = dec_add(state[3], add)
      redis.call('HSET', KEYS[3 * i - 1], 'u', usage)
      if entry.late ~= '0' then
        redis.call('HSET', KEYS[3 * i - 1], 'recompute', '1')
      end
      out[i] = usage
    end
  end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return out
