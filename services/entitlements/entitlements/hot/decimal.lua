-- Exact decimal arithmetic on strings, for scripts that keep balances in Redis.
--
-- Lua numbers are doubles, which would round usage such as 0.1 or 12345678901234567.5; quantities are
-- therefore kept as plain decimal strings ("-12.5", "0", "1000") and added or compared digit by digit.
-- Results are normalised: no leading zeros, no trailing fraction zeros, "0" never negative. Tests hold
-- these functions to Python's Decimal.

local function dec_parse(s)
  local negative = false
  if string.sub(s, 1, 1) == '-' then
    negative = true
    s = string.sub(s, 2)
  end
  local whole, fraction = string.match(s, '^(%d+)%.?(%d*)$')
  if not whole then
    error('not a decimal: ' .. tostring(s))
  end
  return negative, whole, fraction
end

-- Both magnitudes as digit strings of one length, and how many of those digits are the fraction.
local function dec_align(aw, af, bw, bf)
  local w = math.max(#aw, #bw)
  local f = math.max(#af, #bf)
  local a = string.rep('0', w - #aw) .. aw .. af .. string.rep('0', f - #af)
  local b = string.rep('0', w - #bw) .. bw .. bf .. string.rep('0', f - #bf)
  return a, b, f
end

local function dec_reverse_digits(digits)
  local out = {}
  for k = #digits, 1, -1 do
    out[#out + 1] = string.char(48 + digits[k])
  end
  return table.concat(out)
end

local function dec_add_magnitudes(a, b)
  local digits, carry = {}, 0
  for k = #a, 1, -1 do
    local d = string.byte(a, k) + string.byte(b, k) - 96 + carry
    carry = 0
    if d >= 10 then
      d = d - 10
      carry = 1
    end
    digits[#digits + 1] = d
  end
  if carry == 1 then
    digits[#digits + 1] = 1
  end
  return dec_reverse_digits(digits)
end

-- a >= b
local function dec_subtract_magnitudes(a, b)
  local digits, borrow = {}, 0
  for k = #a, 1, -1 do
    local d = string.byte(a, k) - string.byte(b, k) - borrow
    borrow = 0
    if d < 0 then
      d = d + 10
      borrow = 1
    end
    digits[#digits + 1] = d
  end
  return dec_reverse_digits(digits)
end

local function dec_format(negative, digits, fraction_length)
  local whole = string.sub(digits, 1, #digits - fraction_length)
  local fraction = string.sub(digits, #digits - fraction_length + 1)
  whole = (string.gsub(whole, '^0+', ''))
  if whole == '' then
    whole = '0'
  end
  fraction = (string.gsub(fraction, '0+$', ''))
  local s = whole
  if fraction ~= '' then
    s = s .. '.' .. fraction
  end
  if negative and s ~= '0' then
    s = '-' .. s
  end
  return s
end

local function dec_add(a, b)
  local an, aw, af = dec_parse(a)
  local bn, bw, bf = dec_parse(b)
  local x, y, f = dec_align(aw, af, bw, bf)
  if an == bn then
    return dec_format(an, dec_add_magnitudes(x, y), f)
  end
  if x >= y then  -- equal lengths: string order is numeric order
    return dec_format(an, dec_subtract_magnitudes(x, y), f)
  end
  return dec_format(bn, dec_subtract_magnitudes(y, x), f)
end

local function dec_negate(a)
  local an, aw, af = dec_parse(a)
  return dec_format(not an, aw .. af, #af)
end

local function dec_sub(a, b)
  return dec_add(a, dec_negate(b))
end

-- -1, 0 or 1 as a < b, a == b, a > b
local function dec_cmp(a, b)
  local d = dec_sub(a, b)
  if d == '0' then
    return 0
  end
  if string.sub(d, 1, 1) == '-' then
    return -1
  end
  return 1
end
