--- `vibex backtest` end to end: the EMA cross (rules, the default context
-- on 3 symbols x 2 intervals) over a year of 5-minute candles with a
-- decision at every candle, as a user runs it (a separate process,
-- --no-db: the report files are written). Figures: decision cycles per
-- second including the report, the process's peak RSS; baseline in the
-- same run: the simulated venue alone on the same candles (no decisions).
local ffi = require "ffi"
local json = require "vibex.json"
local process = require "vibex.process"
local runtime = require "vibex.runtime"
local task = require "vibex.task"
local datasets = require "vibex.data"
local paper = require "vibex.exchange.paper"
local sim = require "vibex.exchange.sim"
local vtime = require "vibex.time"

local M = {}

local SYMBOLS = { "BTCUSDT", "ETHUSDT", "XRPUSDT" }

local function config(dir, candles)
  return ([[return {
  runtime = { log_dir = %q, data_dir = %q, log_level = "error" },
  replay = { interval = "5m", candles = %d, seed = 11, warmup = 150, source = "generated", start = "2025-01-01" },
  strategies = { ["ema-cross"] = { rules = "ema_cross", intervals = { "5m", "1h" },
                                   params = { fast = 12, slow = 26, size_usd = 400, leverage = 2 } } },
  accounts = { { name = "bench", exchange = { venue = "sim" }, symbols = { "BTCUSDT", "ETHUSDT", "XRPUSDT" },
                 decision_interval_s = 300, strategy = "ema-cross", fallback = { policy = "rules" },
                 risk = { max_leverage = 3, max_position_notional = 2000, max_total_notional = 5000,
                          max_orders_per_minute = 100 } } },
}]]):format(dir .. "/logs", dir .. "/data", candles)
end

-- The simulated venue alone on the same candles (engine units, no decisions).
local function sim_alone(n)
  local v = paper.venue { name = "b", symbols = SYMBOLS, paper = { starting_balance = 10000, fee_rate = 0.0004 } }
  local cols = {}
  for k, sym in ipairs(SYMBOLS) do
    local rows = datasets.generate(sym, paper.spec(sym), n, 300000, vtime.date_ms("2025-01-01"), 11)
    local c = { i = v.index[sym], t = ffi.new("int64_t[?]", n), o = ffi.new("int64_t[?]", n), h = ffi.new("int64_t[?]", n),
                l = ffi.new("int64_t[?]", n), c = ffi.new("int64_t[?]", n) }
    for j, r in ipairs(rows) do
      c.t[j - 1] = r.open_time
      c.o[j - 1], c.h[j - 1] = sim.units(r.open, "o"), sim.units(r.high, "h")
      c.l[j - 1], c.c[j - 1] = sim.units(r.low, "l"), sim.units(r.close, "c")
    end
    cols[k] = c
  end
  local best = math.huge
  for _ = 1, 3 do
    local t0 = task.hrtime()
    for j = 0, n - 1 do
      for k = 1, #cols do
        local c = cols[k]
        v:candle_units(c.i, c.t[j], c.o[j], c.h[j], c.l[j], c.c[j], 300000)
      end
    end
    local dt = tonumber(task.hrtime() - t0) / 1e9
    if dt < best then best = dt end
  end
  return #SYMBOLS * n / best
end

function M.run(row, fmt, _, quick)
  local n = quick and 10000 or 105120 -- a year of 5-minute candles
  local dir = ("/tmp/vibex-bench-backtest-%d"):format(runtime.pid())
  process.run("rm", { "-rf", dir })
  assert(runtime.mkdir_p(dir))
  local f = assert(io.open(dir .. "/cfg.lua", "w"))
  f:write(config(dir, n))
  f:close()
  local bin = os.getenv("VIBEX_BIN") or "./vibex"
  local t0 = task.hrtime()
  local p = assert(process.spawn { file = bin, args = { "backtest", dir .. "/cfg.lua", "--no-db", "--json", "--quiet",
                                                        "--out", dir .. "/out" }, stderr = "ignore" })
  local out = p:read_all()
  local code = p:wait()
  local wall = tonumber(task.hrtime() - t0) / 1e9
  local rep = code == 0 and json.decode(out or "")
  if type(rep) ~= "table" then
    row("backtest, EMA cross, a year of 5m x 3 symbols", "-", "", "the backtest failed (exit " .. tostring(code) .. ")")
  else
    local rate = rep.cycles / ((rep.wall_ms_with_report or rep.wall_ms) / 1000)
    row(("backtest, EMA cross, %s of 5m x 3 symbols"):format(quick and "10k candles" or "a year"), fmt(rate), "cycles/s",
        ("%d cycles, decision every candle, 3 symbols x 2 intervals, report included; target >= 10k/s: %s")
          :format(rep.cycles, rate >= 10000 and "ok" or "MISSED"))
    row("  process wall (start, data, run, report)", ("%.1f"):format(wall), "s")
    local steps = {}
    for _, k in ipairs { "market", "account", "context", "validate", "policy", "risk", "execute" } do
      if rep.step_ms and rep.step_ms[k] then steps[#steps + 1] = ("%s %.3f"):format(k, rep.step_ms[k]) end
    end
    row("  per step (mean ms)", "", "", table.concat(steps, ", "))
    row("  peak RSS of the backtest process", ("%.0f"):format(rep.peak_rss_mb or 0), "MB",
        ("target < 100 MB: %s"):format((rep.peak_rss_mb or 1e9) < 100 and "ok" or "MISSED"))
  end
  local srate = sim_alone(n)
  row("  baseline: the simulated venue alone, same candles", fmt(srate), "candles/s",
      ("no decisions; target >= 10M/s: %s"):format(srate >= 1e7 and "ok" or "MISSED"))
  process.run("rm", { "-rf", dir })
end

return M
