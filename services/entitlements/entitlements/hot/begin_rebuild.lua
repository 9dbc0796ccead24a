-- Mark a state as being rebuilt: from now on its deltas wait in the pending list for install.lua, and
-- only the install carrying this mark's token may replace it (a later definition change takes a new
-- token, so a state computed before that change is refused).
-- KEYS[1] state hash; ARGV[1] the token. Returns the current generation ("0" when there is no state).
redis.call('HSET', KEYS[1], 'rebuilding', ARGV[1])
return redis.call('HGET', KEYS[1], 'gen') or '0'
