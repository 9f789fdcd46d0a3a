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

-- A series is a cdata {p, n, cap}: 1-based indexing, #s, methods.
--
-- A series the library allocates (ta.series, an indicator's output) owns a
-- double[] from a pool: cap is its capacity, the buffer is kept alive by
-- `owned` (address -> buffer) and goes back to the pool, not to the
-- allocator, once the series is collected. A pooled buffer is handed out
-- again without zeroing it (every kernel writes each output element), so a
-- fresh output costs neither the zero fill nor, for long series, the page
-- faults of new memory. Collected series are found without finalizers (a
-- finalizer per series cost more than the zero fill it saves): `holder`
-- maps each buffer to its series with weak values, and after a collection
-- the buffers whose series are gone return to the pool. A view (sub, a
-- candle column) has cap 0 and keeps what owns its memory alive through the
-- weak-keyed `keep`.
local keep = setmetatable({}, {__mode = "k"})
local Series = {}
local series_t

local function new_series(ptr, n, owner)
  local s = series_t(ptr, n, 0)
  keep[s] = owner
  return s
end

-- size classes: powers of two in quarter steps (at most 25 % unused), so a
-- series that grows by a bar per cycle keeps hitting the same class
local function class_of(n)
  if n <= 64 then return 64 end
  local e = math.floor(math.log(n - 1) / math.log(2))   -- 2^e < n <= 2^(e+1)
  local q = 2 ^ (e - 2)
  return math.ceil(n / q) * q
end

-- How much the pool holds and how often it looks for garbage adapt to what
-- a collection costs here: a collection per `step` bytes handed out, step
-- sized so that collections take about 3 % of the time the kernels spend
-- writing those bytes (at least 1 ns per value: 8 MB ~ 1 ms), between 8 and
-- 64 MB. Outputs under SMALL_BYTES keep to an 8 MB step whatever a
-- collection costs: a fresh output is then written to memory the cache
-- still holds (measured on 4,000 bars: 64 MB of buffers in turn made a
-- fresh SMA 3.7 us slower than a reused output, 8 MB 1.0 us).
local MB = 1024 * 1024
local STEP_MIN, STEP_MAX = 8 * MB, 64 * MB
local SMALL_BYTES = 256 * 1024
local pool = {bytes = 0, outstanding = 0, step = STEP_MIN, hits = 0, misses = 0, collects = 0,
              epoch = 0}
pool.gc_at = pool.step
local free_lists = {}   -- class -> stack of buffers (double[class + PAD], or a mapping)
local last_taken = {}   -- class -> the epoch (forced collection count) it was last taken in
local owned = {}        -- series address (s.p) -> its buffer, while a series may own it
local cap_of = {}       -- series address -> its buffer's class (owned's buffers)
local holder = setmetatable({}, {__mode = "v"})   -- series address -> its series, weakly
local addr_t = ffi.typeof("uintptr_t")

local function address(p) return tonumber(cast(addr_t, p)) end

-- A buffer is PAD doubles longer than its class and its series starts at
-- the first 64-byte boundary in it: a kernel's vector loads and stores then
-- never straddle two cache lines (LuaJIT's large arrays start 8 bytes past
-- a 16-byte boundary, so half the 32-byte accesses did), and the same bars
-- sit at the same place in every line for every series.
local PAD = 8
-- From this size up a buffer is a mapping of its own on huge pages
-- (vx_ta_alloc), already aligned; below it, a LuaJIT array.
local HUGE_BYTES = 2 * 1024 * 1024
local function aligned(buf)
  local a = address(buf)
  return cast(dptr_t, buf) + ((64 - a % 64) % 64) / 8
end

-- a buffer of class cap back to the pool (or to the collector when the
-- pool is full)
local function give_back(buf, cap)
  pool.outstanding = pool.outstanding - 8 * cap
  if pool.bytes + 8 * cap <= 2 * pool.step then
    local list = free_lists[cap]
    if not list then list = {}; free_lists[cap] = list end
    list[#list + 1] = buf
    pool.bytes = pool.bytes + 8 * cap
  end
end

-- the buffers of series the last collection took
local function reclaim()
  for a, buf in pairs(owned) do
    if holder[a] == nil then
      owned[a] = nil
      give_back(buf, cap_of[a])
      cap_of[a] = nil
    end
  end
end

-- Drop the pooled buffers of sizes not asked for since the last collection
-- (a one-off long computation does not keep its memory).
local function trim(keep_epoch)
  for cap, list in pairs(free_lists) do
    if (last_taken[cap] or -1) < keep_epoch then
      pool.bytes = pool.bytes - 8 * cap * #list
      free_lists[cap] = nil
    end
  end
end

-- A collection that returns garbage series' buffers, timed to size the step.
local function collect()
  local t0 = os.clock()   -- CPU time: what the collection costs, not what else ran
  collectgarbage()
  reclaim()
  local dt = os.clock() - t0
  pool.collects = pool.collects + 1
  pool.epoch = pool.epoch + 1
  trim(pool.epoch - 1)
  -- 3 % of kernel time at 8 bytes per ns: step = dt / 0.03 * 8e9 bytes
  pool.step = math.min(STEP_MAX, math.max(STEP_MIN, dt / 0.03 * 8e9))
  pool.gc_at = pool.outstanding + pool.step
end

-- A buffer of class cap: from the pool, else new. A series that became
-- garbage returns its buffer only when the collector finds it, and the
-- collector does not know what a buffer is worth (it sees a small cdata), so
-- when the pool has none and `step` more bytes are out than after the last
-- collection, a collection runs first and brings the garbage ones back.
local function take_buffer(cap)
  local list = free_lists[cap]
  local k = list and #list or 0
  local step_left = pool.gc_at - pool.outstanding
  if 8 * cap < SMALL_BYTES and pool.step > STEP_MIN then step_left = step_left - (pool.step - STEP_MIN) end
  if k == 0 and 8 * cap > step_left then
    collect()
    list = free_lists[cap]
    k = list and #list or 0
  end
  last_taken[cap] = pool.epoch
  pool.outstanding = pool.outstanding + 8 * cap
  if k > 0 then
    local buf = list[k]
    list[k] = nil
    pool.bytes = pool.bytes - 8 * cap
    pool.hits = pool.hits + 1
    return buf
  end
  pool.misses = pool.misses + 1
  if 8 * cap < HUGE_BYTES then return dbl(cap + PAD) end
  local p = C.vx_ta_alloc(cap)
  if p == nil then error(("ta: out of memory for a series of %d values"):format(cap), 3) end
  return ffi.gc(p, C.vx_ta_free)
end

-- buffers are found by their series' address (s.p, inside buf)
local function own(buf, s)
  local a = address(s.p)
  owned[a], holder[a], cap_of[a] = buf, s, tonumber(s.cap)
  return s
end

local function alloc_series(n)
  local cap = class_of(n)
  local buf = take_buffer(cap)
  return own(buf, series_t(aligned(buf), n, cap))
end

-- s as an output of n values: grown (a new pooled buffer; the old one goes
-- back) when it owns less; a view cannot grow
local function fit(s, n, who)
  if s.cap >= n then s.n = n return s end
  if s.cap == 0 then
    if s.n >= n then s.n = n return s end
    error(("%s: out is a view of %d values and cannot hold %d; pass a series made by ta.series or an indicator"):format(who, tonumber(s.n), n), 4)
  end
  local cap = class_of(n)
  local buf = take_buffer(cap)
  local old = address(s.p)
  if owned[old] then
    give_back(owned[old], tonumber(s.cap))
    owned[old], holder[old], cap_of[old] = nil, nil, nil
  end
  s.p, s.n, s.cap = aligned(buf), n, cap
  own(buf, s)
  return s
end

--- What the output pool holds and has done: {bytes, outstanding, hits,
--- misses, collects, step}.
function M.pool_stats()
  return {bytes = pool.bytes, outstanding = pool.outstanding, hits = pool.hits,
          misses = pool.misses, collects = pool.collects, step = pool.step}
end

--- Give the pooled buffers back (they are reused by the next calls otherwise).
function M.pool_trim() trim(math.huge) end

--- A series from a Lua list of numbers (copied), or n zeros.
---@param src number[]|integer a list to copy, or a length
---@return cdata series
function M.series(src)
  if type(src) == "number" then
    local s = alloc_series(src)
    ffi.fill(s.p, 8 * src)
    return s
  end
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

-- Scratch for a batch call: input and output pointers, parameters. A batch
-- call runs to its end without yielding or calling back into Lua, so one set
-- per Lua state serves every call.
local ins = ffi.new("const double *[5]")
local outp = ffi.new("double *[4]")
local pbuf = ffi.new("double[4]")
local istype = ffi.istype

-- Parameters: positional numbers, then optionally one table of options (named
-- parameters, out = where to write); defaults fill in. Writes them to p and
-- returns the options table.
local function read_params(spec, p, level, first, ...)
  local nargs, np = select("#", ...), #spec.params
  while nargs > 0 and (select(nargs, ...)) == nil do nargs = nargs - 1 end   -- trailing nils: absent
  local opts, npos = nil, 0
  for i = first, nargs do
    local v = select(i, ...)
    if type(v) == "table" and not istype(series_t, v) then
      if i ~= nargs then
        error(("ta.%s: the options table must be the last argument"):format(spec.name), level)
      end
      opts = v
    elseif v ~= nil then
      if i - first >= np then
        error(("ta.%s: too many arguments (parameters: %s)"):format(spec.name, table.concat(spec.params, ", ")), level)
      end
      npos = i - first + 1
    end
  end
  for i = 1, np do
    local v
    if i <= npos then v = (select(first + i - 1, ...)) end
    if v == nil and opts then v = opts[spec.params[i]] end
    if v == nil then v = spec.defaults[i] end
    if type(v) ~= "number" then
      error(("ta.%s: %s must be a number, got %s"):format(spec.name, spec.params[i], type(v)), level)
    end
    p[i - 1] = v
  end
  return opts
end

-- An input as a series (a list of numbers is copied into one).
local function input_series(x, what, spec)
  if istype(series_t, x) then return x end
  if type(x) == "table" then return M.series(x) end
  error(("ta.%s: %s must be a series or a list of numbers, got %s"):format(spec.name, what, type(x)), 3)
end

-- bars: a candle series, or a table with high/low/close/volume/time fields
local function bar_field(bars, name)
  if name == "time" then return bars.time or bars.t end
  return bars[name] or bars[name:sub(1, 1)]
end

local function is_bars(x)
  return type(x) == "table" and (x.close ~= nil or x.c ~= nil or x.is_candles)
end

-- The outputs of a call over n values, their pointers in outp: `out` (a
-- series, or for several outputs a table of series by name such as an
-- earlier result) reused and grown if needed, else new pooled series.
local function outputs(spec, n, out)
  local names = spec.outputs
  if #names == 1 then
    local s
    if out == nil then
      s = alloc_series(n)
    elseif istype(series_t, out) then
      s = fit(out, n, "ta." .. spec.name)
    else
      error(("ta.%s: out must be a series, got %s"):format(spec.name, type(out)), 3)
    end
    outp[0] = s.p
    return s
  end
  local res = out
  if res == nil then
    res = {}
  elseif type(res) ~= "table" or istype(series_t, res) then
    error(("ta.%s: out must be a table of series by output name (%s), got %s")
      :format(spec.name, table.concat(names, ", "), type(res)), 3)
  end
  for k = 1, #names do
    local s = res[names[k]]
    if s == nil then
      s = alloc_series(n)
      res[names[k]] = s
    elseif istype(series_t, s) then
      fit(s, n, "ta." .. spec.name)
    else
      error(("ta.%s: out.%s must be a series, got %s"):format(spec.name, names[k], type(s)), 3)
    end
    outp[k - 1] = s.p
  end
  return res
end

local holding   -- the inputs of the call in progress

-- The general call: inputs as series, lists or a bars table / candle
-- series; parameters positional or named; out.
local function run(spec, ...)
  local bars = ...
  local from_bars = is_bars(bars)
  if from_bars and bars.is_candles then bars = bars:view() end
  local held, n = {}, nil   -- inputs converted from lists: kept alive (by `holding`) until the call returns
  for i, name in ipairs(spec.inputs) do
    local x
    if from_bars then x = bar_field(bars, name) else x = (select(i, ...)) end
    if x == nil then
      error(("ta.%s: missing input %s (inputs: %s)"):format(spec.name, name,
        table.concat(spec.inputs, ", ")), 2)
    end
    local s = input_series(x, name, spec)
    held[i] = s
    local len = tonumber(s.n)
    if n and len ~= n then
      return nil, ("ta.%s: input %s has %d values but %s has %d; all inputs must be the same length")
        :format(spec.name, name, len, spec.inputs[1], n)
    end
    n = n or len
    ins[SLOT[name]] = s.p
  end
  holding = held
  local opts = read_params(spec, pbuf, 3, from_bars and 2 or #spec.inputs + 1, ...)
  local res = outputs(spec, n, opts and opts.out)
  local rc = C.vx_ta_batch(spec.kind, pbuf, n, ins, outp, errbuf, 256)
  holding = nil
  if rc ~= 0 then return nil, ffi.string(errbuf) end
  return res
end

-- The common call made fast: every input a series of the same length,
-- parameters numbers (or nil), at most an options table last. Generated
-- per indicator so that it is straight-line code the JIT compiles whole;
-- anything else goes the general way.
local function fast_call(spec)
  local nin, np, nout = #spec.inputs, #spec.params, #spec.outputs
  local args, checks, lines = {}, {}, {}
  for i = 1, nin + np + 1 do args[i] = "a" .. i end
  local optv = "a" .. (nin + np + 1)
  for i = 1, nin do
    checks[#checks + 1] = ("istype(series_t, a%d)"):format(i)
    if i > 1 then checks[#checks + 1] = ("a%d.n == a1.n"):format(i) end
    lines[#lines + 1] = ("ins[%d] = a%d.p"):format(SLOT[spec.inputs[i]], i)
  end
  checks[#checks + 1] = ("(%s == nil or (type(%s) == 'table' and not istype(series_t, %s)))"):format(optv, optv, optv)
  for i = 1, np do
    local a = "a" .. (nin + i)
    lines[#lines + 1] = ("local p%d = %s if p%d == nil and %s then p%d = %s[%q] end if p%d == nil then p%d = %.17g end if type(p%d) ~= 'number' then return run(S, %s, ...) end pbuf[%d] = p%d")
      :format(i, a, i, optv, i, optv, spec.params[i], i, i, spec.defaults[i], i, table.concat(args, ", "), i - 1, i)
    checks[#checks + 1] = ("(%s == nil or type(%s) == 'number')"):format(a, a)
  end
  local src = {
    "local S, run, istype, series_t, ins, outp, pbuf, C, ffi, errbuf, outputs = ...",
    ("return function(%s, ...)"):format(table.concat(args, ", ")),
    ("  if select('#', ...) > 0 or not (%s) then return run(S, %s, ...) end"):format(table.concat(checks, " and "), table.concat(args, ", ")),
    "  " .. table.concat(lines, "\n  "),
    ("  local o = %s and %s.out"):format(optv, optv),
    nout == 1 and "  local res if o == nil then res = outputs(S, tonumber(a1.n)) else res = outputs(S, tonumber(a1.n), o) end"
      or "  local res = outputs(S, tonumber(a1.n), o)",
    ("  if C.vx_ta_batch(%d, pbuf, a1.n, ins, outp, errbuf, 256) ~= 0 then return nil, ffi.string(errbuf) end"):format(spec.kind),
    "  return res",
    "end",
  }
  return assert(loadstring(table.concat(src, "\n"), "=ta." .. spec.name))(
    spec, run, istype, series_t, ins, outp, pbuf, C, ffi, errbuf, outputs)
end

--- Lookback (first valid index, 0-based) of an indicator with its params.
---@param name string the indicator
---@param ... number its parameters
---@return integer lookback
function M.lookback(name, ...)
  local spec = BY_NAME[name] or error("ta.lookback: no indicator named " .. tostring(name), 2)
  read_params(spec, pbuf, 3, 1, ...)
  local lb = C.vx_ta_lookback(spec.kind, pbuf, errbuf, 256)
  if lb < 0 then return nil, ffi.string(errbuf) end
  return lb
end

for name, spec in pairs(BY_NAME) do
  local f = fast_call(spec)
  M[name] = f
  if spec.single then Series[name] = f end
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
    read_params(spec, pbuf, 3, 1, ...)
    local s = C.vx_ta_stream_new(spec.kind, pbuf, errbuf, 256)
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

local COLUMN_OF = {high = "h", low = "l", close = "c", volume = "v", time = "t"}

-- The node of per-(series, indicator, parameters) state under root: by the
-- series, then the name, then each parameter in turn (no key string to
-- build per call). nil when a parameter is a table (an options table: such
-- calls are not cached).
local function params_node(root, self, name, ...)
  local node = root[self]
  if not node then node = {}; root[self] = node end
  local by = node[name]
  if not by then by = {}; node[name] = by end
  for i = 1, select("#", ...) do
    local p = select(i, ...)
    if p == nil then p = false elseif type(p) == "table" then return nil end
    local nxt = by[p]
    if not nxt then nxt = {}; by[p] = nxt end
    by = nxt
  end
  return by
end

-- The columns indicator methods read, as series refreshed at each call.
-- Internal: never handed out (a caller's own c.close keeps its length).
local function method_bars(self)
  local v, mb = view(self), self.mbars
  if not mb then
    mb = {}
    for name in pairs(COLUMN_OF) do mb[name] = series_t(nil, 0, 0) end
    self.mbars = mb
  end
  local n = v.len
  mb.high.p, mb.high.n = cast(dptr_t, v.h), n
  mb.low.p, mb.low.n = cast(dptr_t, v.l), n
  mb.close.p, mb.close.n = cast(dptr_t, v.c), n
  mb.volume.p, mb.volume.n = cast(dptr_t, v.v), n
  mb.time.p, mb.time.n = cast(dptr_t, v.t), n
  return mb, tonumber(n)
end

-- Per candle series, indicator and parameters: the output of the last call,
-- written over by the next (so a method called every cycle allocates once).
local method_state = setmetatable({}, {__mode = "k"})

--- candles:NAME(params...): the indicator over this series' candles. The
--- result is the same series (or table of series) at every call with the
--- same parameters, rewritten with this call's values; keep a copy
--- (s:copy()) to hold on to earlier values, or pass {out = s}.
for name, spec in pairs(BY_NAME) do
  Candles[name] = function(self, ...)
    local mb, n = method_bars(self)
    local opts = read_params(spec, pbuf, 3, 1, ...)
    local by = not opts and params_node(method_state, self, name, ...)
    local out = opts and opts.out
    if by then out = by[true] end
    for i = 1, #spec.inputs do
      local col = mb[spec.inputs[i]]
      ins[SLOT[spec.inputs[i]]] = col.p
    end
    local res = outputs(spec, n, out)
    if by then by[true] = res end
    if C.vx_ta_batch(spec.kind, pbuf, n, ins, outp, errbuf, 256) ~= 0 then
      return nil, ffi.string(errbuf)
    end
    return res
  end
end

-- ---- indicators kept up to date (streams over a candle series) -------------

-- Per candle series and indicator: the stream, the open time of the last
-- candle it committed, and its outputs of the last STREAM_KEEP candles.
local stream_state = setmetatable({}, {__mode = "k"})
M.STREAM_KEEP = 64


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
  local by = params_node(stream_state, self, name, ...)
  if not by then error("stream: parameters are numbers (no options table)", 2) end
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
