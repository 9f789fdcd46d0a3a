-- An arena: three paper accounts, one per variant, trading the same replay
-- from the same balance — the head-to-head public LLM trading competitions
-- run. The variants differ in model and prompt style; the report says which
-- traded better and whether the difference is significant yet.
--
-- With a model (any OpenAI-compatible endpoint):
--   export VIBEX_LLM_URL=https://api.deepseek.com/v1 VIBEX_LLM_KEY=… VIBEX_LLM_MODEL=deepseek-chat
--   ./vibex migrate up examples/arena.lua && ./vibex run examples/arena.lua
--   ./vibex ab report arena examples/arena.lua --chart arena.svg
-- Without one every account falls back to the same rules and the arena is a tie.
return {
  runtime = { log_dir = "logs", data_dir = "data" },
  replay = { interval = "5m", candles = 1152, seed = 11, warmup = 150 }, -- four days
  accounts = {
    { name = "arena-chat", exchange = { venue = "sim" }, symbols = { "BTCUSDT", "ETHUSDT" }, decision_interval_s = 3600 },
    { name = "arena-reasoner", exchange = { venue = "sim" }, symbols = { "BTCUSDT", "ETHUSDT" }, decision_interval_s = 3600 },
    { name = "arena-aggressive", exchange = { venue = "sim" }, symbols = { "BTCUSDT", "ETHUSDT" }, decision_interval_s = 3600 },
  },
  experiments = {
    { name = "arena", split = "arena", unit = "account",
      accounts = { "arena-chat", "arena-reasoner", "arena-aggressive" },
      variants = {
        { name = "chat", model = "deepseek-chat" },
        { name = "reasoner", model = "deepseek-reasoner" },
        { name = "aggressive", model = "deepseek-chat", params = { style = "aggressive", max_size_usd = 1500 } },
      } },
  },
}
