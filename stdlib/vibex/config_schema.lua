--- vibex.config_schema — the one schema every vibex config is checked
--- against. Written once, here; `vibex check`, `vibex run` and hot reload
--- all use it. See README "Configuration" for a commented example.
local S = require "vibex.schema"
local secret = require "vibex.secret"

local M = {}

M.ENVIRONMENTS = { "development", "testing", "production" }

--- Per-environment defaults, applied under the config (the config wins,
--- and its `environments.<name>` table wins over both).
M.ENV_DEFAULTS = {
  development = { runtime = { log_level = "debug", log_format = "pretty" } },
  testing = { runtime = { log_level = "warn", log_format = "json" } },
  production = { runtime = { log_level = "info", log_format = "json" } },
}

-- A secret field takes a reference made by env "NAME" (resolved at load),
-- never a literal string: literals in a config end up in git.
local function secret_field(o)
  o = o or {}
  return S.custom(function(v, path, ctx)
    if secret.is_secret(v) then return v end
    if secret.is_ref(v) then
      local lookup = ctx.data and ctx.data.lookup_secret
      local value, where = nil, nil
      if lookup then value, where = lookup(v.name) end
      if value == nil or value == "" then
        ctx:error(path, ("secret %s is not set (export %s=… or add it to %s)")
          :format(v.name, v.name, where or ".env next to the config"))
        return nil
      end
      return secret.new(v.name, value)
    end
    if type(v) == "string" then
      ctx:error(path, ("expected a secret reference like env \"%s\", found a string literal (secrets must not be written in the config)")
        :format(o.example or "NAME"))
      return nil
    end
    ctx:expected(path, ("a secret reference like env \"%s\""):format(o.example or "NAME"), v)
  end, { doc = "a secret reference env \"NAME\"", required = o.required })
end
M.secret_field = secret_field

local function name_type(required)
  return S.string { pattern = "^[%a][%w_%-]*$", max_len = 64, required = required,
    doc = "a name of letters, digits, '_' or '-', starting with a letter" }
end

local function is_loopback_host(host)
  return host == "127.0.0.1" or host == "localhost" or host == "::1"
end

local function is_loopback_url(u)
  return is_loopback_host(u:match("^%a[%w+.-]*://%[?([^/:%]?#]+)"))
end

-- runtime -------------------------------------------------------------------
local runtime = S.record({
  log_level = S.enum { "debug", "info", "warn", "error", default = "info" },
  log_format = S.enum { "pretty", "json", default = "pretty",
    doc = "\"pretty\" (readable console lines) or \"json\" (JSON lines on the console too)" },
  log_dir = S.string { min_len = 1, default = "logs" },
  data_dir = S.string { min_len = 1, default = "data" },
  shutdown_grace_ms = S.integer { min = 0, max = 600000, default = 10000 },
  -- every call into a strategy script (and loading one) runs under these
  script_budget_ms = S.integer { min = 10, max = 60000, default = 200,
    doc = "wall-clock milliseconds one script call may take" },
  script_memory_mb = S.integer { min = 4, max = 1024, default = 64,
    doc = "megabytes one script call may allocate" },
  script_max_failures = S.integer { min = 1, max = 100, default = 3,
    doc = "failures in a row before a script is disabled and the fallback decides" },
}, { default = {} })

-- database --------------------------------------------------------------------
local database = S.record({
  -- nil = the local server vibex manages under data_dir/pg
  url = S.custom(function(v, path, ctx)
    if type(v) == "string" then
      if not v:match("^postgres") then return ctx:expected(path, "a postgresql:// connection string or env \"DATABASE_URL\"", v) end
      if v:match("^postgres[%w]*://[^/@]*:[^/@]*@") then
        return ctx:error(path, "the connection string carries a password: use env \"DATABASE_URL\" instead")
      end
      return v
    end
    return S.check(secret_field { example = "DATABASE_URL" }, v, path, ctx)
  end, { doc = "a postgresql:// connection string or env \"DATABASE_URL\"" }),
  pool_size = S.integer { min = 1, max = 64, default = 4 },
  statement_timeout_ms = S.integer { min = 100, max = 3600000, default = 30000 },
  -- while the database is unreachable writes are journaled locally; trading either goes on
  -- or opens no new positions (exits and stops still work)
  on_outage = S.enum { "continue", "no_new_positions", default = "no_new_positions" },
}, { default = {} })

-- api ------------------------------------------------------------------------
local eth_address = S.string { pattern = "^0x%x+$", min_len = 42, max_len = 42, doc = "an Ethereum address, 0x and 40 hex digits" }
local api = S.record({
  enabled = S.boolean { default = false },
  bind = S.string { pattern = "^[%w%.:%-]+$", default = "127.0.0.1", doc = "an address like 127.0.0.1" },
  port = S.integer { min = 0, max = 65535, default = 8080 },
  -- the operator's token: full rights (scope trade); more tokens per user with `vibex token create`
  token = secret_field { example = "VIBEX_API_TOKEN" },
  tls_cert = S.string { min_len = 1, doc = "a PEM certificate file: the API speaks HTTPS" },
  tls_key = S.string { min_len = 1, doc = "the certificate's PEM private key file" },
  -- listening beyond this machine without TLS: only when this says so (a warning at every start)
  insecure = S.boolean { default = false },
  -- wallets that may sign in (EIP-191 personal_sign), with the scope they get
  wallets = S.list(S.record({
    address = eth_address,
    scope = S.enum { "read", "trade", default = "read" },
    name = S.string { min_len = 1 },
  }), { default = {} }),
  session_ttl_s = S.integer { min = 60, max = 7 * 86400, default = 3600 },
  nonce_ttl_s = S.integer { min = 1, max = 3600, default = 300 }, -- how long a sign-in nonce is good
  max_body_bytes = S.integer { min = 1024, max = 16777216, default = 1048576 },
  timeout_s = S.integer { min = 1, max = 300, default = 10 },
  max_connections = S.integer { min = 8, max = 65536, default = 1024 },
  public_metrics = S.boolean { default = false }, -- /metrics without a token (for a local Prometheus)
  dashboard = S.boolean { default = true },       -- the web dashboard at /
  stream_buffer = S.integer { min = 100, max = 1000000, default = 10000 }, -- events kept for clients that reconnect
}, {
  default = {},
  check = function(v, path, ctx)
    if (v.tls_cert == nil) ~= (v.tls_key == nil) then
      ctx:error(S.join(path, "tls_key"), "tls_cert and tls_key go together")
    end
    if not v.enabled or is_loopback_host(v.bind) then return end
    if not v.token and #v.wallets == 0 and not ctx:has_error(S.join(path, "token")) then
      ctx:error(S.join(path, "token"), ("required when the API listens on %s (not loopback): set token = env \"VIBEX_API_TOKEN\""):format(v.bind))
    end
    if not v.tls_cert and not v.tls_key and not v.insecure then
      ctx:error(S.join(path, "tls_cert"), ("the API listens on %s (not loopback) without TLS: set tls_cert and tls_key, or insecure = true to accept it"):format(v.bind))
    end
  end,
})

-- notifications -----------------------------------------------------------------
local NOTIFY_EVENTS = { "fill", "entry", "exit", "fallback", "breaker", "daily_loss", "reconciliation", "error" }
local notifier = S.record({
  name = name_type(true),
  kind = S.enum { "telegram", "discord", "slack", "webhook", required = true },
  url = S.url { doc = "the webhook URL (discord, slack, webhook), or the Bot API base for telegram (default https://api.telegram.org)" },
  bot_token = secret_field { example = "TELEGRAM_BOT_TOKEN" },
  chat_id = S.string { min_len = 1 },
  events = S.list(S.enum(NOTIFY_EVENTS), { default = NOTIFY_EVENTS }),
  accounts = S.list(S.string { min_len = 1 }), -- nil: every account
  group_s = S.number { min = 0, max = 3600, default = 10 },    -- events within this window become one message
  max_per_minute = S.integer { min = 1, max = 600, default = 20 },
  timeout_ms = S.integer { min = 100, max = 60000, default = 5000 },
}, {
  check = function(v, path, ctx)
    if v.kind == "telegram" and not (v.bot_token and v.chat_id) then
      ctx:error(path, "telegram needs bot_token = env \"TELEGRAM_BOT_TOKEN\" and chat_id")
    elseif v.kind ~= "telegram" and not v.url then
      ctx:error(S.join(path, "url"), ("required for kind %q: the webhook URL"):format(v.kind))
    end
  end,
})
M.NOTIFY_EVENTS = NOTIFY_EVENTS

-- llm ------------------------------------------------------------------------
local provider = S.record({
  name = name_type(true),
  kind = S.enum { "openai", "anthropic", "deepseek", "openrouter", "ollama", "fake", required = true,
    doc = "\"openai\" (any OpenAI-compatible API: OpenAI, Qwen, vLLM, llama.cpp), \"deepseek\", \"openrouter\", \"ollama\", \"anthropic\", or \"fake\" (no model: the fallback decides)" },
  base_url = S.url {},
  model = S.string { min_len = 1, required = true },
  api_key = secret_field { example = "DEEPSEEK_API_KEY" },
  timeout_ms = S.integer { min = 1000, max = 900000, default = 180000 }, -- reasoning models think for minutes
  connect_timeout_ms = S.integer { min = 100, max = 60000, default = 5000 },
  max_retries = S.integer { min = 0, max = 10, default = 2 },
  retry_base_ms = S.integer { min = 1, max = 60000, default = 500 },
  json_mode = S.boolean { default = true },          -- ask for a JSON object where the API supports it
  -- the provider's circuit breaker: failed calls (after retries) that open it, and for how long
  breaker = S.record({
    failure_threshold = S.integer { min = 1, max = 100, default = 3 },
    cooldown_ms = S.integer { min = 10, max = 3600000, default = 60000 },
  }, { default = {} }),
  temperature = S.number { min = 0, max = 2 },
  max_tokens = S.integer { min = 16, max = 200000, default = 2000 },
  -- USD per million tokens, so cost per decision can be recorded
  price = S.record({
    input_per_mtok = S.number { min = 0, default = 0 },
    output_per_mtok = S.number { min = 0, default = 0 },
  }, { default = {} }),
}, {
  check = function(v, path, ctx)
    if v.kind ~= "fake" and not v.base_url and not ctx:has_error(S.join(path, "base_url")) then
      ctx:error(S.join(path, "base_url"), ("required for kind %q"):format(v.kind))
    end
    if v.kind ~= "fake" and v.kind ~= "ollama" and not v.api_key and not ctx:has_error(S.join(path, "api_key")) then
      ctx:error(S.join(path, "api_key"), ("required for kind %q: api_key = env \"%s_API_KEY\""):format(v.kind, v.kind:upper()))
    end
  end,
})

local llm = S.record({
  providers = S.list(provider, { unique_by = "name", default = {} }),
  default = name_type(),
  -- backtests: answer from recorded model answers. "record": on a miss ask the
  -- model and keep the answer; "strict": a miss fails the run; a run id: only
  -- the answers that run was given
  replay = S.custom(function(v, path, ctx)
    if v == "record" or v == "strict" then return v end
    if type(v) == "number" and v > 0 and v % 1 == 0 then return v end
    if type(v) == "string" and v:match("^%d+$") then return tonumber(v) end
    return ctx:expected(path, "\"record\", \"strict\" or a backtest run id", v)
  end, { doc = "\"record\", \"strict\" or a run id" }),
}, { default = {} })

-- accounts -------------------------------------------------------------------
local credentials = S.record({
  api_key = secret_field { example = "ASTER_API_KEY" },       -- V1 (HMAC) keys
  api_secret = secret_field { example = "ASTER_API_SECRET" },
  user = secret_field { example = "ASTER_USER" },             -- V3 (EIP-712) keys
  signer = secret_field { example = "ASTER_SIGNER" },
  private_key = secret_field { example = "ASTER_PRIVATE_KEY" },
})

local exchange = S.record({
  venue = S.enum { "aster", "binance", "sim", required = true,
    doc = "\"aster\", \"binance\" or \"sim\" (the offline simulated venue)" },
  base_url = S.url {},
  ws_url = S.url { schemes = { "ws", "wss" } },
  testnet = S.boolean { default = false },
  chain_id = S.integer { min = 1, doc = "the EIP-712 chain id V3 signatures use (default: the venue's, mainnet or testnet)" },
  recv_window_ms = S.integer { min = 1, max = 60000, default = 5000 },
  credentials = credentials,
})

local risk = S.record({
  max_leverage = S.number { min = 1, max = 125, default = 3 },
  max_position_notional = S.number { gt = 0, default = 1000 },
  max_total_notional = S.number { gt = 0, default = 3000 },
  max_open_positions = S.integer { min = 1, max = 200, default = 3 },
  max_daily_loss = S.number { gt = 0, default = 100 },
  min_confidence = S.number { min = 0, max = 1, default = 0.6 },
  max_orders_per_minute = S.integer { min = 1, max = 1200, default = 10 },
  -- a stop further than this from the entry (or beyond the liquidation price) is no stop
  max_stop_distance_pct = S.number { gt = 0, max = 100, default = 15,
    doc = "percent of the entry price a stop loss may lie away from it" },
}, {
  default = {},
  check = function(v, path, ctx)
    if v.max_total_notional < v.max_position_notional then
      ctx:error(S.join(path, "max_total_notional"), ("must be at least max_position_notional (%s), found %s")
        :format(v.max_position_notional, v.max_total_notional))
    end
  end,
})

local symbol = S.string { pattern = "^[A-Z0-9]+$", max_len = 32, doc = "a symbol like \"BTCUSDT\" (upper case)" }

-- strategies ---------------------------------------------------------------------
-- A strategy is a named set of scripts (in scripts/, or in its own `dir`
-- searched first) plus parameters handed to them as-is.
local function script_name(default)
  return S.string { pattern = "^[%w_%-]+$", default = default, doc = "a script name like \"prompt\" (scripts/prompt.lua)" }
end
local INTERVALS = { "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d" }
local strategy_fields = {
  name = name_type(),
  description = S.string { max_len = 500 },
  dir = S.string { min_len = 1, doc = "a directory of scripts searched before scripts/" },
  context = script_name("context"),
  prompt = script_name("prompt"),
  policy = script_name("policy"),
  rules = script_name("ema_cross"),      -- the rule-based decisions: the fallback, or the whole strategy without a model
  params = S.map(S.any(), { default = {} }),
  pyramiding = S.boolean { default = false },
  intervals = S.list(S.enum(INTERVALS), { min = 1, max = 4, unique = true, default = { "5m", "1h" } }),
}
local strategy = S.record(strategy_fields, { default = {} })
M.strategy = strategy

local fallback = S.record({
  -- "hold": do nothing; "rules": the strategy's rule-based script decides
  policy = S.enum { "hold", "rules", default = "rules" },
  after_invalid = S.integer { min = 1, max = 100, default = 3 },      -- invalid answers in a row before falling back
  cooldown_s = S.number { min = 0, max = 86400, default = 600 },      -- then how long before the model is tried again
}, { default = {} })

-- replay: paper accounts on stored or generated candles instead of a live market
local replay = S.record({
  -- per symbol, a JSON file of [open_time_ms, o, h, l, c, v] rows; symbols without one get generated candles
  files = S.map(S.string { min_len = 1 }, { default = {} }),
  interval = S.enum(INTERVALS),
  candles = S.integer { min = 10, max = 10000000, default = 2000 },   -- generated data: how many per symbol
  seed = S.integer { min = 0, default = 7 },
  speed = S.custom(function(v, path, ctx)
    if v == "max" or (type(v) == "number" and v > 0) then return v end
    return ctx:expected(path, "\"max\" or a positive multiple of real time", v)
  end, { default = "max" }),
  warmup = S.integer { min = 0, max = 100000, default = 100 },       -- base candles before the first decision
  -- per symbol, a JSON file of [time_ms, rate, …] rows settled at their times; generated data pays funding_rate every 8 h
  funding_files = S.map(S.string { min_len = 1 }, { default = {} }),
  funding_rate = S.number { min = -0.01, max = 0.01, default = 0.0001 },
  -- where candles come from: "files" (files, else generated), "database" (the candles
  -- table: vibex data download / import), "generated"
  source = S.enum { "files", "database", "generated", default = "files" },
  start = S.string { pattern = "^%d%d%d%d%-%d%d%-%d%d$", default = "2026-01-01", doc = "a date like 2026-01-01 (generated data)" },
}, {})

local account = S.record({
  name = name_type(true),
  enabled = S.boolean { default = true },
  mode = S.enum { "live", "paper", default = "paper" },
  exchange = exchange,
  symbols = S.list(symbol, { min = 1, unique = true, required = true }),
  decision_interval_s = S.number { min = 0.01, max = 86400, default = 300 },
  llm = name_type(),
  -- the name of an entry of the top-level `strategies`, or a strategy table
  strategy = S.custom(function(v, path, ctx)
    if type(v) == "string" then return S.check(name_type(), v, path, ctx) end
    return S.check(strategy, v, path, ctx)
  end, { default = {}, doc = "a strategy name or table" }),
  fallback = fallback,
  risk = risk,
  paper = S.record({
    starting_balance = S.number { gt = 0, default = 10000 },
    fee_rate = S.number { min = 0, max = 0.01, default = 0.0004 },
  }, { default = {} }),
  -- the venue is the truth: how often the database is checked against it
  -- (also at start-up and after every reconnect), and what to do with open
  -- orders on the venue that vibex did not place
  reconcile = S.record({
    interval_s = S.number { min = 5, max = 86400, default = 300 },
    foreign_orders = S.enum { "report", "cancel", default = "report",
      doc = "\"report\" (log them and leave them) or \"cancel\"" },
  }, { default = {} }),
}, {
  check = function(v, path, ctx)
    local creds = v.exchange and v.exchange.credentials or {}
    if v.mode == "live" then
      if v.exchange.venue == "sim" then
        ctx:error(S.join(path, "mode"), "live trading needs a real venue; the sim venue only supports mode = \"paper\"")
      end
      local v1 = creds.api_key and creds.api_secret
      local v3 = creds.user and creds.signer and creds.private_key
      if not (v1 or v3) and not ctx:has_error(path .. ".exchange.credentials") then
        ctx:error(path .. ".exchange.credentials", "live mode needs credentials: api_key and api_secret (V1), or user, signer and private_key (V3), each as env \"NAME\"")
      end
    end
  end,
})
account.fields.exchange.required = true

-- experiments ----------------------------------------------------------------------
-- A/B tests of models, prompts and parameters (vibex.ab). Each variant
-- overrides what it names: the provider (llm), its model, the context,
-- prompt or policy script, and params merged over the strategy's.
local variant = S.record({
  name = name_type(true),
  llm = name_type(),
  model = S.string { min_len = 1, max_len = 200 },
  context = S.string { pattern = "^[%w_%-]+$", doc = "a script name" },
  prompt = S.string { pattern = "^[%w_%-]+$", doc = "a script name" },
  policy = S.string { pattern = "^[%w_%-]+$", doc = "a script name" },
  params = S.map(S.any(), { default = {} }),
  weight = S.number { min = 0, default = 1 },
})

local experiment = S.record({
  name = name_type(true),
  enabled = S.boolean { default = true },
  accounts = S.list(name_type(), { min = 1, unique = true, required = true }),
  -- what gets a variant: a whole account, or each decision cycle
  unit = S.enum { "account", "cycle", default = "cycle" },
  -- fixed weights, or Thompson sampling on `outcome`; arena: one paper account per variant, same data
  split = S.enum { "fixed", "thompson", "arena", default = "fixed" },
  outcome = S.enum { "return", "valid", default = "return",
    doc = "\"return\" (the cycle's equity rose) or \"valid\" (the answer was usable)" },
  metric = S.enum { "return_per_cycle", "sharpe", "pnl", "validity", default = "return_per_cycle" },
  -- Thompson sampling: outcomes every variant gets before sampling takes over (exploration)
  min_trials = S.integer { min = 0, max = 1000, default = 5 },
  start = S.string { pattern = "^%d%d%d%d%-%d%d%-%d%d", doc = "a date or time like 2026-12-01 or 2026-12-01T08:00:00Z" },
  stop = S.string { pattern = "^%d%d%d%d%-%d%d%-%d%d", doc = "a date or time like 2026-12-31" },
  variants = S.list(variant, { min = 2, max = 20, unique_by = "name", required = true }),
})
M.experiment = experiment

-- Every script a strategy names must exist where the runtime looks for it
-- (the strategy's dir first, then scripts/): a typo is a config error, not
-- an account that fails at its first decision.
local SCRIPT_ROLES = { "context", "prompt", "policy", "rules" }
local function check_strategy_scripts(strat, path, ctx)
  local exists = ctx.data and ctx.data.script_exists
  if not exists then return end
  for _, role in ipairs(SCRIPT_ROLES) do
    local name = strat[role]
    if name and not (strat.dir and exists(name, strat.dir)) and not exists(name) then
      ctx:error(S.join(path, role), ("no script %q: %sscripts/%s.lua does not exist")
        :format(name, strat.dir and (strat.dir .. "/" .. name .. ".lua and ") or "", name))
    end
  end
end

local function check_experiments(v, ctx)
  local providers, accounts, claimed = {}, {}, {}
  for _, p in ipairs(v.llm.providers) do providers[p.name] = true end
  for _, a in ipairs(v.accounts) do accounts[a.name] = a end
  local exists = ctx.data and ctx.data.script_exists
  for i, e in ipairs(v.experiments) do
    local p = ("experiments[%d]"):format(i)
    local total = 0
    for j, var in ipairs(e.variants) do
      local vp = ("%s.variants[%d]"):format(p, j)
      total = total + var.weight
      if var.llm and not providers[var.llm] then
        ctx:error(vp .. ".llm", ("no LLM provider named %q (llm.providers)"):format(var.llm))
      end
      for _, role in ipairs { "context", "prompt", "policy" } do
        if var[role] and exists and not exists(var[role]) then
          ctx:error(vp .. "." .. role, ("no script %q (scripts/%s.lua does not exist)"):format(var[role], var[role]))
        end
      end
    end
    if not (total > 0) then
      ctx:error(p .. ".variants", ("the weights must sum to a positive number, found %s"):format(total))
    end
    for j, name in ipairs(e.accounts) do
      local ap = ("%s.accounts[%d]"):format(p, j)
      if not accounts[name] then
        ctx:error(ap, ("no account named %q"):format(name))
      elseif e.enabled and claimed[name] then
        ctx:error(ap, ("account %q is already in experiment %q: a unit can be in one experiment at a time"):format(name, claimed[name]))
      elseif e.enabled then
        claimed[name] = e.name
      end
    end
    if e.split == "arena" then
      if e.unit ~= "account" then ctx:error(p .. ".unit", "an arena assigns whole accounts: unit = \"account\"") end
      if #e.accounts ~= #e.variants then
        ctx:error(p .. ".accounts", ("an arena needs one account per variant: %d accounts for %d variants"):format(#e.accounts, #e.variants))
      end
      local first
      for j, name in ipairs(e.accounts) do
        local a = accounts[name]
        if a then
          local sig = table.concat(a.symbols, ",") .. "|" .. tostring(a.paper.starting_balance) .. "|" .. a.exchange.venue
          if a.mode ~= "paper" then ctx:error(("%s.accounts[%d]"):format(p, j), ("arena account %q must be a paper account"):format(name)) end
          if first and sig ~= first then
            ctx:error(("%s.accounts[%d]"):format(p, j), ("arena accounts must trade the same symbols on the same venue from the same balance (%q differs from %q)")
              :format(name, e.accounts[1]))
          end
          first = first or sig
        end
      end
    end
  end
end

-- the whole config ---------------------------------------------------------------
M.config = S.record({
  runtime = runtime,
  database = database,
  api = api,
  notifications = S.list(notifier, { unique_by = "name", default = {} }),
  llm = llm,
  accounts = S.list(account, { unique_by = "name", default = {} }),
  strategies = S.map(strategy, { default = {} }),
  experiments = S.list(experiment, { unique_by = "name", default = {} }),
  replay = replay,
  allow_live = S.boolean { default = false },
}, {
  check = function(v, _, ctx)
    local envname = ctx.data and ctx.data.environment or "development"
    local names = {}
    for _, p in ipairs(v.llm.providers) do names[#names + 1] = p.name end
    if v.llm.default and #names > 0 then
      local found = false
      for _, n in ipairs(names) do if n == v.llm.default then found = true end end
      if not found then
        ctx:error("llm.default", ("no provider named %q (providers: %s)"):format(v.llm.default, table.concat(names, ", ")))
      end
    end
    if envname == "production" and v.runtime.log_format ~= "json" then
      ctx:error("runtime.log_format", ("production logs are JSON only, found %q"):format(v.runtime.log_format))
    end
    for i, a in ipairs(v.accounts) do
      local p = ("accounts[%d]"):format(i)
      if a.llm then
        local ok = false
        for _, n in ipairs(names) do if n == a.llm then ok = true end end
        if not ok then
          local hint = S.suggest(a.llm, names)
          ctx:error(p .. ".llm", ("no LLM provider named %q%s"):format(a.llm,
            hint and (" (did you mean %q?)"):format(hint) or (#names > 0 and " (providers: " .. table.concat(names, ", ") .. ")" or " (llm.providers is empty)")))
        end
      end
      if type(a.strategy) == "string" and not v.strategies[a.strategy] then
        local names = {}
        for n in pairs(v.strategies) do names[#names + 1] = n end
        table.sort(names)
        local hint = S.suggest(a.strategy, names)
        ctx:error(p .. ".strategy", ("no strategy named %q%s"):format(a.strategy,
          hint and (" (did you mean %q?)"):format(hint) or (#names > 0 and " (strategies: " .. table.concat(names, ", ") .. ")" or " (strategies is empty)")))
      end
      if a.mode == "live" then
        if envname == "production" and not v.allow_live then
          ctx:error(p .. ".mode", "live trading in production needs allow_live = true at the top of the config")
        elseif envname == "development" and not a.exchange.testnet then
          ctx:error(p .. ".mode", "live trading on mainnet needs VIBEX_ENV=production (in development only testnet = true may trade live)")
        elseif envname == "testing" and not a.exchange.testnet then
          ctx:error(p .. ".mode", "the testing environment never trades live on mainnet (set exchange.testnet = true against a local server)")
        end
      end
    end
    check_experiments(v, ctx)
    local snames = {}
    for n in pairs(v.strategies) do snames[#snames + 1] = n end
    table.sort(snames)
    for _, n in ipairs(snames) do check_strategy_scripts(v.strategies[n], "strategies." .. n, ctx) end
    for i, a in ipairs(v.accounts) do
      if type(a.strategy) == "table" then check_strategy_scripts(a.strategy, ("accounts[%d].strategy"):format(i), ctx) end
      local MAINNET = { ["https://fapi.asterdex.com"] = true, ["https://fapi.binance.com"] = true,
                        ["wss://fstream.asterdex.com"] = true, ["wss://fstream.binance.com"] = true }
      for _, f in ipairs { "base_url", "ws_url" } do
        local u = a.exchange[f]
        if a.exchange.testnet and u and MAINNET[(u:gsub("/+$", ""))] then
          ctx:error(("accounts[%d].exchange.%s"):format(i, f), ("testnet = true, but %s is the mainnet: set the testnet's address"):format(u))
        end
      end
      if a.mode == "live" and a.exchange.base_url and not a.exchange.ws_url then
        ctx:error(("accounts[%d].exchange.ws_url"):format(i), "required when base_url is set: the market data and the account's events come over the venue's WebSocket streams (e.g. wss://fstream.asterdex.com)")
      end
    end
    if envname == "testing" then
      local function local_only(path, u)
        if u and not is_loopback_url(u) then
          ctx:error(path, ("the testing environment is local only: expected a 127.0.0.1/localhost URL, found %q"):format(u))
        end
      end
      for i, p in ipairs(v.llm.providers) do local_only(("llm.providers[%d].base_url"):format(i), p.base_url) end
      for i, a in ipairs(v.accounts) do
        local_only(("accounts[%d].exchange.base_url"):format(i), a.exchange.base_url)
        local_only(("accounts[%d].exchange.ws_url"):format(i), a.exchange.ws_url)
      end
      if v.api.enabled and not is_loopback_host(v.api.bind) then
        ctx:error("api.bind", ("the testing environment is local only: expected 127.0.0.1, found %q"):format(v.api.bind))
      end
    end
  end,
})

return M
