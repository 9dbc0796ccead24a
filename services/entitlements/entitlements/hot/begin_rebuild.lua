-- Mark a state as being rebuilt: from now on its deltas wait in the pending list for install.lua.
-- KEYS[1] state hash. Returns the current generation ("0" when there is no state).
local gen = redis.call('HGET', KEYS[1], 'gen')
if gen then
  redis.call('HSET', KEYS[1], 'rebuilding', '1')
  return gen
end
return '0'
