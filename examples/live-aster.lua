-- Live trading on Aster futures. Credentials come from the environment
-- (or a .env file next to this config), never from the config itself:
--
--   export ASTER_API_KEY=…  ASTER_API_SECRET=…  DEEPSEEK_API_KEY=…
--   VIBEX_ENV=production ./vibex check examples/live-aster.lua
--   VIBEX_ENV=production ./vibex run examples/live-aster.lua
--
-- Live mode is refused outside production (except against a testnet) and
-- in production unless allow_live = true below.
return {
  allow_live = true,

  runtime = { log_level = "info", log_format = "json", log_dir = "/var/log/vibex", data_dir = "/var/lib/vibex" },

  database = { url = env "DATABASE_URL" },  -- or leave out: vibex runs its own local PostgreSQL

  api = { enabled = true, bind = "127.0.0.1", port = 8080, token = env "VIBEX_API_TOKEN" },

  llm = {
    providers = {
      {
        name = "deepseek", kind = "deepseek",
        base_url = "https://api.deepseek.com", model = "deepseek-chat",
        api_key = env "DEEPSEEK_API_KEY",
        timeout_ms = 60000, max_retries = 2,
        price = { input_per_mtok = 0.27, output_per_mtok = 1.10 },  -- USD per million tokens
      },
    },
    default = "deepseek",
  },

  accounts = {
    {
      name = "aster-main",
      mode = "live",
      exchange = {
        venue = "aster",
        -- base_url and ws_url default to Aster's mainnet (https://fapi.asterdex.com,
        -- wss://fstream.asterdex.com); testnet = true switches REST to the testnet
        recv_window_ms = 5000,
        -- V1 API keys (HMAC). For V3 keys use user, signer and private_key instead.
        credentials = { api_key = env "ASTER_API_KEY", api_secret = env "ASTER_API_SECRET" },
      },
      symbols = { "BTCUSDT", "ETHUSDT" },
      decision_interval_s = 300,
      llm = "deepseek",
      risk = {
        max_leverage = 3, max_position_notional = 200, max_total_notional = 400,
        max_open_positions = 2, max_daily_loss = 50, min_confidence = 0.7, max_orders_per_minute = 4,
      },
    },
  },

  environments = {
    -- the same config against the Aster testnet from a workstation (V3 keys
    -- sign for chain 714 there). Add the testnet's WebSocket address from
    -- Aster's docs as ws_url: without it the account does not start, and says so.
    development = {
      accounts = { { name = "aster-main", exchange = { testnet = true } } },
    },
  },
}
