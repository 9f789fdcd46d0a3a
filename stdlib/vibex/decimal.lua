--- vibex.decimal — exact decimal strings for prices and quantities.
--
-- Values go in as strings ("0.00010000") or Lua numbers (read as the shortest
-- decimal that round-trips, so 0.1 + 0.2 is 0.30000000000000004 and 0.3 is
-- 0.3) and come out as plain decimal strings. All arithmetic is on scaled
-- 64-bit integers in C (runtime/decimal.c), so a price rounded to a tick is
-- exactly on the venue's grid.
--
--   dec.round("0.123456", "0.001", "down")       --> "0.123"
--   dec.round(27123.456, "0.1", "nearest")       --> "27123.5"
--   dec.round("5.05", "0.1", "down", "0.05")     --> "5.05" (grid from a base)
--   dec.cmp("1.10", "1.1")                       --> 0
--   dec.cmp_product("0.5", "20", "10")           --> 0   (sign of a*b - c)
--   dec.normalize("100.0000")                    --> "100"
--   dec.div_round("400", "60000.1", "0.001", "down")  --> "0.006"  (400 / 60000.1 onto the grid)
local ffi = require "ffi"

require "vibex.cdef" -- the declarations (one registry, checked against the headers at build time)

local C = ffi.C
local M = {}

local MODES = { down = 0, up = 1, nearest = 2, exact = 3 }
local outbuf = ffi.new("char[48]")
-- results are formatted into a string at once: one scratch value serves all
local scratch = ffi.new("vx_dec")
local ZERO = ffi.new("vx_dec")

-- Parsed values are kept (a decimal never changes): the same tick sizes,
-- steps, prices and quantities come back on every order, and parsing is
-- most of an order's preparation. Bounded: the table starts over past
-- 4096 entries.
local cache, ncache = {}, 0

--- Parse v (string or number) into a vx_dec (shared: never modify it); nil,
-- err when it is not a finite decimal within 18 fractional digits.
local function parse(v, what)
  local d = cache[v]
  if d then return d end
  d = ffi.new("vx_dec")
  local rc
  if type(v) == "number" then
    rc = C.vx_dec_from_double(v, d)
  elseif type(v) == "string" then
    rc = C.vx_dec_parse(v, d)
  else
    return nil, ("%s: expected a decimal string or a number, got %s"):format(what or "value", type(v))
  end
  if rc ~= 0 then
    return nil, ("%s: %s is not a finite decimal with at most 18 decimal places")
      :format(what or "value", type(v) == "string" and ("%q"):format(v) or tostring(v))
  end
  if ncache >= 4096 then cache, ncache = {}, 0 end
  cache[v], ncache = d, ncache + 1
  return d
end
M.parse = parse

local function format(d)
  C.vx_dec_format(d, outbuf, 48)
  return ffi.string(outbuf)
end

--- The canonical string of v ("100.0000" -> "100", 1e-8 -> "0.00000001").
---@param v string|number
---@param what string|nil names v in errors
---@return string|nil text
---@return string|nil err
function M.normalize(v, what)
  local d, err = parse(v, what)
  if not d then return nil, err end
  return format(d)
end

-- A grid's base: zero when not given.
local function parse_base(base)
  if base == nil then return ZERO end
  return parse(base, "base")
end

--- Round v onto the grid base + k*step. mode: "down" (toward -inf), "up",
-- "nearest" (ties away from zero) or "exact" (nil, err unless on the grid).
---@param v string|number
---@param step string
---@param mode string "down", "up", "nearest" or "exact"
---@param base string|nil the grid origin (0)
---@param what string|nil names v in errors
---@return string|nil text
---@return string|nil err
function M.round(v, step, mode, base, what)
  local m = MODES[mode or "nearest"]
  if not m then error(("decimal.round: mode must be down, up, nearest or exact, got %s"):format(tostring(mode)), 2) end
  local x, err = parse(v, what)
  if not x then return nil, err end
  local s, serr = parse(step, "step")
  if not s then return nil, serr end
  if s.m <= 0 then return nil, ("step must be positive, got %s"):format(format(s)) end
  local b, berr = parse_base(base)
  if not b then return nil, berr end
  local out = scratch
  local rc = C.vx_dec_round_step(x, b, s, m, out)
  if rc == 1 then
    return nil, ("%s %s is not a multiple of %s"):format(what or "value", format(x), format(s))
  elseif rc ~= 0 then
    return nil, ("%s %s is out of range for step %s"):format(what or "value", format(x), format(s))
  end
  return format(out)
end

--- a / b rounded onto the grid base + k*step, computed exactly (no binary
-- double in between): how a notional becomes a quantity. nil, err on bad
-- input, b <= 0 or overflow.
---@param a string|number
---@param b string|number
---@param step string
---@param mode string
---@param base string|nil
---@return string|nil text
---@return string|nil err
function M.div_round(a, b, step, mode, base)
  local m = MODES[mode or "down"]
  if not m then error(("decimal.div_round: mode must be down, up, nearest or exact, got %s"):format(tostring(mode)), 2) end
  local x, e1 = parse(a, "dividend")
  local y, e2 = parse(b, "divisor")
  local s, e3 = parse(step, "step")
  if not (x and y and s) then return nil, e1 or e2 or e3 end
  if y.m <= 0 then return nil, ("divisor must be positive, got %s"):format(format(y)) end
  if s.m <= 0 then return nil, ("step must be positive, got %s"):format(format(s)) end
  local b0, berr = parse_base(base)
  if not b0 then return nil, berr end
  local out = scratch
  local rc = C.vx_dec_div_round_step(x, y, b0, s, m, out)
  if rc == 1 then return nil, ("%s / %s is not a multiple of %s"):format(format(x), format(y), format(s)) end
  if rc ~= 0 then return nil, ("%s / %s is out of range for step %s"):format(format(x), format(y), format(s)) end
  return format(out)
end

--- -1, 0 or 1 as a <, =, > b; errors on non-decimals (programmer mistake).
---@param a string|number
---@param b string|number
---@return integer sign
function M.cmp(a, b)
  local x = assert(parse(a, "a"))
  local y = assert(parse(b, "b"))
  return C.vx_dec_cmp(x, y)
end

--- Sign of a*b - c, exact. nil, err on bad input or overflow.
---@param a string|number
---@param b string|number
---@param c string|number
---@return integer|nil sign
---@return string|nil err
function M.cmp_product(a, b, c)
  local x, e1 = parse(a, "a")
  local y, e2 = parse(b, "b")
  local z, e3 = parse(c, "c")
  if not (x and y and z) then return nil, e1 or e2 or e3 end
  local r = C.vx_dec_cmp_product(x, y, z)
  if r == -2 then return nil, "decimal product out of range" end
  return r
end

--- Sign of a*b - c*d, exact. nil, err on bad input or overflow.
---@param a string|number
---@param b string|number
---@param c string|number
---@param d string|number
---@return integer|nil sign
---@return string|nil err
function M.cmp_products(a, b, c, d)
  local w, e1 = parse(a, "a")
  local x, e2 = parse(b, "b")
  local y, e3 = parse(c, "c")
  local z, e4 = parse(d, "d")
  if not (w and x and y and z) then return nil, e1 or e2 or e3 or e4 end
  local r = C.vx_dec_cmp_products(w, x, y, z)
  if r == -2 then return nil, "decimal product out of range" end
  return r
end

--- True when v is a decimal equal to zero ("0", "0.000", 0).
---@param v any
---@return boolean
function M.is_zero(v)
  local d = parse(v)
  return d ~= nil and d.m == 0
end

return M
