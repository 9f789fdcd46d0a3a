--- Indicator throughput for `make bench`: every indicator on 10,000,000 bars
--- and on 4,000 bars, beside a plain streaming copy measured in the same run,
--- plus the cost of one streaming update called from Lua.
local ffi = require "ffi"
local ta = require "vibex.ta"

local C = ffi.C
local M = {}

-- Every array here is a series' memory, as the Lua API's are (64-byte
-- aligned; from 2 MB up on huge pages): the copy baseline included.
local held = {}
local function column(n)
  local s = ta.series(n)
  held[#held + 1] = s
  return s.p
end

-- a seeded random walk, as five C columns (high, low, close, volume, time)
local function make_bars(n)
  local cols = {}
  for k = 0, 4 do cols[k] = column(n) end
  local state, price = 42, 100
  for i = 0, n - 1 do
    state = (state * 1103515245 + 12345) % 2147483648
    local r = state / 2147483648
    price = price * (1 + (r - 0.5) * 0.01)
    cols[0][i] = price * 1.002
    cols[1][i] = price * 0.998
    cols[2][i] = price
    cols[3][i] = 100 + r * 50
    cols[4][i] = i * 60000
  end
  return cols
end

-- the 4,000-bar set: real ETH/BTC 1m candles when ../shared/data is there
local function real_bars(n)
  local f = io.open("../shared/data/ETH_BTC-1m.json")
  if not f then return nil end
  local rows = require("vibex.json").decode(f:read("*a"))
  f:close()
  if #rows < n then return nil end
  local cols = {}
  for k = 0, 4 do cols[k] = column(n) end
  for i = 1, n do
    local r = rows[i]
    cols[0][i - 1], cols[1][i - 1], cols[2][i - 1] = r[3], r[4], r[5]
    cols[3][i - 1], cols[4][i - 1] = r[6], r[1]
  end
  return cols
end

-- The issue names ADX, the Stochastic and SuperTrend as the multi-pass
-- indicators. StochRSI is the Stochastic applied to an RSI: the fast %K of
-- the RSI's extremes, then an SMA of it, after the RSI's own pass. It cannot
-- be faster than either, so it takes the Stochastic's floor.
local MULTI = {adx = true, stoch = true, supertrend = true, stochrsi = true}

-- the indicators held to 1.5x of the copy's time on 10M bars
local NEAR_COPY = {sma = true, ema = true, obv = true}

local function floor_for(name)
  if name == "cci" then return 30e6 end
  if MULTI[name] then return 100e6 end
  return 250e6
end

--- row, fmt and best are run.lua's printing and timing helpers.
function M.run(row, fmt, best, quick)
  local big = quick and 1000000 or 10000000
  local small = 4000
  local bars = make_bars(big)
  local real = real_bars(small)
  local sbars = real or make_bars(small)
  local out = {}
  for k = 0, 3 do out[k] = column(big) end
  local outp = ffi.new("double *[4]", out[0], out[1], out[2], out[3])
  local err = ffi.new("char[256]")

  -- baselines: memcpy and a plain element loop, one array in, one out
  local src, dst = bars[2], out[0]
  local t_memcpy = best(5, function() ffi.copy(dst, src, 8 * big) end)
  local function copy_loop() for i = 0, big - 1 do dst[i] = src[i] end end
  local t_loop = best(5, copy_loop)
  local copy_rate = big / t_loop
  row(("streaming copy, %s doubles (plain loop)"):format(fmt(big)), fmt(copy_rate), "elem/s",
      ("%.1f GB/s read+write; memcpy %s elem/s"):format(copy_rate * 16 / 1e9, fmt(big / t_memcpy)))
  local scopy = best(5, function()
    for _ = 1, 200 do ffi.copy(out[1], sbars[2], 8 * small) end
  end)
  local small_copy = small * 200 / scopy
  row("streaming copy, 4,000 doubles (memcpy, in cache)", fmt(small_copy), "elem/s")

  local names, kind_of = {}, {}
  local nkinds = ffi.new("int[1]")
  local info = C.vx_ta_kinds(nkinds)
  for k = 0, nkinds[0] - 1 do kind_of[ffi.string(info[k].name)] = k end
  for name in pairs(ta.indicators()) do names[#names + 1] = name end
  table.sort(names)
  local missed = {}
  local runs = {}   -- per indicator: its batch call on 4,000 bars, the 10M figures, its best 4k time
  for _, name in ipairs(names) do
    local spec = ta.indicators()[name]
    local kind = kind_of[name]
    local p = ffi.new("double[4]", spec.defaults[1] or 0, spec.defaults[2] or 0, spec.defaults[3] or 0)
    local ins = ffi.new("const double *[5]", bars[0], bars[1], bars[2], bars[3], bars[4])
    local sins = ffi.new("const double *[5]", sbars[0], sbars[1], sbars[2], sbars[3], sbars[4])
    local function run_big()
      assert(C.vx_ta_batch(kind, p, big, ins, outp, err, 256) == 0, ffi.string(err))
    end
    local t_big, t_copy = math.huge, 1 / copy_rate * big
    if NEAR_COPY[name] then
      -- the 1.5x targets: the copy and the indicator in turns, best of each,
      -- so that both see the same minute of a shared machine
      t_copy = math.huge
      for _ = 1, quick and 1 or 4 do
        t_copy = math.min(t_copy, best(1, copy_loop))
        t_big = math.min(t_big, best(1, run_big))
      end
    else
      t_big = best(quick and 1 or 3, run_big)
    end
    runs[#runs + 1] = {name = name, t_big = t_big, t_copy = t_copy, t_small = math.huge,
      small = function() assert(C.vx_ta_batch(kind, p, small, sins, outp, err, 256) == 0) end}
  end
  -- 4,000 bars: 15 rounds, each timing one sample (about 8 ms) of every
  -- indicator in turn, best of the 15 per indicator. On a shared VM a slow
  -- spell lasts seconds; in rounds it costs each indicator a sample or two,
  -- where 15 samples in a row could all fall inside it.
  local reps = quick and 100 or 500
  for _ = 1, 15 do
    for _, r in ipairs(runs) do
      r.t_small = math.min(r.t_small, best(1, function() for _ = 1, reps do r.small() end end))
    end
  end
  for _, r in ipairs(runs) do
    local name = r.name
    local rate_big, rate_small = big / r.t_big, small * reps / r.t_small
    local ratio = r.t_big / r.t_copy
    local fl = floor_for(name)
    local notes = {}
    notes[#notes + 1] = ("%.2fx copy time"):format(ratio)
    if NEAR_COPY[name] then
      notes[#notes + 1] = ratio <= 1.5 and "(<= 1.5x: ok)" or "(> 1.5x: MISSED)"
      if ratio > 1.5 then missed[#missed + 1] = name .. " 10M" end
    end
    notes[#notes + 1] = ("4k: %s/s (floor %s: %s)"):format(fmt(rate_small), fmt(fl), rate_small >= fl and "ok" or "MISSED")
    if rate_small < fl then missed[#missed + 1] = name .. " 4k" end
    row(("ta.%s, %s bars"):format(name, fmt(big)), fmt(rate_big), "bars/s",
        table.concat(notes, " "))
  end

  -- one streaming update from Lua: the method call and the bare FFI call
  local n = quick and 1000000 or 20000000
  local s = assert(ta.stream.ema(20))
  local t_push = best(3, function() for i = 1, n do s:push(100 + (i % 7)) end end)
  local t_ffi = best(3, function() for i = 1, n do C.vx_ta_update(s, 0, 0, 100 + (i % 7), 0, 0, 1) end end)
  local t_plain = best(3, function() local acc = 0 for i = 1, n do acc = acc + (i % 7) end return acc end)
  local per = t_push / n * 1e9
  row("stream update from Lua (ema:push)", ("%.1f"):format(per), "ns",
      ("bare FFI %.1f ns; plain Lua loop step %.2f ns (target < 20 ns: %s)"):format(
        t_ffi / n * 1e9, t_plain / n * 1e9, per < 20 and "ok" or "MISSED"))
  local a = assert(ta.stream.atr(14))
  local t_bar = best(3, function()
    for i = 1, n do local x = 100 + (i % 7) a:push(x + 1, x - 1, x) end
  end)
  row("stream update from Lua (atr:push h,l,c)", ("%.1f"):format(t_bar / n * 1e9), "ns")
  if #missed > 0 then row("indicator targets missed", table.concat(missed, ", "), "") end
  row("4,000-bar set", real and "ETH/BTC 1m (real)" or "random walk", "")
  row("indicator SIMD paths", ta.isa(), "")
  for k in pairs(held) do held[k] = nil end
end

return M
