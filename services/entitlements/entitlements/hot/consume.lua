-- CheckAndConsume, atomically: replay a decision already made for the idempotency key, or decide,
-- apply and record.
--
-- KEYS[1] state hash, KEYS[2] consumptions hash (of the assumed generation: event key -> "pending" until
-- ingest has stored its event, then "metered"), KEYS[3] decision key
-- ARGV[1] assumed generation, ARGV[2] amount, ARGV[3] fingerprint (what the key was used for),
-- ARGV[4] the consumption's event key, ARGV[5] decision TTL in seconds
-- Returns {"replay", decision JSON}, {"not_ready"}, {"stale", gen} or {"decided", decision JSON}
-- where the decision is {consumed, u, fingerprint}.

local prior = redis.call('GET', KEYS[3])
if prior then
  return {'replay', prior}
end
local state = redis.call('HMGET', KEYS[1], 'gen', 'b0', 'u', 'soft', 'rebuilding')
if not state[1] or (state[5] and state[5] ~= '0') then
  return {'not_ready'}
end
if state[1] ~= ARGV[1] then
  return {'stale', state[1]}
end
local after = dec_add(state[3], ARGV[2])
local consumed = state[4] == '1' or dec_cmp(after, state[2]) <= 0
local usage = state[3]
if consumed then
  usage = after
  redis.call('HSET', KEYS[1], 'u', usage)
  redis.call('HSET', KEYS[2], ARGV[4], 'pending')
end
local decision = cjson.encode({consumed = consumed, u = usage, fingerprint = ARGV[3]})
redis.call('SET', KEYS[3], decision, 'EX', tonumber(ARGV[5]))
return {'decided', decision}
