-- Undo a consumption that could not be metered (ingest refused or was unreachable).
--
-- KEYS[1] state hash, KEYS[2] consumed set, KEYS[3] decision key
-- ARGV[1] the generation it was applied in, ARGV[2] amount, ARGV[3] its event key
-- A state rebuilt since then already dropped it; only the decision is forgotten. Returns 1 when the
-- usage was taken back, 0 otherwise.

redis.call('DEL', KEYS[3])
if redis.call('HGET', KEYS[1], 'gen') == ARGV[1] and redis.call('HDEL', KEYS[2], ARGV[3]) == 1 then
  redis.call('HSET', KEYS[1], 'u', dec_sub(redis.call('HGET', KEYS[1], 'u'), ARGV[2]))
  return 1
end
return 0
