--- The indicators as users call them, beside TA-Lib's C functions built from
--- their published source (`make bench-deps` fetches it; `make bench` builds
--- it into $BUILD/bench/libta_lib.so and passes the path in VIBEX_TALIB).
---
--- For each of the ten indicators, on 4,000 bars (real ETH/BTC 1m candles
--- when ../shared/data is there) and on 1,000,000 bars (a random walk):
---   TA-Lib     its C function, output preallocated (as its API requires)
---   kernel     vx_ta_batch with a preallocated output (no Lua)
--- (both outputs are series from ta.series, the memory a user's are in)
---   lua        ta.NAME(x, ...): a fresh output series per call, as the
---              README shows (outputs come from the pool, unzeroed)
---   lua out=   ta.NAME(x, ..., {out = s}): the caller's series reused
--- Targets, like for like (TA-Lib's C API writes into a buffer the caller
--- keeps): lua out= >= 1.5x TA-Lib's speed, and within 1.2x of the kernel's
--- time. A fresh output per call is printed beside them: its values are
--- written to memory the cache no longer holds (the pool hands out the
--- buffers of earlier results, found by the collector a few MB later), which
--- on 4,000 bars costs about 1 us a call.
--- Every vibex value is checked against TA-Lib's (1e-9 relative, from
--- TA-Lib's first output on) over a random walk at prices near 100. On the
--- real ETH/BTC candles (prices near 0.05) the difference is printed but not
--- held to that: TA-Lib takes a variance below 1e-8 as zero (BBANDS, and
--- CCI's mean deviation the same way), which at those prices zeroes real
--- bands; vibex tests for exact zero (see runtime/ta.c).
local ffi = require "ffi"
local ta = require "vibex.ta"

local C = ffi.C
local M = {}

ffi.cdef [[
int TA_SMA(int, int, const double *, int, int *, int *, double *);
int TA_EMA(int, int, const double *, int, int *, int *, double *);
int TA_RSI(int, int, const double *, int, int *, int *, double *);
int TA_MACD(int, int, const double *, int, int, int, int *, int *, double *, double *, double *);
int TA_BBANDS(int, int, const double *, int, double, double, int, int *, int *, double *, double *, double *);
int TA_ATR(int, int, const double *, const double *, const double *, int, int *, int *, double *);
int TA_ADX(int, int, const double *, const double *, const double *, int, int *, int *, double *);
int TA_PLUS_DI(int, int, const double *, const double *, const double *, int, int *, int *, double *);
int TA_MINUS_DI(int, int, const double *, const double *, const double *, int, int *, int *, double *);
int TA_STOCH(int, int, const double *, const double *, const double *, int, int, int, int, int, int *, int *, double *, double *);
int TA_CCI(int, int, const double *, const double *, const double *, int, int *, int *, double *);
int TA_OBV(int, int, const double *, const double *, int *, int *, double *);
]]

-- name, vibex params, TA-Lib call (lib, n, cols, beg, nb, outs)
local CASES = {
  {"sma", {30}, function(L, n, c, b, nb, o) return L.TA_SMA(0, n - 1, c.close, 30, b, nb, o[1]) end},
  {"ema", {30}, function(L, n, c, b, nb, o) return L.TA_EMA(0, n - 1, c.close, 30, b, nb, o[1]) end},
  {"rsi", {14}, function(L, n, c, b, nb, o) return L.TA_RSI(0, n - 1, c.close, 14, b, nb, o[1]) end},
  {"macd", {12, 26, 9}, function(L, n, c, b, nb, o)
    return L.TA_MACD(0, n - 1, c.close, 12, 26, 9, b, nb, o[1], o[2], o[3]) end},
  {"bbands", {5, 2, 2}, function(L, n, c, b, nb, o)
    return L.TA_BBANDS(0, n - 1, c.close, 5, 2, 2, 0, b, nb, o[1], o[2], o[3]) end},
  {"atr", {14}, function(L, n, c, b, nb, o) return L.TA_ATR(0, n - 1, c.high, c.low, c.close, 14, b, nb, o[1]) end},
  {"adx", {14}, function(L, n, c, b, nb, o) return L.TA_ADX(0, n - 1, c.high, c.low, c.close, 14, b, nb, o[1]) end},
  {"stoch", {5, 3, 3}, function(L, n, c, b, nb, o)
    return L.TA_STOCH(0, n - 1, c.high, c.low, c.close, 5, 3, 0, 3, 0, b, nb, o[1], o[2]) end},
  {"cci", {14}, function(L, n, c, b, nb, o) return L.TA_CCI(0, n - 1, c.high, c.low, c.close, 14, b, nb, o[1]) end},
  {"obv", {}, function(L, n, c, b, nb, o) return L.TA_OBV(0, n - 1, c.close, c.volume, b, nb, o[1]) end},
}
-- ADX's other two outputs, compared to TA-Lib's separate functions
local ADX_DI = {
  plus_di = function(L, n, c, b, nb, o) return L.TA_PLUS_DI(0, n - 1, c.high, c.low, c.close, 14, b, nb, o) end,
  minus_di = function(L, n, c, b, nb, o) return L.TA_MINUS_DI(0, n - 1, c.high, c.low, c.close, 14, b, nb, o) end,
}

-- a seeded random walk as series (high, low, close, volume), pulled back
-- toward 100 so that a million steps stay at prices a market has
local function walk(n)
  local cols = {high = ta.series(n), low = ta.series(n), close = ta.series(n), volume = ta.series(n)}
  local state, price = 42, 100
  for i = 0, n - 1 do
    state = (state * 1103515245 + 12345) % 2147483648
    local r = state / 2147483648
    price = price * (1 + (r - 0.5) * 0.01) + (100 - price) * 0.001
    cols.high.p[i], cols.low.p[i], cols.close.p[i] = price * 1.002, price * 0.998, price
    cols.volume.p[i] = 100 + r * 50
  end
  return cols
end

local function real(n)
  local f = io.open("../shared/data/ETH_BTC-1m.json")
  if not f then return nil end
  local rows = require("vibex.json").decode(f:read("*a"))
  f:close()
  if #rows < n then return nil end
  local cols = {high = ta.series(n), low = ta.series(n), close = ta.series(n), volume = ta.series(n)}
  for i = 1, n do
    local r = rows[i]
    cols.high.p[i - 1], cols.low.p[i - 1], cols.close.p[i - 1], cols.volume.p[i - 1] = r[3], r[4], r[5], r[6]
  end
  return cols
end

-- A loop calling f with these arguments as a user's code would: the
-- arguments as upvalues of a compiled loop, not unpacked from a table.
local function caller(f, reps, args, nargs)
  local names = {}
  for i = 1, nargs do names[i] = "a" .. i end
  local src = ("local f, reps, %s = ... return function() for _ = 1, reps do f(%s) end end")
    :format(table.concat(names, ", "), table.concat(names, ", "))
  return assert(loadstring(src, "=bench.call"))(f, reps, unpack(args, 1, nargs))
end

-- the arguments of the Lua call: the inputs, then the parameters
local function lua_args(name, cols, params)
  local spec = ta.indicators()[name]
  local args = {}
  for _, input in ipairs(spec.inputs) do args[#args + 1] = cols[input] end
  for _, p in ipairs(params) do args[#args + 1] = p end
  return args, spec
end

-- largest relative difference of vibex's outputs from TA-Lib's (from
-- TA-Lib's first output; vibex must be NaN before it)
local function raw(cols)
  return {high = cols.high.p, low = cols.low.p, close = cols.close.p, volume = cols.volume.p}
end

local function compare(L, case, series_cols, n, res, spec)
  local cols = raw(series_cols)
  local b, nb = ffi.new("int[1]"), ffi.new("int[1]")
  local outs = {}
  for k = 1, #spec.outputs do outs[k] = ffi.new("double[?]", n) end
  assert(case[3](L, n, cols, b, nb, outs) == 0, "TA-Lib refused " .. case[1])
  local worst = 0
  local function check(ours, theirs, beg, count)
    for i = 0, count - 1 do
      local a, t = ours.p[beg + i], theirs[i]
      local d = math.abs(a - t) / math.max(1, math.abs(t))
      if a ~= a then d = math.huge end
      if d > worst then worst = d end
    end
    for i = 0, beg - 1 do if ours.p[i] == ours.p[i] then worst = math.huge end end
  end
  if spec.outputs[1] and ta.is_series(res) then
    check(res, outs[1], b[0], nb[0])
  else
    local talib_outs = case[1] == "adx" and 1 or #spec.outputs
    for k = 1, talib_outs do check(res[spec.outputs[k]], outs[k], b[0], nb[0]) end
    if case[1] == "adx" then
      for oname, f in pairs(ADX_DI) do
        assert(f(L, n, cols, b, nb, outs[1]) == 0)
        check(res[oname], outs[1], b[0], nb[0])
      end
    end
  end
  return worst
end

-- Bollinger bands against a two-pass mean and variance at every 97th bar:
-- over a million bars TA-Lib's running sum of squares drifts (1e-7 at
-- prices near 100), so there the reference is the definition itself.
local function bbands_two_pass(close, res, n)
  local worst = 0
  for i = 4, n - 1, 97 do
    local m = 0
    for k = i - 4, i do m = m + close.p[k] end
    m = m / 5
    local v = 0
    for k = i - 4, i do v = v + (close.p[k] - m) ^ 2 end
    local ref = m + 2 * math.sqrt(v / 5)
    worst = math.max(worst, math.abs(res.upper.p[i] - ref) / math.max(1, math.abs(ref)))
  end
  return worst
end

function M.run(row, fmt, best, quick)
  local path = os.getenv("VIBEX_TALIB")
  if not path or path == "" then
    row("TA-Lib comparison", "skipped", "", "run `make bench-deps` once (fetches TA-Lib's C source from npm)")
    return
  end
  local L = ffi.load(path)
  local kinds = {}
  local cnt = ffi.new("int[1]")
  local info = C.vx_ta_kinds(cnt)
  for k = 0, cnt[0] - 1 do kinds[ffi.string(info[k].name)] = k end
  local errbuf = ffi.new("char[256]")
  local missed = {}
  local sets = {
    {label = "4k", n = 4000, cols = real(4000) or walk(4000), check = walk(4000), reps = quick and 20 or 100,
     rounds = quick and 5 or 25},
    {label = "1M", n = 1000000, cols = walk(1000000), reps = quick and 1 or 2, rounds = quick and 3 or 20},
  }
  sets[2].check = sets[2].cols
  for _, set in ipairs(sets) do
    local n, cols, reps = set.n, set.cols, set.reps
    local rawcols = raw(cols)
    local runs = {}
    for _, case in ipairs(CASES) do
      local name, params = case[1], case[2]
      local args, spec = lua_args(name, cols, params)
      local f = ta[name]
      local nargs = #args
      -- TA-Lib
      local b, nb = ffi.new("int[1]"), ffi.new("int[1]")
      -- every variant writes into the same kind of memory: series from
      -- ta.series, as a user's (64-byte aligned; huge pages from 2 MB up)
      local held = {}
      local function buffers()
        local list = {}
        for k = 1, #spec.outputs do
          held[#held + 1] = ta.series(n)
          list[k] = held[#held].p
        end
        return list
      end
      local touts = buffers()
      -- the kernel: preallocated outputs, no Lua in the way
      local p = ffi.new("double[4]", params[1] or 0, params[2] or 0, params[3] or 0)
      local ins = ffi.new("const double *[5]", cols.high.p, cols.low.p, cols.close.p, cols.volume.p, nil)
      local kouts = buffers()
      local outp = ffi.new("double *[4]", kouts[1], kouts[2] or nil, kouts[3] or nil)
      local kind = kinds[name]
      -- out=: the caller's series, kept between calls
      local first = f(unpack(args, 1, nargs))
      local keep = {out = first}
      local oargs = {unpack(args, 1, nargs)}
      oargs[nargs + 1] = keep
      local r = {name = name, spec = spec, kouts = kouts, touts = touts, held = held, t = {talib = math.huge, kernel = math.huge, lua = math.huge, out = math.huge}}
      r.fn = {
        talib = function() for _ = 1, reps do case[3](L, n, rawcols, b, nb, touts) end end,
        kernel = function() for _ = 1, reps do
          assert(C.vx_ta_batch(kind, p, n, ins, outp, errbuf, 256) == 0) end end,
        lua = caller(f, reps, args, nargs),
        out = caller(f, reps, oargs, nargs + 1),
      }
      r.worst = compare(L, case, set.check, n, f(unpack((lua_args(name, set.check, params)))), spec)
      if set.check ~= cols then r.real = compare(L, case, cols, n, first, spec) end
      if name == "bbands" and n > 100000 then
        r.talib_diff, r.worst = r.worst, bbands_two_pass(cols.close, first, n)
      end
      runs[#runs + 1] = r
    end
    -- rounds: one sample of each variant of each indicator in turn, best
    -- per variant, so a slow spell of a shared machine hits them alike; the
    -- order of the variants turns by one each round, so each runs as often
    -- after each other one (on a million bars, a variant that follows the
    -- fresh-output one finds its inputs pushed out of the cache by it)
    local variants = {"talib", "kernel", "lua", "out"}
    for round = 1, set.rounds do
      for _, r in ipairs(runs) do
        for k = 0, #variants - 1 do
          local v = variants[(round + k) % #variants + 1]
          r.t[v] = math.min(r.t[v], best(1, r.fn[v]))
        end
      end
    end
    for _, r in ipairs(runs) do
      local t = r.t
      local speed = t.talib / t.out            -- > 1: faster than TA-Lib
      local over = t.out / t.kernel            -- the Lua call's cost over the kernel
      local ok1, ok2, ok3 = speed >= 1.5, over <= 1.2, r.worst <= 1e-9
      if not ok1 then missed[#missed + 1] = ("%s %s vs TA-Lib"):format(r.name, set.label) end
      if not ok2 then missed[#missed + 1] = ("%s %s vs kernel"):format(r.name, set.label) end
      if not ok3 then missed[#missed + 1] = ("%s %s values"):format(r.name, set.label) end
      row(("ta.%s, %s bars, out="):format(r.name, set.label), fmt(set.n * reps / t.out), "bars/s",
        ("%.2fx TA-Lib %s, %.2fx kernel time %s; kernel %.2fx TA-Lib; fresh output %.2fx TA-Lib; max rel diff %.0e%s")
          :format(speed, ok1 and "(>= 1.5: ok)" or "(< 1.5: MISSED)", over, ok2 and "(<= 1.2: ok)" or "(> 1.2: MISSED)",
            t.talib / t.kernel, t.talib / t.lua, r.worst, (ok3 and "" or " (MISMATCH)")
            .. (r.real and (" (%.0e on the real candles)"):format(r.real) or "")
            .. (r.talib_diff and (" from a two-pass reference (TA-Lib's drifts %.0e)"):format(r.talib_diff) or "")))
    end
  end
  local tgc = best(5, function() collectgarbage() end)
  row("a full collection here", ("%.0f"):format(tgc * 1e6), "us", ("Lua heap %.1f MB"):format(collectgarbage("count") / 1024))
  local st = ta.pool_stats()
  row("output pool", ("%d/%d"):format(st.hits, st.hits + st.misses), "hits",
    ("%d forced collections; %.1f MB pooled"):format(st.collects, st.bytes / 1048576))
  if #missed > 0 then row("TA-Lib targets missed", table.concat(missed, ", "), "") end
end

return M
