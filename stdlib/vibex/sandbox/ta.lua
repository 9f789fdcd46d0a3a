--- vibex.sandbox.ta — what `require "vibex.ta"` gives a sandboxed script:
-- the indicators, over bounds-checked views instead of cdata.
--
-- A view is a userdata standing for a series (a column of a candle buffer,
-- an indicator's output): v[i] (1 = oldest; nil outside 1..#v), #v,
-- v:len(), v:lastv(), v:last(n, decimals), v:sub(i, j) (a view of a
-- slice), v:totable(), v:copy(), tostring(v). It cannot be written through
-- and holds no pointer a script can reach: the series it stands for lives
-- in a table private to this module. A candles view does the same for a
-- candle buffer: c:len(), c:column("c"), c.close, c:at(i), c:last(n),
-- c:gaps(), c:view(), and every indicator as a method (c:atr(14)).
local ta = require "vibex.ta"

local M = {}

local series_of = setmetatable({}, { __mode = "k" })  -- view -> series
local candles_of = setmetatable({}, { __mode = "k" }) -- candles view -> candles

local View, CandlesView = {}, {}
local view_proto = newproxy(true)
local candles_proto = newproxy(true)

local views_of = setmetatable({}, { __mode = "kv" }) -- series -> its view, for series that are reused (streams)

local function view(s)
  if s == nil then return nil end
  local v = newproxy(view_proto)
  series_of[v] = s
  return v
end

-- the one view of a series the runtime reuses (a stream's window)
local function stable_view(s)
  local v = views_of[s]
  if not v then
    v = view(s)
    views_of[s] = v
  end
  return v
end

function M.is_view(x) return series_of[x] ~= nil or candles_of[x] ~= nil end

local function series(v, what)
  local s = series_of[v]
  if not s then error(("%s: expected a series view, got %s"):format(what, type(v)), 3) end
  return s
end

function View.len(v) return series(v, "len"):len() end
function View.lastv(v) return series(v, "lastv"):lastv() end
function View.last(v, n, decimals)
  if n ~= nil and type(n) ~= "number" then error("last(n, decimals): n must be a number", 2) end
  if decimals ~= nil and type(decimals) ~= "number" then error("last(n, decimals): decimals must be a number", 2) end
  return series(v, "last"):last(n and math.max(0, math.floor(n)), decimals)
end
function View.totable(v) return series(v, "totable"):totable() end
function View.sub(v, i, j)
  if (i ~= nil and type(i) ~= "number") or (j ~= nil and type(j) ~= "number") then
    error("sub(i, j): i and j must be numbers", 2)
  end
  return view(series(v, "sub"):sub(i and math.floor(i), j and math.floor(j)))
end
function View.copy(v) return view(series(v, "copy"):copy()) end

do
  local mt = getmetatable(view_proto)
  mt.__index = function(v, k)
    if type(k) == "number" then
      local s = series_of[v]
      if k < 1 or k > s.n or k % 1 ~= 0 then return nil end
      return s.p[k - 1]
    end
    return View[k]
  end
  mt.__newindex = function() error("a series view is read-only", 2) end
  mt.__len = function(v) return series_of[v]:len() end
  mt.__tostring = function(v) return tostring(series_of[v]) end
  mt.__metatable = "vibex series view"
end

-- ---- candles -------------------------------------------------------------------------------------

local function candles(c, what)
  local raw = candles_of[c]
  if not raw then error(("%s: expected a candles view, got %s"):format(what, type(c)), 3) end
  return raw
end

local COLUMNS = { t = true, o = true, h = true, l = true, c = true, v = true, qv = true, n = true }

function CandlesView.len(c) return tonumber(candles(c, "len"):len()) end
function CandlesView.column(c, col)
  local raw = candles(c, "column")
  local name = getmetatable(raw).columns[col] or col
  if not COLUMNS[name] then error(("column(%q): one of t, o, h, l, c, v, qv, n"):format(tostring(col)), 2) end
  return view(raw:column(name))
end
function CandlesView.view(c)
  local out = {}
  for k, s in pairs(candles(c, "view"):view()) do out[k] = view(s) end
  return out
end
function CandlesView.at(c, i)
  if type(i) ~= "number" then error("at(i): i must be a number", 2) end
  return candles(c, "at"):at(math.floor(i))
end
function CandlesView.last(c, n)
  if n ~= nil and type(n) ~= "number" then error("last(n): n must be a number", 2) end
  return candles(c, "last"):last(n and math.max(0, math.floor(n)))
end
function CandlesView.gaps(c) return candles(c, "gaps"):gaps() end

--- A candles view of a vibex.ta candle buffer (for the runtime, not scripts).
function M.candles_view(raw)
  if raw == nil then return nil end
  local c = newproxy(candles_proto)
  candles_of[c] = raw
  return c
end

-- ---- indicators -------------------------------------------------------------------------------------

-- arguments: views become series, candles views candle buffers, bars
-- tables of views tables of series; numbers and lists pass as they are
local function unwrap(x)
  if series_of[x] then return series_of[x] end
  if candles_of[x] then return candles_of[x] end
  if type(x) == "table" then
    local t
    for k, val in pairs(x) do
      if series_of[val] then
        t = t or {}
        t[k] = series_of[val]
      end
    end
    if t then
      for k, val in pairs(x) do if t[k] == nil then t[k] = val end end
      return t
    end
  elseif type(x) == "userdata" or type(x) == "cdata" then
    error("indicators take series views, candles views, lists of numbers and numbers", 3)
  end
  return x
end

local function wrap(r, err)
  if r == nil then return nil, err end
  if ta.is_series(r) then return view(r) end
  if type(r) == "table" then
    local out = {}
    for k, s in pairs(r) do out[k] = ta.is_series(s) and view(s) or s end
    return out
  end
  return r
end

--- c:stream("ema", 20): the indicator kept up to date over the last
--- candles (vibex.ta Candles:stream), the batch call's shape.
function CandlesView.stream(c, name, ...)
  if type(name) ~= "string" then error("stream(name, ...): name must be an indicator name", 2) end
  local raw = candles(c, "stream")
  local r, err = raw:stream(name, ...)
  if r == nil then return nil, err end
  if ta.is_series(r) then return stable_view(r) end
  local out = {}
  for k, x in pairs(r) do out[k] = stable_view(x) end
  return out
end

local module = {}

-- fn(unwrapped args…), its result wrapped
local function call_unwrapped(fn, first, ...)
  local n = select("#", ...)
  local args = { ... }
  for i = 1, n do args[i] = unwrap(args[i]) end
  if first ~= nil then return wrap(fn(first, unpack(args, 1, n))) end
  return wrap(fn(unpack(args, 1, n)))
end

for name in pairs(ta.indicators()) do
  local fn = ta[name]
  module[name] = function(...) return call_unwrapped(fn, nil, ...) end
  CandlesView[name] = function(c, ...)
    local raw = candles(c, name)
    return call_unwrapped(raw[name], raw, ...)
  end
end

--- A series view from a list of numbers (copied).
function module.series(list)
  if type(list) ~= "table" or series_of[list] then
    if series_of[list] then return list end
    error("ta.series: expected a list of numbers", 2)
  end
  return view(ta.series(list))
end

function module.is_series(x) return series_of[x] ~= nil end
function module.last(x, n, decimals)
  if series_of[x] then return View.last(x, n, decimals) end
  if type(x) ~= "table" then error("ta.last: expected a series view or a list of numbers", 2) end
  return ta.last(x, n, decimals)
end
module.indicators = ta.indicators
module.lookback = ta.lookback
module.interval_ms = ta.interval_ms
module.isa = ta.isa

do
  local mt = getmetatable(candles_proto)
  mt.__index = function(c, k)
    local m = CandlesView[k]
    if m ~= nil then return m end
    local raw = candles_of[c]
    if k == "interval" or k == "symbol" then return raw[k] end
    local col = getmetatable(raw).columns and getmetatable(raw).columns[k]
    if col then return view(raw:column(col)) end
    return nil
  end
  mt.__newindex = function() error("a candles view is read-only", 2) end
  mt.__len = function(c) return tonumber(candles_of[c]:len()) end
  mt.__tostring = function(c) return tostring(candles_of[c]) end
  mt.__metatable = "vibex candles view"
end

M.module = module
M.View, M.CandlesView = View, CandlesView
M.view_metatable, M.candles_metatable = debug.getmetatable(view_proto), debug.getmetatable(candles_proto)

return M
