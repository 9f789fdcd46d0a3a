--- vibex.data.columns — candles kept compactly for replays and backtests:
-- per symbol, C arrays of open times (ms, as doubles) and of open, high,
-- low, close and volume in the simulated venue's units (int64 of 1e-8,
-- exact). 48 bytes a candle instead of a Lua table of strings (~300), so a
-- year of 5-minute candles on several symbols fits in a few MB.
--
--   local c = columns.new(1000)
--   c:push(open_time, "65000.1", "65010", "64990.5", "65001", "12.5")   -- strings or numbers
--   c.n, c.t[i], c.c[i]                                               -- 0-based arrays
--   columns.from_rows(rows)                                          -- {open_time, open, …} rows
local ffi = require "ffi"

local M = {}

local dbl, i64 = ffi.typeof("double[?]"), ffi.typeof("int64_t[?]")
local SCALE = 1e8

local C = {}
C.__index = C

--- Room for cap candles (it grows by doubling).
function M.new(cap)
  cap = math.max(16, cap or 1024)
  return setmetatable({ n = 0, cap = cap, t = dbl(cap), o = i64(cap), h = i64(cap), l = i64(cap), c = i64(cap),
                        v = i64(cap) }, C)
end

function M.is(x) return getmetatable(x) == C end

function C:_grow()
  local cap = self.cap * 2
  for _, k in ipairs { "t", "o", "h", "l", "c", "v" } do
    local a = (k == "t" and dbl or i64)(cap)
    ffi.copy(a, self[k], self.n * 8)
    self[k] = a
  end
  self.cap = cap
end

local units -- the simulated venue's exact decimal -> units (required when first used: no load-time cycle)

--- Append a candle: prices and volume as decimal strings or numbers.
function C:push(t, o, h, l, c, v)
  units = units or require("vibex.exchange.sim").units
  return self:push_units(t, units(o, "open"), units(h, "high"), units(l, "low"), units(c, "close"),
    units(v or 0, "volume"))
end

--- Append a candle already in units.
function C:push_units(t, o, h, l, c, v)
  if self.n == self.cap then self:_grow() end
  local i = self.n
  self.t[i], self.o[i], self.h[i], self.l[i], self.c[i], self.v[i] = t, o, h, l, c, v
  self.n = i + 1
end

--- Candle i (0-based) as a replay row with numbers (for messages and tests).
function C:row(i)
  return { open_time = self.t[i], open = tonumber(self.o[i]) / SCALE, high = tonumber(self.h[i]) / SCALE,
           low = tonumber(self.l[i]) / SCALE, close = tonumber(self.c[i]) / SCALE, volume = tonumber(self.v[i]) / SCALE }
end

--- The close of candle i as a number.
function C:close(i) return tonumber(self.c[i]) / SCALE end

--- A copy of candles [i, j) (0-based).
function C:slice(i, j)
  local out = M.new(math.max(1, j - i))
  local n = math.max(0, j - i)
  for _, k in ipairs { "t", "o", "h", "l", "c", "v" } do ffi.copy(out[k], self[k] + i, n * 8) end
  out.n = n
  return out
end

--- Columns of replay rows {open_time, open, high, low, close, volume}.
function M.from_rows(rows)
  local c = M.new(#rows)
  for _, r in ipairs(rows) do c:push(r.open_time, r.open, r.high, r.low, r.close, r.volume) end
  return c
end

M.SCALE = SCALE
return M
