--- Replay speed of the simulated venue: candles through a rule-based
-- strategy that trades (EMA 12/26 cross, market orders through the full
-- order path: params, filters, the C engine, events), on one symbol and on
-- ten at once. Baseline: the same loop computing the EMAs without a venue.
local ffi = require "ffi"
local exchange = require "vibex.exchange"
local sim = require "vibex.exchange.sim"
local task = require "vibex.task"
local datasets = require "vibex.data"

local M = {}

local function series(n, phase)
  local o, h, l, c = ffi.new("int64_t[?]", n), ffi.new("int64_t[?]", n), ffi.new("int64_t[?]", n), ffi.new("int64_t[?]", n)
  local closes = ffi.new("double[?]", n)
  for i = 0, n - 1 do
    local px = 60000 + 900 * math.sin(i / 300 + phase) + 120 * math.sin(i / 17)
    local p = math.floor(px * 10 + 0.5) / 10
    o[i] = sim.units(("%.1f"):format(p), "p")
    h[i], l[i], c[i] = o[i] + 300000000, o[i] - 300000000, o[i] + 100000000
    closes[i] = p + 1
  end
  return { o = o, h = h, l = l, c = c, closes = closes }
end

local function run(nsym, n)
  local symbols = {}
  for k = 1, nsym do symbols[("S%02dUSDT"):format(k)] = { tick = "0.1", step = "0.001", min_qty = "0.001" } end
  local paper = exchange.sim { balance = 1e9, symbols = symbols, account = "bench" }
  local fills = 0
  paper:user_stream { on_order = function(ev) if ev.o.x == "TRADE" then fills = fills + 1 end end }
  local data, state = {}, {}
  for k = 1, nsym do
    local name = ("S%02dUSDT"):format(k)
    data[k] = series(n, k)
    state[k] = { name = name, idx = paper.index[name], side = 0 }
  end
  local t0 = task.hrtime()
  for i = 0, n - 1 do
    local t = 1700000000000 + i * 60000
    for k = 1, nsym do
      local d, st = data[k], state[k]
      paper:candle_units(st.idx, t, d.o[i], d.h[i], d.l[i], d.c[i], 60000)
      local c = d.closes[i]
      st.fast = st.fast and st.fast + (c - st.fast) * (2 / 13) or c
      st.slow = st.slow and st.slow + (c - st.slow) * (2 / 27) or c
      local side = st.fast > st.slow and 1 or -1
      if side ~= st.side and i > 30 then
        assert(paper:place { symbol = st.name, side = side > 0 and "BUY" or "SELL", type = "MARKET",
                             quantity = st.side == 0 and 0.01 or 0.02, decision = tostring(i), leg = k })
        st.side = side
      end
    end
  end
  local dt = tonumber(task.hrtime() - t0) / 1e9
  return nsym * n / dt, fills
end

function M.run(row, fmt, _, quick)
  local n = quick and 200000 or 1000000
  -- baseline: the strategy's own arithmetic, no venue
  local d = series(n, 1)
  local t0 = task.hrtime()
  local fast, slow, flips, side = nil, nil, 0, 0
  for i = 0, n - 1 do
    local c = d.closes[i]
    fast = fast and fast + (c - fast) * (2 / 13) or c
    slow = slow and slow + (c - slow) * (2 / 27) or c
    local s = fast > slow and 1 or -1
    if s ~= side then flips, side = flips + 1, s end
  end
  local base = n / (tonumber(task.hrtime() - t0) / 1e9)
  local one, f1 = run(1, n)
  local ten, f10 = run(10, math.floor(n / 10))
  row("sim replay, EMA cross on 1 symbol", fmt(one), "candles/s", ("%d fills; target >= 1M/s: %s"):format(
    f1, one >= 1e6 and "ok" or "MISSED"))
  row("sim replay, EMA cross on 10 symbols", fmt(ten), "candles/s", ("%d fills; target >= 1M/s: %s"):format(
    f10, ten >= 1e6 and "ok" or "MISSED"))
  row("  baseline: the EMAs alone, no venue", fmt(base), "candles/s", ("%d crosses"):format(flips))
  -- real data: XRP/USDT perpetual 5m candles and its 8h funding, from ../shared/data when present
  local dir = os.getenv("VIBEX_SHARED_DATA") or "../shared/data"
  local candles = datasets.read_ohlcv(dir .. "/XRP_USDT_USDT-5m-futures.json")
  local funding = datasets.read_ohlcv(dir .. "/XRP_USDT-8h-funding_rate.json", { funding = true })
  if not candles then
    row("sim replay, real XRP/USDT 5m", "-", "", "../shared/data not found: skipped")
    return
  end
  local function real_run()
    local paper = exchange.sim { balance = 10000, symbols = { XRPUSDT = { tick = "0.0001", step = "0.1", min_qty = "0.1" } } }
    local fast, slow, side, orders = nil, nil, 0, 0
    local t0 = task.hrtime()
    paper:replay({ XRPUSDT = candles }, { interval = "5m", funding = { XRPUSDT = funding or {} }, on_candle = function(_, k)
      fast = fast and fast + (k.close - fast) * (2 / 13) or k.close
      slow = slow and slow + (k.close - slow) * (2 / 27) or k.close
      local s = fast > slow and 1 or -1
      if s ~= side then
        assert(paper:place { symbol = "XRPUSDT", side = s > 0 and "BUY" or "SELL", type = "MARKET",
                             quantity = side == 0 and 1000 or 2000, decision = tostring(k.open_time), leg = 1 })
        side, orders = s, orders + 1
      end
    end })
    return #candles / (tonumber(task.hrtime() - t0) / 1e9), orders, paper:balances()[1].balance
  end
  local best_rate, orders, balance = 0, 0, nil
  for _ = 1, 3 do
    local r, o, b = real_run()
    if balance and b ~= balance then error("replay of real data is not deterministic") end
    best_rate, orders, balance = math.max(best_rate, r), o, b
  end
  row("sim replay, real XRP/USDT 5m + funding", fmt(best_rate), "candles/s",
    ("%d candles, %d orders, end balance %s (same in 3 runs)"):format(#candles, orders, balance))
end

return M
