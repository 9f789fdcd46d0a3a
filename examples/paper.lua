-- The paper-trading demo `make run` starts: two paper accounts on the
-- offline simulated venue, trading a replay of generated candles (a week
-- of 5-minute bars per symbol) as fast as the machine goes. No network,
-- no keys. No model is configured, so every decision comes from the
-- rule-based fallback (scripts/ema_cross.lua) — vibex says so at start-up.
-- Export VIBEX_LLM_URL and VIBEX_LLM_KEY (and VIBEX_LLM_MODEL) to have a
-- model decide instead, with the same command.
--
-- Check it:  ./vibex check examples/paper.lua
-- Run it:    ./vibex run examples/paper.lua      (prints a summary at the end)
--
-- A config is Lua returning a table, run in a sandbox: no I/O, no os.getenv.
return {
  runtime = {
    log_level = "info",        -- debug | info | warn | error (development defaults to debug)
    log_dir = "logs",          -- JSON lines per channel: app, trading, market_data, llm, errors
    data_dir = "data",         -- run state (state.json) and the local database
  },

  -- Paper accounts on the sim venue trade this replay instead of a live market.
  replay = {
    interval = "5m",           -- base candles; coarser intervals are resampled from them
    candles = 2016,            -- generated: 7 days per symbol (or files = {XRPUSDT = "path.json"})
    seed = 7,                  -- same seed, same candles, same decisions
    speed = "max",             -- or a multiple of real time: 60 = an hour a minute
    warmup = 150,              -- candles before the first decision (indicators need history)
  },

  -- Strategies: named sets of scripts (scripts/*.lua) plus parameters.
  strategies = {
    conservative = { description = "an LLM strategy that trades rarely and small",
                     prompt = "prompt", params = { style = "conservative", risk_per_trade_pct = 0.5, max_size_usd = 300 } },
    aggressive = { description = "an LLM strategy that chases momentum",
                   prompt = "prompt", params = { style = "aggressive", risk_per_trade_pct = 2, max_size_usd = 1500 },
                   pyramiding = true },
    ["ema-cross"] = { description = "rule-based EMA cross, no model", rules = "ema_cross",
                      params = { fast = 12, slow = 26, size_usd = 400, leverage = 2 } },
  },

  accounts = {
    {
      name = "trend",                      -- used in logs, metrics and the database
      mode = "paper",                      -- paper needs no credentials
      exchange = { venue = "sim" },        -- the simulated venue
      symbols = { "BTCUSDT", "ETHUSDT" },
      decision_interval_s = 900,           -- a decision every 15 minutes (of replay time)
      strategy = "ema-cross",
      fallback = { policy = "rules" },     -- without a model (or when it fails): the strategy's rules
      risk = {
        max_leverage = 3,
        max_position_notional = 1000,      -- USDT per position
        max_total_notional = 2500,         -- USDT over all positions
        max_open_positions = 2,
        max_daily_loss = 150,              -- USDT; past it no new entries until the next UTC day
        min_confidence = 0.65,             -- decisions below it are not traded
        max_orders_per_minute = 6,
      },
      paper = { starting_balance = 10000, fee_rate = 0.0004 },
    },
    {
      name = "careful",
      exchange = { venue = "sim" },
      symbols = { "XRPUSDT", "ETHUSDT", "BTCUSDT" },
      decision_interval_s = 3600,
      strategy = "conservative",
      fallback = { policy = "rules" },
      risk = { max_leverage = 2, max_position_notional = 500, max_total_notional = 1000, max_open_positions = 2 },
    },
  },

  -- Per-environment overrides (VIBEX_ENV or --env): merged over the above,
  -- accounts matched by name.
  environments = {
    testing = { runtime = { log_dir = "/tmp/vibex-test-logs", data_dir = "/tmp/vibex-test-data" } },
  },
}
