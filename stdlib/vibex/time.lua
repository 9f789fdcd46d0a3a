--- vibex.time — candle intervals and calendar dates, in one place.
--
--   time.INTERVAL_MS["5m"]         --> 300000
--   time.interval_ms("4h")         --> 14400000 (nil, err for "7x")
--   time.date_ms("2026-01-01")     --> 1767225600000 (UTC midnight)
--   time.iso(1767225600000)        --> "2026-01-01T00:00:00Z"
--
-- Dates are proleptic Gregorian in UTC with no time zone involved; the
-- civil-date arithmetic is the C function the database layer uses too
-- (vx_days_from_civil in runtime/pgtypes.c).
local C = require("vibex.cdef").C

local M = {}

--- The venue intervals, shortest first (Binance/Aster kline intervals).
M.INTERVALS = { "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w" }

local UNIT_MS = { s = 1000, m = 60000, h = 3600000, d = 86400000, w = 604800000 }

--- Interval name -> milliseconds, for every venue interval.
M.INTERVAL_MS = {}
for _, iv in ipairs(M.INTERVALS) do
  local n, u = iv:match("^(%d+)(%a)$")
  M.INTERVAL_MS[iv] = tonumber(n) * UNIT_MS[u]
end

M.DAY_MS = UNIT_MS.d

--- "1m", "4h", "1d", "1w" (any count of s, m, h, d or w; a number passes
--- through) -> milliseconds; nil, err for anything else.
---@param iv string|number
---@return number|nil ms
---@return string|nil err
function M.interval_ms(iv)
  if type(iv) == "number" then return iv end
  local known = M.INTERVAL_MS[iv]
  if known then return known end
  local n, u = tostring(iv):match("^(%d+)([smhdw])$")
  if not n or tonumber(n) == 0 then
    return nil, ("interval %q is not one of %s"):format(tostring(iv), table.concat(M.INTERVALS, ", "))
  end
  return tonumber(n) * UNIT_MS[u]
end

--- UTC midnight of a "YYYY-MM-DD" date in epoch milliseconds; nil, err when it is not a date.
---@param s string
---@return number|nil ms
---@return string|nil err
function M.date_ms(s)
  local y, m, d = tostring(s):match("^(%d%d%d%d)%-(%d%d?)%-(%d%d?)$")
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if not y or m < 1 or m > 12 or d < 1 or d > 31 then
    return nil, ("%q is not a date (YYYY-MM-DD)"):format(tostring(s))
  end
  return tonumber(C.vx_days_from_civil(y, m, d)) * M.DAY_MS
end

--- Epoch milliseconds as ISO 8601 UTC text ("2026-01-01T00:00:00Z"; milliseconds shown when not whole).
---@param ms number
---@return string
function M.iso(ms)
  local s = os.date("!%Y-%m-%dT%H:%M:%S", math.floor(ms / 1000))
  local frac = ms % 1000
  return s .. (frac ~= 0 and (".%03d"):format(frac) or "") .. "Z"
end

return M
