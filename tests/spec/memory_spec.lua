-- What a long run keeps: `vibex backtest` through the binary, a paper
-- account on the simulated venue deciding every 5 minutes for ~22,000
-- cycles (3 symbols, 5m and 1h candles, the EMA-cross rules, orders,
-- fills, stops and targets all along), as its own process. The backtest
-- samples its own resident memory at 10,000 cycles and at the end; after
-- that warm-up the process must not grow with the cycles it runs. `make
-- bench` runs the same for 100,000 cycles and holds it to < 5 MB.
local h = require "helpers"
local json = require "vibex.json"

local CONFIG = [[
return {
  runtime = { log_level = "warn", log_dir = %q, data_dir = %q },
  replay = { interval = "5m", source = "generated", candles = %d, seed = 11, warmup = 150 },
  strategies = {
    ["ema-cross"] = { description = "rules", rules = "ema_cross",
                      params = { fast = 12, slow = 26, size_usd = 400, leverage = 2, stop_atr = 2, target_atr = 3 } },
  },
  accounts = {
    { name = "ema", exchange = { venue = "sim" }, symbols = { "BTCUSDT", "ETHUSDT", "XRPUSDT" }, decision_interval_s = 300,
      strategy = "ema-cross", fallback = { policy = "rules" },
      risk = { max_leverage = 3, max_position_notional = 1500, max_total_notional = 4000, max_open_positions = 3,
               max_orders_per_minute = 100 },
      paper = { starting_balance = 10000, fee_rate = 0.0004 } },
  },
}
]]

describe("memory over a long run", function()
  it("stays flat after the warm-up: a backtest of 22,000 cycles grows < 2 MB after its 10,000th", function()
    local dir = h.tmpdir()
    local cfg = dir .. "/long.lua"
    h.write(cfg, CONFIG:format(dir .. "/logs", dir .. "/data", 22200))
    local out, err, code = h.vibex({ "backtest", cfg, "--no-db", "--json", "--out", dir .. "/out" }, { timeout_ms = 600000 })
    assert.equal(0, code, tostring(err) .. tostring(out))
    local rep = json.decode(out)
    assert.is_true(rep.cycles >= 21000, "cycles: " .. tostring(rep.cycles))
    local m = rep.memory
    assert.is_table(m, "the report has the process's memory")
    assert.equal(10000, m.growth_from_cycles)
    assert.equal(3, #m.samples)   -- at 1,000 and 10,000 cycles and at the end
    -- trades happened all along: the windows that hold recent orders filled and turned over
    assert.is_true(rep.accounts[1].trades > 500, "trades: " .. tostring(rep.accounts[1].trades))
    print(("\n    memory: RSS %.1f MB at cycle 10000, %.1f MB at cycle %d (%+.2f MB), peak %.1f MB")
      :format(m.samples[2].rss / 1048576, m.rss_mb, rep.cycles, m.growth_mb, m.peak_mb))
    assert.is_true(m.growth_mb < 2, ("grew %.2f MB from cycle 10000 to %d"):format(m.growth_mb, rep.cycles))
  end)
end)
