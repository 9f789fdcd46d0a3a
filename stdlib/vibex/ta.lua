-- vibex.ta — indicators and candle series, computed in C (runtime/ta.c,
-- runtime/candles.c) and reached through LuaJIT FFI.
--
--   local ta = require("vibex.ta")
--   local rsi = ta.rsi(closes, 14)              -- a series (1-based, #rsi)
--   local m = ta.macd(closes)                   -- {macd=, signal=, hist=}
--   closes:ema(20):last(10)                     -- last 10 values, oldest first
--   local s = ta.stream.rsi(14); s:push(x); s:peek(forming_close)
--   local c1 = ta.candles{interval = "1m"}; local c5 = c1:resample("5m")
--
-- Expected failures (too few values, a NaN in the input, a bad period) come
-- back as nil, err; passing the wrong kind of argument is an error().
local ffi = require("ffi")
local time = require "vibex.time"

require "vibex.cdef" -- the declarations (one registry, checked against the headers at build time)

local C = ffi.C
local M = {}

local SLOT = {high = 0, low = 1, close = 2, volume = 3, time = 4}
local SLOT_NAMES = {[0] = "high", "low", "close", "volume", "time"}
local errbuf = ffi.new("char[256]")
local dbl = ffi.typeof("double[?]")
local dptr_t = ffi.typeof("double *")
local candles_view_t = ffi.typeof("vx_candles_view")
local cast = ffi.cast

-- ---- series ---------------------------------------------------------------

-- A series is a cdata {p, n}: 1-based indexing, #s, methods. What keeps its
-- memory alive (a double[] or a candle buffer) hangs off a weak-keyed table.
local keep = setmetatable({}, {__mode = "k"})
local Series = {}
local series_t

local function new_series(ptr, n, owner)
  local s = series_t(ptr, n)
  keep[s] = owner
  return s
end

local function alloc_series(n)
  local buf = dbl(n > 0 and n or 1)
  return new_series(buf, n, buf)
end

--- A series from a Lua list of numbers (copied), or n zeros.
---@param src number[]|integer a list to copy, or a length
---@return cdata series
function M.series(src)
  if type(src) == "number" then return alloc_series(src) end
  if ffi.istype(series_t, src) then return src end
  if type(src) ~= "table" then error("ta.series: expected a list of numbers or a length, got " .. type(src), 2) end
  local n = #src
  local s = alloc_series(n)
  for i = 1, n do
    local v = src[i]
    if type(v) ~= "number" then
      v = tonumber(v)
      if not v then error(("ta.series: element %d is %s, not a number"):format(i, type(src[i])), 2) end
    end
    s.p[i - 1] = v
  end
  return s
end

--- True when x is a series (the result of ta.series or of an indicator).
---@param x any
---@return boolean
function M.is_series(x) return ffi.istype(series_t, x) end

function Series:len() return tonumber(self.n) end

--- The last value (NaN when empty).
function Series:lastv() return self.n > 0 and self.p[self.n - 1] or 0 / 0 end

--- The last n values, oldest first, as a plain Lua list; NaN becomes nil-free
--- by skipping warm-up values. decimals rounds them (for prompts).
local POW10 = {}
for d = 0, 15 do POW10[d] = 10 ^ d end
local floor = math.floor

function Series:last(n, decimals)
  local len = tonumber(self.n)
  n = math.min(n or len, len)
  local out, k, p = {}, 0, self.p
  local scale = decimals and (POW10[decimals] or 10 ^ decimals)
  for i = len - n, len - 1 do
    local v = p[i]
    if v == v then
      if scale then v = floor(v * scale + 0.5) / scale end
      k = k + 1
      out[k] = v
    end
  end
  return out
end

function Series:totable() return self:last(tonumber(self.n)) end

--- A view of elements i..j (1-based, inclusive), sharing memory.
function Series:sub(i, j)
  local len = tonumber(self.n)
  j = math.min(j or len, len)
  i = math.max(i or 1, 1)
  if j < i then return new_series(self.p, 0, keep[self]) end
  return new_series(self.p + (i - 1), j - i + 1, keep[self] or self)
end

--- A copy that no longer shares memory with its source.
function Series:copy()
  local s = alloc_series(tonumber(self.n))
  ffi.copy(s.p, self.p, 8 * tonumber(self.n))
  return s
end

local function fmt(v) return v ~= v and "nan" or ("%.10g"):format(v) end

series_t = ffi.metatype("vx_lua_series", {
  __index = function(s, k)
    if type(k) == "number" then
      if k < 1 or k > s.n or k % 1 ~= 0 then return nil end
      return s.p[k - 1]
    end
    return Series[k]
  end,
  __newindex = function(s, k, v)
    if type(k) ~= "number" or k < 1 or k > s.n or k % 1 ~= 0 then
      error(("series index %s out of range 1..%d"):format(tostring(k), tonumber(s.n)), 2)
    end
    s.p[k - 1] = v
  end,
  __len = function(s) return tonumber(s.n) end,
  __tostring = function(s)
    local n, parts = tonumber(s.n), {}
    local from = math.max(0, n - 8)
    for i = from, n - 1 do parts[#parts + 1] = fmt(s.p[i]) end
    return ("series(%d)[%s%s]"):format(n, from > 0 and "..., " or "", table.concat(parts, ", "))
  end,
})

-- ---- indicator table from C -------------------------------------------------

local KINDS, BY_NAME = {}, {}
do
  local cnt = ffi.new("int[1]")
  local info = C.vx_ta_kinds(cnt)
  for k = 0, cnt[0] - 1 do
    local i = info[k]
    local spec = {kind = k, name = ffi.string(i.name), title = ffi.string(i.title),
                  params = {}, defaults = {}, outputs = {}, inputs = {}}
    for p = 0, i.nparams - 1 do
      spec.params[p + 1] = ffi.string(i.param_names[p])
      spec.defaults[p + 1] = i.param_defaults[p]
    end
    for o = 0, i.noutputs - 1 do spec.outputs[o + 1] = ffi.string(i.output_names[o]) end
    for s = 0, 4 do
      if bit.band(i.inputs, bit.lshift(1, s)) ~= 0 then spec.inputs[#spec.inputs + 1] = SLOT_NAMES[s] end
    end
    spec.single = #spec.inputs == 1 and spec.inputs[1] == "close"
    KINDS[k] = spec
    BY_NAME[spec.name] = spec
  end
end

--- Which SIMD paths the batch kernels take on this machine: "avx2" or "sse2"
--- (VIBEX_TA_ISA=sse2 forces the latter; the numbers are the same bits).
---@return string isa "avx2" or "sse2"
function M.isa() return ffi.string(C.vx_ta_isa()) end

--- What indicators exist: name -> {title, inputs, params, defaults, outputs}.
---@return table by_name {title, inputs, params, defaults, outputs}
function M.indicators()
  local out = {}
  for _, s in pairs(BY_NAME) do
    out[s.name] = {title = s.title, inputs = s.inputs, params = s.params,
                   defaults = s.defaults, outputs = s.outputs}
  end
  return out
end

-- params: positional numbers, or one table of named values; defaults fill in
local function read_params(spec, args, first)
  local p = ffi.new("double[4]")
  local named = type(args[first]) == "table" and not ffi.istype(series_t, args[first]) and args[first]
  for i = 1, #spec.params do
    local v
    if named then v = named[spec.params[i]] else v = args[first + i - 1] end
    if v == nil then v = spec.defaults[i] end
    if type(v) ~= "number" then
      error(("ta.%s: %s must be a number, got %s"):format(spec.name, spec.params[i], type(v)), 3)
    end
    p[i - 1] = v
  end
  return p
end

-- An input column as (pointer, length, anchor-to-keep-alive).
local function column(x, what, spec)
  if ffi.istype(series_t, x) then return x.p, tonumber(x.n), x end
  if type(x) == "table" then
    local s = M.series(x)
    return s.p, tonumber(s.n), s
  end
  error(("ta.%s: %s must be a series or a list of numbers, got %s"):format(spec.name, what, type(x)), 4)
end

-- bars: a candle series, or a table with high/low/close/volume/time fields
local function bar_field(bars, name)
  if name == "time" then return bars.time or bars.t end
  return bars[name] or bars[name:sub(1, 1)]
end

local function is_bars(x)
  return type(x) == "table" and (x.close ~= nil or x.c ~= nil or x.is_candles)
end

local function run(spec, ...)
  local args = {...}
  local nargs = select("#", ...)
  local ins = ffi.new("const double *[5]")
  local anchors, n, first = {}, nil, nil
  local function take(slot_name, x)
    if x == nil then
      error(("ta.%s: missing input %s (inputs: %s)"):format(spec.name, slot_name,
        table.concat(spec.inputs, ", ")), 4)
    end
    local p, len, a = column(x, slot_name, spec)
    if n and len ~= n then
      return ("ta.%s: input %s has %d values but %s has %d; all inputs must be the same length")
        :format(spec.name, slot_name, len, spec.inputs[1], n)
    end
    n = n or len
    ins[SLOT[slot_name]] = p
    anchors[#anchors + 1] = a
  end
  if is_bars(args[1]) then
    local bars = args[1]
    if bars.is_candles then bars = bars:view() end
    for _, name in ipairs(spec.inputs) do
      local err = take(name, bar_field(bars, name))
      if err then return nil, err end
    end
    first = 2
  else
    for i, name in ipairs(spec.inputs) do
      local err = take(name, args[i])
      if err then return nil, err end
    end
    first = #spec.inputs + 1
  end
  if nargs > first + #spec.params then
    error(("ta.%s: too many arguments (parameters: %s)"):format(spec.name, table.concat(spec.params, ", ")), 3)
  end
  local p = read_params(spec, args, first)
  local outs, outp = {}, ffi.new("double *[4]")
  for k, name in ipairs(spec.outputs) do
    outs[name] = alloc_series(n)
    outp[k - 1] = outs[name].p
  end
  if C.vx_ta_batch(spec.kind, p, n, ins, outp, errbuf, 256) ~= 0 then
    return nil, ffi.string(errbuf)
  end
  if #spec.outputs == 1 then return outs[spec.outputs[1]] end
  return outs
end

--- Lookback (first valid index, 0-based) of an indicator with its params.
---@param name string the indicator
---@param ... number its parameters
---@return integer lookback
function M.lookback(name, ...)
  local spec = BY_NAME[name] or error("ta.lookback: no indicator named " .. tostring(name), 2)
  local lb = C.vx_ta_lookback(spec.kind, read_params(spec, {...}, 1), errbuf, 256)
  if lb < 0 then return nil, ffi.string(errbuf) end
  return lb
end

for name, spec in pairs(BY_NAME) do
  M[name] = function(...) return run(spec, ...) end
  if spec.single then
    Series[name] = function(self, ...) return run(spec, self, ...) end
  end
end

-- ---- streams ---------------------------------------------------------------

local Stream = {}
local stream_t

-- per kind: positional inputs (in the indicator's input order) straight to
-- the five C slots. Generated once per kind so a push allocates nothing.
local function make_updater(spec)
  local args, slots = {}, {"0", "0", "0", "0", "0"}
  for i, name in ipairs(spec.inputs) do
    args[i] = "a" .. i
    slots[SLOT[name] + 1] = "a" .. i
  end
  local src = ("local C = ... return function(s, commit, %s) return C.vx_ta_update(s, %s, commit) end")
    :format(table.concat(args, ", "), table.concat(slots, ", "))
  return assert(loadstring(src, "=ta." .. spec.name .. ".update"))(C)
end

-- a bar table {high=, low=, close=, volume=, time=} (or h/l/c/v/t)
local function update_bar(s, spec, commit, bar)
  local v = {0, 0, 0, 0, 0}
  for _, name in ipairs(spec.inputs) do v[SLOT[name] + 1] = bar_field(bar, name) or 0 / 0 end
  return C.vx_ta_update(s, v[1], v[2], v[3], v[4], v[5], commit)
end

local UPDATERS = {}
for k, spec in pairs(KINDS) do UPDATERS[k] = make_updater(spec) end

local function results(s, v)
  if v ~= v and s.failed ~= 0 then return nil, ffi.string(s.err) end
  local n = s.noutputs
  if n == 1 then return v end
  if n == 2 then return v, s.out[1] end
  return v, s.out[1], s.out[2]
end

local function feed(self, commit, a, ...)
  if type(a) == "table" then return results(self, update_bar(self, KINDS[self.kind], commit, a)) end
  return results(self, UPDATERS[self.kind](self, commit, a, ...))
end

--- Commit one closed value (or bar: positional inputs, or a table with
--- high/low/close/volume/time); returns the outputs (NaN while warming up).
function Stream:push(...) return feed(self, 1, ...) end

--- Outputs for a forming (not yet closed) value or bar; commits nothing.
function Stream:peek(...) return feed(self, 0, ...) end

--- Outputs of the last push or peek, by name.
function Stream:value()
  local spec, out = KINDS[self.kind], {}
  for i, name in ipairs(spec.outputs) do out[name] = self.out[i - 1] end
  return out
end

function Stream:ready() return self.count > self.lookback end
function Stream:reset() C.vx_ta_reset(self) end
function Stream:name() return KINDS[self.kind].name end

stream_t = ffi.metatype("vx_ta_stream", {
  __index = Stream,
  __tostring = function(s)
    return ("%s stream (%d values, lookback %d, last %s)"):format(
      KINDS[s.kind].name, tonumber(s.count), s.lookback, fmt(s.out[0]))
  end,
})

M.stream = {}
for name, spec in pairs(BY_NAME) do
  M.stream[name] = function(...)
    local p = read_params(spec, {...}, 1)
    local s = C.vx_ta_stream_new(spec.kind, p, errbuf, 256)
    if s == nil then return nil, ffi.string(errbuf) end
    return ffi.gc(s, C.vx_ta_stream_free)
  end
end

-- ---- candles ---------------------------------------------------------------

--- "1m", "4h", "1d", "1w" -> milliseconds; nil, err for anything else (vibex.time.interval_ms).
---@param iv string|number
---@return number|nil ms
---@return string|nil err
M.interval_ms = time.interval_ms

local Candles = {}
Candles.__index = function(self, k)
  local m = Candles[k]
  if m ~= nil then return m end
  local col = Candles.columns[k]
  if col then return self:column(col) end
  return nil
end
Candles.columns = {time = "t", t = "t", open = "o", o = "o", high = "h", h = "h", low = "l", l = "l",
                   close = "c", c = "c", volume = "v", v = "v", quote_volume = "qv", trades = "n"}
Candles.is_candles = true

--- A candle series for one symbol/interval: ta.candles{interval = "1m", capacity = 5000}.
---@param opts table interval, capacity
---@return table candles
function M.candles(opts)
  opts = opts or {}
  local ms, err = M.interval_ms(opts.interval or "1m")
  if not ms then return nil, err end
  local ptr = C.vx_candles_new(ms, opts.capacity or 5000, errbuf, 256)
  if ptr == nil then return nil, ffi.string(errbuf) end
  return setmetatable({ptr = ffi.gc(ptr, C.vx_candles_free), interval = opts.interval or "1m",
                       symbol = opts.symbol, children = {}, vbuf = candles_view_t()}, Candles)
end

-- The ring buffer is opaque to Lua: what it reads comes through this view
-- (columns offset to the oldest candle), refreshed at every read.
local function view(self)
  local v = self.vbuf
  C.vx_candles_view_of(self.ptr, v)
  return v
end

--- How many candles the series holds.
function Candles:len() return view(self).len end
--- How many candles it can hold.
function Candles:capacity() return view(self).cap end
--- Its interval in milliseconds.
function Candles:interval_ms() return tonumber(view(self).interval_ms) end

--- A view (no copy) of one column: "t", "o", "h", "l", "c", "v", "qv", "n".
function Candles:column(col)
  local v = view(self)
  return new_series(cast(dptr_t, v[col]), v.len, self)
end

--- All columns as series views, named like a bars table.
function Candles:view()
  return {time = self:column("t"), open = self:column("o"), high = self:column("h"),
          low = self:column("l"), close = self:column("c"), volume = self:column("v"),
          quote_volume = self:column("qv"), trades = self:column("n")}
end

local UPDATE_RESULT = {[0] = "appended", "updated", "corrected"}

local function num(x) if x == nil then return 0 / 0 end return tonumber(x) or 0 / 0 end

--- Apply one candle: a table {t|open_time|time, o|open, h|high, l|low, c|close,
--- v|volume, qv|quote_volume, n|trades, closed} or an exchange kline row {t, o, h, l, c, v, ...}.
--- Returns "appended" | "updated" | "corrected", or nil, err.
function Candles:update(k, closed)
  local t, o, h, l, c, v, qv, n
  if k[1] ~= nil then
    t, o, h, l, c, v, qv, n = num(k[1]), num(k[2]), num(k[3]), num(k[4]), num(k[5]), num(k[6]), num(k[8]), num(k[9])
  else
    t, o, h, l, c = num(k.t or k.open_time or k.time), num(k.o or k.open), num(k.h or k.high), num(k.l or k.low), num(k.c or k.close)
    v, qv, n = num(k.v or k.volume), num(k.qv or k.quote_volume), num(k.n or k.trades)
    if closed == nil then closed = k.closed end
  end
  if closed == nil then closed = true end
  local rc = C.vx_candles_update(self.ptr, t, o, h, l, c, v, qv, n, closed and 1 or 0)
  if rc < 0 then return nil, ffi.string(view(self).err) end
  return UPDATE_RESULT[rc]
end

--- Apply many closed candles (kline rows or tables), oldest first.
function Candles:load(rows)
  for i = 1, #rows do
    local ok, err = self:update(rows[i], true)
    if not ok then return nil, ("row %d: %s"):format(i, err) end
  end
  return #rows
end

--- Fold one trade (time ms, price, quantity) into the forming candle.
function Candles:trade(t, price, qty)
  local rc = C.vx_candles_trade(self.ptr, t, price, qty)
  if rc < 0 then return nil, ffi.string(view(self).err) end
  return UPDATE_RESULT[rc]
end

--- Copy this series' candles into `into` (a series of the same interval
--- with room for them; made when nil) and return it: a copy that frames
--- arriving later do not change.
function Candles:copy(into)
  into = into or assert(M.candles{interval = self.interval, capacity = math.max(1, self:capacity()), symbol = self.symbol})
  if C.vx_candles_copy(into.ptr, self.ptr) ~= 0 then return nil, ffi.string(view(into).err) end
  return into
end

--- Close the forming candle if its period ended by now_ms (a boundary timer).
function Candles:close_due(now_ms) return C.vx_candles_close_due(self.ptr, now_ms) == 1 end

--- A coarser series that follows this one ("5m", "1h", ...).
function Candles:resample(interval, capacity)
  local coarse, err = M.candles{interval = interval, capacity = capacity or self:capacity(), symbol = self.symbol}
  if not coarse then return nil, err end
  if C.vx_candles_link(self.ptr, coarse.ptr) ~= 0 then return nil, ffi.string(view(self).err) end
  self.children[#self.children + 1] = coarse
  return coarse
end

--- The i-th candle (1 = oldest, -1 = newest) as a table.
local function candle_at(c, i)
  if i < 0 then i = c.len + 1 + i end
  if i < 1 or i > c.len then return nil end
  local j = i - 1
  return {t = c.t[j], o = c.o[j], h = c.h[j], l = c.l[j], c = c.c[j], v = c.v[j],
          qv = c.qv[j] == c.qv[j] and c.qv[j] or nil, n = c.n[j] == c.n[j] and c.n[j] or nil,
          closed = i < c.len or c.closed == 1}
end

function Candles:at(i) return candle_at(view(self), i) end

--- The last n candles, oldest first, as tables.
function Candles:last(n)
  local v = view(self)
  local len = v.len
  n = math.min(n or len, len)
  local out = {}
  for i = len - n + 1, len do out[#out + 1] = candle_at(v, i) end
  return out
end

--- Holes seen so far: {count, missing, from, to} (open times around the last).
function Candles:gaps()
  local c = view(self)
  return {count = tonumber(c.gaps), missing = tonumber(c.missing),
          from = c.gaps > 0 and tonumber(c.gap_from) or nil, to = c.gaps > 0 and tonumber(c.gap_to) or nil}
end

Candles.__tostring = function(self)
  local c = view(self)
  local last = self:at(-1)
  return ("candles(%s%s, %d/%d%s)"):format(self.symbol and (self.symbol .. " ") or "", self.interval,
    c.len, c.cap, last and (", last close " .. fmt(last.c) .. (last.closed and "" or " forming")) or "")
end

for name, spec in pairs(BY_NAME) do
  Candles[name] = function(self, ...)
    if spec.single then return run(spec, self:column("c"), ...) end
    return run(spec, self, ...)
  end
end

-- ---- indicators kept up to date (streams over a candle series) -------------

-- Per candle series and indicator: the stream, the open time of the last
-- candle it committed, and its outputs of the last STREAM_KEEP candles.
local stream_state = setmetatable({}, {__mode = "k"})
M.STREAM_KEEP = 64

local COLUMN_OF = {high = "h", low = "l", close = "c", volume = "v", time = "t"}

-- per kind: push candle j of a view's columns (generated once per kind)
local STREAM_FEEDERS = {}
local function feeder(spec)
  local f = STREAM_FEEDERS[spec.kind]
  if f then return f end
  local slots = {"0", "0", "0", "0", "0"}
  for _, name in ipairs(spec.inputs) do slots[SLOT[name] + 1] = ("v.%s[j]"):format(COLUMN_OF[name]) end
  local src = ("local C = ... return function(s, v, j, commit) return C.vx_ta_update(s, %s, commit) end")
    :format(table.concat(slots, ", "))
  f = assert(loadstring(src, "=ta." .. spec.name .. ".feed"))(C)
  STREAM_FEEDERS[spec.kind] = f
  return f
end

local function new_state(spec, name, ...)
  local s, err = M.stream[name](...)
  if not s then return nil, err end
  local st = {s = s, spec = spec, feed = feeder(spec), last_t = -math.huge, n = 0, outs = {}}
  for k = 1, #spec.outputs do st.outs[k] = dbl(2 * M.STREAM_KEEP + 1) end
  return st
end

local function append(st, v0)
  local keep, outs, s = M.STREAM_KEEP, st.outs, st.s
  if st.n >= 2 * keep then -- slide: the last keep values to the front
    for k = 1, #outs do ffi.copy(outs[k], outs[k] + keep, keep * 8) end
    st.n = keep
  end
  local n = st.n
  outs[1][n] = v0
  for k = 2, #outs do outs[k][n] = s.out[k - 1] end
  st.n = n + 1
end

--- An indicator over this series kept up to date by a stream: each call
--- commits the candles closed since the last one and peeks at the forming
--- candle, so its cost does not grow with the window. Returns what the
--- batch call returns (a series, or a table of series by output name) over
--- the last ta.STREAM_KEEP candles; the stream itself has seen all of
--- them since the first call, so its values are the batch ones over the
--- whole history (a batch over only the buffer's window starts later).
function Candles:stream(name, ...)
  local spec = BY_NAME[name]
  if not spec then error("stream: no indicator named " .. tostring(name), 2) end
  -- states by name, then by each parameter in turn (no key string to build per call)
  local node = stream_state[self]
  if not node then node = {}; stream_state[self] = node end
  local by = node[name]
  if not by then by = {}; node[name] = by end
  local nparams = select("#", ...)
  for i = 1, nparams do
    local p = select(i, ...)
    if p == nil then p = false end
    local nxt = by[p]
    if not nxt then nxt = {}; by[p] = nxt end
    by = nxt
  end
  local st = by[true]
  if not st then
    local err
    st, err = new_state(spec, name, ...)
    if not st then return nil, err end
    by[true] = st
  end
  local v = view(self)
  local len = v.len
  local closed = v.closed == 1 and len or len - 1
  -- where the new closed candles start; history rewritten before the last
  -- committed one (a correction, a reload): start over
  local j = closed
  while j > 0 and v.t[j - 1] > st.last_t do j = j - 1 end
  if closed > 0 and v.t[closed - 1] < st.last_t then
    C.vx_ta_reset(st.s)
    st.n, st.last_t, j = 0, -math.huge, 0
  end
  local feed, s = st.feed, st.s
  for i = j, closed - 1 do append(st, feed(s, v, i, 1)) end
  if closed > 0 then st.last_t = v.t[closed - 1] end
  local n = st.n
  if closed < len then -- the forming candle: peeked, not kept
    local outs = st.outs
    outs[1][n] = feed(s, v, len - 1, 0)
    for k = 2, #outs do outs[k][n] = s.out[k - 1] end
    n = n + 1
  end
  -- the same series objects every call, pointed at the window now: a
  -- caller that kept last cycle's sees this cycle's values
  local from = math.max(0, n - M.STREAM_KEEP)
  local series = st.series
  if not series then
    series = {}
    for k = 1, #spec.outputs do series[k] = new_series(st.outs[k], 0, st.outs[k]) end
    st.series = series
    if #spec.outputs > 1 then
      st.result = {}
      for k, oname in ipairs(spec.outputs) do st.result[oname] = series[k] end
    end
  end
  for k = 1, #series do
    local sk = series[k]
    sk.p, sk.n = st.outs[k] + from, n - from
  end
  if #spec.outputs == 1 then return series[1] end
  return st.result
end

--- The helper LLM prompts use: the last n values of a series (or list),
--- oldest first, rounded to `decimals`, warm-up NaNs dropped.
---@param x cdata|number[] a series or list
---@param n integer how many
---@param decimals integer|nil rounding
---@return number[] values oldest first
function M.last(x, n, decimals)
  if not ffi.istype(series_t, x) then x = M.series(x) end
  return x:last(n, decimals)
end

return M
