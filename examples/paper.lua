-- Paper trading with two accounts: the demo `make run` starts.
-- No network and no keys: the venue is the offline simulator and the
-- decisions come from the offline "fake" model.
--
-- Check it:  ./vibex check examples/paper.lua
-- Run it:    ./vibex run examples/paper.lua      (Ctrl-C stops it cleanly)
--
-- A config is Lua returning a table, run in a sandbox: no I/O, no os.getenv.
-- Edit it while vibex runs: a valid change is applied at once, an invalid
-- one is logged and the running config stays.
return {
  runtime = {
    log_level = "info",        -- debug | info | warn | error (development defaults to debug)
    log_dir = "logs",          -- JSON lines per channel: app, trading, market_data, llm, errors
    data_dir = "data",         -- run state (state.json) and the local database
  },

  llm = {
    providers = {
      -- "fake" answers offline; swap in a real provider to trade on a model's
      -- decisions (see examples/live-aster.lua).
      { name = "offline", kind = "fake", model = "hold-unless-trend" },
    },
    default = "offline",
  },

  accounts = {
    {
      name = "trend",                      -- used in logs, metrics, the REPL: config.get("accounts.trend")
      mode = "paper",                      -- paper needs no credentials
      exchange = { venue = "sim" },        -- the simulated venue (fills on recorded candles)
      symbols = { "BTCUSDT", "ETHUSDT" },
      decision_interval_s = 5,
      llm = "offline",
      strategy = {
        scripts = { "strategy" },          -- scripts/strategy.lua
        params = { fast = 12, slow = 26 }, -- handed to the scripts as-is
      },
      risk = {
        max_leverage = 3,
        max_position_notional = 1000,      -- USDT per position
        max_total_notional = 2500,         -- USDT over all positions
        max_open_positions = 2,
        max_daily_loss = 150,              -- USDT; the account stops opening positions past it
        min_confidence = 0.65,             -- the model's confidence below which nothing is done
        max_orders_per_minute = 6,
      },
      paper = { starting_balance = 10000, fee_rate = 0.0004 },
    },
    {
      name = "meanrev",
      exchange = { venue = "sim" },
      symbols = { "XRPUSDT" },
      decision_interval_s = 15,
      llm = "offline",
      risk = { max_leverage = 2, max_position_notional = 500, max_total_notional = 500, max_open_positions = 1 },
    },
  },

  -- Per-environment overrides (VIBEX_ENV or --env): merged over the above,
  -- accounts matched by name.
  environments = {
    testing = { runtime = { log_dir = "/tmp/vibex-test-logs", data_dir = "/tmp/vibex-test-data" } },
  },
}
