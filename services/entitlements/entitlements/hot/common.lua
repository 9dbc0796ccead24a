-- Shared by the hot-path scripts (after decimal.lua).

-- Whether transaction `tx` is seen by `snap` (pg_snapshot text "xmin:xmax:xip,..."): its events were
-- counted by the QueryUsage the state was built from. Transaction ids stay far below 2^53, where Lua's
-- doubles are exact.
local function tx_seen(tx, snap)
  if not snap or snap == '' then
    return false
  end
  local xmin, xmax, xip = string.match(snap, '^(%d+):(%d+):(.*)$')
  xmin, xmax = tonumber(xmin), tonumber(xmax)
  if tx < xmin then
    return true
  end
  if tx >= xmax then
    return false
  end
  for x in string.gmatch(xip, '%d+') do
    if tonumber(x) == tx then
      return false
    end
  end
  return true
end
