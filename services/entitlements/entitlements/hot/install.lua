-- Install a state computed from the truth, replaying what arrived while it was computed.
--
-- KEYS[1] state hash, KEYS[2] pending list, KEYS[3] consumptions hash of the state being replaced
-- ARGV[1] the generation the caller started from ("0": none), ARGV[3] the token of its begin_rebuild,
-- ARGV[2] the new state as JSON:
--   {seg_start, seg_end, period_start, period_end, b0, ov0, pu0, u, soft, granted, snap} (times in fixed-width
--   UTC ISO form, so that string order is time order; seg_end "" when open)
-- Pending deltas whose transaction the new snapshot did not see are added: in the segment to u, earlier
-- in the period to u with a recompute mark. Returns {"installed", gen, u} or {"conflict", current gen}
-- (another install came first, or the definition changed since the rebuild began).

local current = redis.call('HGET', KEYS[1], 'gen') or '0'
if current ~= ARGV[1] or redis.call('HGET', KEYS[1], 'rebuilding') ~= ARGV[3] then
  return {'conflict', current}
end
local new = cjson.decode(ARGV[2])
local usage = new.u
local recompute = '0'
for _, item in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  local pending = cjson.decode(item)
  if not tx_seen(tonumber(pending.tx), new.snap) then
    for _, delta in ipairs(pending.raw) do
      local at = delta[1]
      if at >= new.seg_start and (new.seg_end == '' or at < new.seg_end) then
        usage = dec_add(usage, delta[2])
      elseif at >= new.period_start and at < new.seg_start then
        usage = dec_add(usage, delta[2])
        recompute = '1'
      end
    end
  end
end
redis.call('DEL', KEYS[2], KEYS[3])
local gen = tostring(tonumber(current) + 1)
redis.call('HSET', KEYS[1],
  'gen', gen, 'seg_start', new.seg_start, 'seg_end', new.seg_end,
  'period_start', new.period_start, 'period_end', new.period_end,
  'b0', new.b0, 'ov0', new.ov0, 'pu0', new.pu0, 'u', usage, 'soft', new.soft, 'granted', new.granted,
  'snap', new.snap, 'rebuilding', '0', 'recompute', recompute)
return {'installed', gen, usage}
