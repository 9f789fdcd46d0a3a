-- The paper-trading demo: `make run` (no network, no keys).
-- A config is a Lua file returning a table; see README "Configuration".
return {
  runtime = { log_level = "info", log_dir = "logs", data_dir = "data" },
  accounts = {
    { name = "main", exchange = { venue = "sim" }, symbols = { "BTCUSDT" }, decision_interval_s = 5 },
  },
}
