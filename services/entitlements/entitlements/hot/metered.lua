-- A consumption's event is stored in ingest: from now on any QueryUsage snapshot counts it.
-- KEYS[1] the consumptions hash of the generation it was applied in; ARGV[1] its event key.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], 'metered')
end
return 1
