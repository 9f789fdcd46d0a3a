-- A backtest config: the EMA cross (rules, no model) and an LLM strategy
-- side by side on the same history. `vibex backtest` runs every enabled
-- account on the simulated venue (fees, 2 bps slippage, funding,
-- liquidation) whatever its exchange says, through the same decision
-- cycle as `vibex run`.
--
-- Check it:     ./vibex check examples/backtest.lua
-- Run it:       ./vibex migrate up examples/backtest.lua
--               ./vibex backtest examples/backtest.lua --accounts ema
-- Sweep it:     ./vibex backtest examples/backtest.lua --accounts ema \
--                 --sweep params.fast=8,12,16 --sweep params.slow=26,34 --jobs 2
--
-- The data: generated candles (a month of 5-minute bars, offline). For real
-- history, download it and read the database instead:
--   ./vibex data download --symbols BTCUSDT,ETHUSDT,XRPUSDT --interval 5m \
--     --from 2026-10-01 --to 2026-12-01 --funding --mark --config examples/backtest.lua
-- and set replay.source = "database" (or files = {XRPUSDT = "XRP_USDT_USDT-5m-futures.json"}).
return {
  runtime = { log_level = "warn", log_dir = "logs", data_dir = "data" },

  replay = {
    interval = "5m",           -- base candles; 1h is resampled from them
    source = "generated",      -- "files" (replay.files), "database" (vibex data download / import), "generated"
    candles = 8640,            -- generated: 30 days per symbol
    seed = 7,
    warmup = 150,              -- candles before the first decision (or the candles before --from)
    funding_rate = 0.0001,     -- generated data pays this every 8 h (the database: the stored settlements)
  },

  llm = {
    -- model answers are recorded: "record" asks the model on a miss and keeps the answer, "strict"
    -- fails on a miss naming the cycle, a run id answers as that run was answered. The model:
    -- llm.providers (as in examples/live-aster.lua), or VIBEX_LLM_URL / VIBEX_LLM_KEY / VIBEX_LLM_MODEL.
    replay = "record",
  },

  strategies = {
    ["ema-cross"] = { description = "rule-based EMA cross", rules = "ema_cross",
                      params = { fast = 12, slow = 26, size_usd = 400, leverage = 2, stop_atr = 2, target_atr = 3 } },
    momentum = { description = "an LLM strategy", prompt = "prompt",
                 params = { style = "aggressive", risk_per_trade_pct = 1, max_size_usd = 800 } },
  },

  accounts = {
    { name = "ema", exchange = { venue = "sim" }, symbols = { "BTCUSDT", "ETHUSDT", "XRPUSDT" }, decision_interval_s = 300,
      strategy = "ema-cross", fallback = { policy = "rules" },
      risk = { max_leverage = 3, max_position_notional = 1500, max_total_notional = 4000, max_open_positions = 3,
               max_orders_per_minute = 100 },
      paper = { starting_balance = 10000, fee_rate = 0.0004 } },
    -- enable it (or --accounts llm) with a model set up; without one its fallback holds
    { name = "llm", enabled = false, exchange = { venue = "sim" }, symbols = { "BTCUSDT", "ETHUSDT" }, decision_interval_s = 3600,
      strategy = "momentum", fallback = { policy = "hold" },
      risk = { max_leverage = 3, max_position_notional = 1500, max_total_notional = 3000, max_open_positions = 2 },
      paper = { starting_balance = 10000, fee_rate = 0.0004 } },
  },
}
