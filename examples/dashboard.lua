-- The paper demo to watch in a browser: two paper accounts on the offline
-- simulator trading a replay at 600x real time (a 15-minute decision every
-- 1.5 s), with the control plane on: the dashboard at http://127.0.0.1:8080/,
-- the API under /api/v1, Prometheus metrics at /metrics. No network, no keys
-- but the API's own token:
--
--   echo "VIBEX_API_TOKEN=$(openssl rand -hex 16)" > examples/.env && chmod 600 examples/.env
--   ./vibex migrate up examples/dashboard.lua
--   ./vibex run examples/dashboard.lua        # then open http://127.0.0.1:8080/ and paste the token
--
-- When the replay ends the API keeps serving its results until Ctrl-C.
return {
  runtime = { log_level = "info", log_dir = "logs", data_dir = "data/dashboard" },
  replay = { interval = "5m", candles = 4032, seed = 7, speed = 600, warmup = 150 },
  api = { enabled = true, port = 8080, token = env "VIBEX_API_TOKEN" },
  strategies = {
    ["ema-cross"] = { description = "rule-based EMA cross, no model", rules = "ema_cross",
                      params = { fast = 12, slow = 26, size_usd = 400, leverage = 2 } },
  },
  accounts = {
    { name = "trend", exchange = { venue = "sim" }, symbols = { "BTCUSDT", "ETHUSDT" }, decision_interval_s = 900,
      strategy = "ema-cross", fallback = { policy = "rules" },
      risk = { max_leverage = 3, max_position_notional = 1000, max_total_notional = 2500, max_open_positions = 2,
               max_daily_loss = 150, min_confidence = 0.65, max_orders_per_minute = 6 },
      paper = { starting_balance = 10000, fee_rate = 0.0004 } },
    { name = "careful", exchange = { venue = "sim" }, symbols = { "XRPUSDT", "ETHUSDT" }, decision_interval_s = 3600,
      strategy = "ema-cross", fallback = { policy = "rules" },
      risk = { max_leverage = 2, max_position_notional = 500, max_total_notional = 1000, max_open_positions = 2 } },
  },
}
