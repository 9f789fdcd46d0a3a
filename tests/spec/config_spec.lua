local h = require "helpers"
local config = require "vibex.config"
local inspect = require "vibex.inspect"
local json = require "vibex.json"

local NOENV = function() return nil end

--- Load config text in an environment; returns snapshot or nil, "error lines".
local function load(text, env, vars, dotenv)
  local getenv = vars and function(n) return vars[n] end or NOENV
  local snap, errors = config.load_string(text, { environment = env or "development", path = "t.lua",
                                                  getenv = getenv, dotenv = dotenv })
  if snap then return snap end
  return nil, config.format_errors(errors), errors
end

local ACCOUNT = [[{ name = "main", exchange = { venue = "sim" }, symbols = { "BTCUSDT" } }]]

describe("config: environments", function()
  it("applies each environment's defaults", function()
    local src = "return { accounts = { " .. ACCOUNT .. " } }"
    local dev = assert(load(src, "development"))
    assert.equal("debug", dev.config.runtime.log_level)
    assert.equal("pretty", dev.config.runtime.log_format)
    local test = assert(load(src, "testing"))
    assert.equal("warn", test.config.runtime.log_level)
    local prod = assert(load(src, "production"))
    assert.equal("info", prod.config.runtime.log_level)
    assert.equal("json", prod.config.runtime.log_format)
    assert.equal("production", prod.environment)
  end)

  it("lets a config override per environment, merging accounts by name", function()
    local src = [[return {
      runtime = { log_level = "warn" },
      accounts = { { name = "main", exchange = { venue = "sim" }, symbols = { "BTCUSDT" }, risk = { max_leverage = 10 } },
                   { name = "alt", exchange = { venue = "sim" }, symbols = { "ETHUSDT" } } },
      environments = {
        production = { runtime = { log_level = "error" }, accounts = { { name = "main", risk = { max_leverage = 2 } } } },
      },
    }]]
    local dev = assert(load(src, "development"))
    assert.equal("warn", dev.config.runtime.log_level)
    assert.equal(10, dev.config.accounts[1].risk.max_leverage)
    local prod = assert(load(src, "production"))
    assert.equal("error", prod.config.runtime.log_level)
    assert.equal(2, prod.config.accounts[1].risk.max_leverage)
    assert.equal(1000, prod.config.accounts[1].risk.max_position_notional) -- untouched defaults survive
    assert.same({ "BTCUSDT" }, prod.config.accounts[1].symbols)
    assert.equal("alt", prod.config.accounts[2].name)
  end)

  it("exposes the environment name to the config", function()
    local src = "return { runtime = { log_dir = environment == 'testing' and '/tmp/t' or 'logs' } }"
    assert.equal("/tmp/t", assert(load(src, "testing")).config.runtime.log_dir)
    assert.equal("logs", assert(load(src, "development")).config.runtime.log_dir)
  end)

  it("rejects unknown environments, in VIBEX_ENV and in the config", function()
    local _, msg = load("return {}", "prod")
    assert.equal('unknown environment "prod" (VIBEX_ENV or --env): expected development, testing or production (did you mean "production"?)', msg)
    _, msg = load("return { environments = { staging = {}, producton = {} } }")
    assert.equal("environments.producton: unknown environment (did you mean 'production'?)\n" ..
                 "environments.staging: unknown environment (known: development, testing, production)", msg)
  end)

  it("allows live trading only where it belongs", function()
    local live = [[{ name = "main", mode = "live", symbols = { "BTCUSDT" },
      exchange = { venue = "aster", testnet = %s, credentials = { api_key = env "K", api_secret = env "S" } } }]]
    local vars = { K = "key-1234", S = "secret-5678" }
    local _, msg = load("return { accounts = { " .. live:format("false") .. " } }", "production", vars)
    assert.equal("accounts[1].mode: live trading in production needs allow_live = true at the top of the config", msg)
    assert(load("return { allow_live = true, accounts = { " .. live:format("false") .. " } }", "production", vars))
    _, msg = load("return { accounts = { " .. live:format("false") .. " } }", "development", vars)
    assert.equal("accounts[1].mode: live trading on mainnet needs VIBEX_ENV=production (in development only testnet = true may trade live)", msg)
    assert(load("return { accounts = { " .. live:format("true") .. " } }", "development", vars))
    _, msg = load("return { runtime = { log_format = 'pretty' } }", "production")
    assert.equal('runtime.log_format: production logs are JSON only, found "pretty"', msg)
  end)

  it("keeps the testing environment local", function()
    local src = [[return { accounts = { { name = "a", symbols = { "BTCUSDT" }, exchange = { venue = "aster", base_url = "%s" } } } }]]
    local _, msg = load(src:format("https://fapi.asterdex.com"), "testing")
    assert.equal('accounts[1].exchange.base_url: the testing environment is local only: expected a 127.0.0.1/localhost URL, found "https://fapi.asterdex.com"', msg)
    assert(load(src:format("http://127.0.0.1:9999"), "testing"))
  end)
end)

describe("config: validation", function()
  local function only_error(src)
    local snap, msg = load(src)
    assert.is_nil(snap, "expected an error")
    return msg
  end

  it("names path, expectation and finding for every rule", function()
    local cases = {
      { "return { runtime = { log_level = 'verbose' } }",
        'runtime.log_level: expected one of "debug", "info", "warn", "error", found string "verbose"' },
      { "return { runtime = { log_levle = 'info' } }", "runtime.log_levle: unknown key (did you mean 'log_level'?)" },
      { "return { runtme = {} }", "runtme: unknown key (did you mean 'runtime'?)" },
      { "return { api = { port = 70000 } }", "api.port: expected an integer >= 0 and <= 65535, found number 70000" },
      { "return { api = { port = 80.5 } }", "api.port: expected an integer >= 0 and <= 65535, found number 80.5" },
      { "return { api = { enabled = 'yes' } }", 'api.enabled: expected true or false, found string "yes"' },
      { "return { api = { enabled = true, bind = '0.0.0.0', insecure = true } }",
        'api.token: required when the API listens on 0.0.0.0 (not loopback): set token = env "VIBEX_API_TOKEN"' },
      { "return { api = { enabled = true, bind = '0.0.0.0', tls_cert = 'c.pem' } }",
        'api.tls_key: tls_cert and tls_key go together\napi.token: required when the API listens on 0.0.0.0 (not loopback): set token = env "VIBEX_API_TOKEN"' },
      { "return { accounts = { { name = 'a', symbols = { 'BTCUSDT' } } } }",
        "accounts[1].exchange: required field is missing (expected record)" },
      { "return { accounts = { { name = 'a', exchange = { venue = 'sim' }, symbols = {} } } }",
        "accounts[1].symbols: expected a list of at least 1 item, found 0" },
      { "return { accounts = { { name = 'a', exchange = { venue = 'sim' }, symbols = { 'btcusdt' } } } }",
        'accounts[1].symbols[1]: expected a symbol like "BTCUSDT" (upper case), found string "btcusdt"' },
      { "return { accounts = { { name = 'a', exchange = { venue = 'sim' }, symbols = { 'BTCUSDT', 'BTCUSDT' } } } }",
        'accounts[1].symbols[2]: duplicate string "BTCUSDT" (also at accounts[1].symbols[1])' },
      { "return { accounts = { " .. ACCOUNT .. ", " .. ACCOUNT .. " } }",
        'accounts[2].name: duplicate name "main" (also at accounts[1])' },
      { "return { accounts = { { name = 'a', exchange = { venue = 'ftx' }, symbols = { 'BTCUSDT' } } } }",
        'accounts[1].exchange.venue: expected one of "aster", "binance", "sim", found string "ftx"' },
      { "return { accounts = { { name = 'a', exchange = { venue = 'sim' }, symbols = { 'BTCUSDT' }, risk = { max_leverage = 0 } } } }",
        "accounts[1].risk.max_leverage: expected a number >= 1 and <= 125, found number 0" },
      { "return { accounts = { { name = 'a', exchange = { venue = 'sim' }, symbols = { 'BTCUSDT' }, risk = { min_confidence = 1.5 } } } }",
        "accounts[1].risk.min_confidence: expected a number >= 0 and <= 1, found number 1.5" },
      { "return { accounts = { { name = 'a', exchange = { venue = 'sim' }, symbols = { 'BTCUSDT' }, risk = { max_daily_loss = 0 } } } }",
        "accounts[1].risk.max_daily_loss: expected a number > 0, found number 0" },
      { "return { accounts = { { name = 'a', exchange = { venue = 'sim' }, symbols = { 'BTCUSDT' }, risk = { max_position_notional = 500, max_total_notional = 100 } } } }",
        "accounts[1].risk.max_total_notional: must be at least max_position_notional (500), found 100" },
      { "return { accounts = { { name = 'a', mode = 'live', exchange = { venue = 'aster', testnet = true }, symbols = { 'BTCUSDT' } } } }",
        'accounts[1].exchange.credentials: live mode needs credentials: api_key and api_secret (V1), or user, signer and private_key (V3), each as env "NAME"' },
      { "return { accounts = { { name = 'a', mode = 'live', exchange = { venue = 'sim', testnet = true, credentials = { api_key = env 'K', api_secret = env 'K' } }, symbols = { 'BTCUSDT' } } } }",
        'accounts[1].mode: live trading needs a real venue; the sim venue only supports mode = "paper"' },
      { "return { accounts = { { name = 'a', exchange = { venue = 'sim' }, symbols = { 'BTCUSDT' }, llm = 'gpt' } } }",
        'accounts[1].llm: no LLM provider named "gpt" (llm.providers is empty)' },
      { "return { llm = { providers = { { name = 'ds', kind = 'deepseek', model = 'deepseek-chat', api_key = env 'K' } } } }",
        'llm.providers[1].base_url: required for kind "deepseek"' },
      { "return { llm = { providers = { { name = 'ds', kind = 'fake', model = 'x' } }, default = 'dz' } }",
        'llm.default: no provider named "dz" (providers: ds)' },
      { "return { llm = { providers = { { name = 'ds', kind = 'openai', model = 'x', base_url = 'ftp://x', api_key = env 'K' } } } }",
        'llm.providers[1].base_url: expected a URL with scheme http or https, found string "ftp://x"' },
      { "return { accounts = { { name = 'a', exchange = { venue = 'aster', credentials = { api_secret = 'abc123' } }, symbols = { 'BTCUSDT' } } } }",
        'accounts[1].exchange.credentials.api_secret: expected a secret reference like env "ASTER_API_SECRET", found a string literal (secrets must not be written in the config)' },
      { "return { database = { url = 'postgresql://u:pw@db/x' } }",
        'database.url: the connection string carries a password: use env "DATABASE_URL" instead' },
      { "return { accounts = { name = 'a' } }", "accounts: expected a list { … }, found a table" },
      { "return 42", "a config must return a table, found number 42" },
    }
    for _, c in ipairs(cases) do
      local vars = { K = "value-1234" }
      local snap, msg = load(c[1], "development", vars)
      assert.is_nil(snap, "expected an error for: " .. c[1])
      assert.equal(c[2], msg)
    end
  end)

  it("reports every error at once, sorted by path", function()
    local _, _, errors = load([[return {
      runtime = { log_level = 1 },
      api = { port = -1 },
      accounts = { { name = "a", exchange = { venue = "sim" }, symbols = {}, risk = { max_levrage = 2 } } },
    }]])
    local paths = {}
    for i, e in ipairs(errors) do paths[i] = e.path end
    assert.same({ "accounts[1].risk.max_levrage", "accounts[1].symbols", "api.port", "runtime.log_level" }, paths)
  end)

  it("reports syntax errors and runaway configs with the file and line", function()
    local _, msg = load("return { a = }")
    assert.matches("^t%.lua:1: unexpected symbol near '}'", msg)
    _, msg = load("while true do end")
    assert.matches("ran over its time budget", msg)
    _, msg = load("return { runtime = io.open('/etc/passwd') }")
    assert.matches("t.lua:1: attempt to index global 'io'", msg, 1, true)
    -- the limit must not outlive the config: long code afterwards still runs
    assert.is_nil(debug.gethook())
    local f = loadstring("local n = 0 for i = 1, 3e7 do n = n + i % 3 end return n")
    jit.off(f)
    assert.equal(30000000, f())
  end)
end)

describe("config: secrets", function()
  local src = [[return { accounts = { { name = "a", mode = "live",
    exchange = { venue = "aster", testnet = true, credentials = { api_key = env "ASTER_KEY", api_secret = env "ASTER_SECRET" } },
    symbols = { "BTCUSDT" } } } }]]

  it("resolves from the environment first, then .env", function()
    local snap = assert(load(src, "development", { ASTER_KEY = "k-from-env" }, { ASTER_KEY = "k-from-dotenv", ASTER_SECRET = "s-from-dotenv" }))
    local creds = snap.config.accounts[1].exchange.credentials
    assert.equal("k-from-env", creds.api_key:reveal())
    assert.equal("s-from-dotenv", creds.api_secret:reveal())
  end)

  it("names a missing secret", function()
    local _, msg = load(src, "development", { ASTER_KEY = "k-1234" })
    assert.equal("accounts[1].exchange.credentials.api_secret: secret ASTER_SECRET is not set (export ASTER_SECRET=… or add it to .env next to the config)", msg)
  end)

  it("reads .env next to the config file", function()
    local dir = h.tmpdir()
    h.write(dir .. "/cfg.lua", src)
    h.write(dir .. "/.env", table.concat({
      "# credentials for the testnet",
      "export ASTER_KEY=plain-key-value   # trailing comment",
      'ASTER_SECRET="quoted \\"secret\\" value"',
      "", "NOT A LINE",
    }, "\n"))
    local snap, errors = config.load(dir .. "/cfg.lua", { getenv = NOENV })
    assert.is_nil(snap)
    assert.equal(dir .. "/.env:5: expected NAME=value", config.format_errors(errors))
    h.write(dir .. "/.env", "export ASTER_KEY=plain-key-value   # trailing comment\nASTER_SECRET=\"quoted \\\"secret\\\" value\"\n")
    snap = assert(config.load(dir .. "/cfg.lua", { getenv = NOENV }))
    local creds = snap.config.accounts[1].exchange.credentials
    assert.equal("plain-key-value", creds.api_key:reveal())
    assert.equal('quoted "secret" value', creds.api_secret:reveal())
  end)

  it("never shows a secret value: render, inspect, json, hash, tostring, logs, errors", function()
    local snap = assert(load(src, "development", { ASTER_KEY = "AKIA-visible-key-1", ASTER_SECRET = "very-secret-value-2" }))
    local outputs = {
      config.render(snap.config), inspect(snap.config), json.encode(snap.config) or "",
      tostring(snap.config.accounts[1].exchange.credentials.api_secret), snap.hash,
    }
    for _, text in ipairs(outputs) do
      assert.is_nil(text:find("very-secret-value-2", 1, true), text)
      assert.is_nil(text:find("AKIA-visible-key-1", 1, true), text)
    end
    assert.matches("<secret ASTER_SECRET>", config.render(snap.config), 1, true)
    -- a revealed value that reaches the log by mistake is masked there too
    local logcore = require "vibex.core.log"
    assert.equal("sent *** ok", logcore.redact("sent very-secret-value-2 ok"))
    assert.is_nil(logcore.redact("sent very-secret-value-2 ok"):find("very-secret-value-2", 1, true))
    -- error messages about a secret field name the variable, never a value
    local _, msg = load(src:gsub('env "ASTER_SECRET"', '"very-secret-value-2"'), "development", { ASTER_KEY = "AKIA-visible-key-1" })
    assert.is_nil(msg:find("very-secret-value-2", 1, true))
    assert.matches("found a string literal", msg, 1, true)
  end)

  it("masks secrets in `vibex check` output and in the REPL", function()
    local dir = h.tmpdir()
    h.write(dir .. "/cfg.lua", src)
    local envs = { ASTER_KEY = "check-key-value-9", ASTER_SECRET = "check-secret-value-9" }
    local out, err, code = h.vibex({ "check", dir .. "/cfg.lua" }, { env = envs })
    assert.equal(0, code, err)
    assert.matches("api_secret = <secret ASTER_SECRET>", out, 1, true)
    assert.is_nil((out .. err):find("check-secret-value-9", 1, true))
    h.write(dir .. "/in.txt", ("config.load(%q).config.accounts[1].exchange\n"):format(dir .. "/cfg.lua"))
    local p = assert(require("vibex.process").spawn { file = "/bin/sh", env = envs,
      args = { "-c", h.bin .. " repl < " .. dir .. "/in.txt" } })
    local rout = p:read_all()
    p:wait()
    assert.matches("<secret ASTER_KEY>", rout, 1, true)
    assert.is_nil(rout:find("check-key-value-9", 1, true))
  end)
end)

describe("config: the store", function()
  local base = [[return { accounts = { { name = "main", exchange = { venue = "sim" }, symbols = { "BTCUSDT" },
    risk = { max_leverage = %d } }, { name = "alt", exchange = { venue = "sim" }, symbols = { "ETHUSDT" } } } }]]

  it("reads dotted paths, addressing list items by name or index", function()
    local store = config.store()
    assert.truthy(store:apply(assert(load(base:format(4)))))
    assert.equal(4, store:get("accounts.main.risk.max_leverage"))
    assert.equal("ETHUSDT", store:get("accounts.alt.symbols.1"))
    assert.equal("alt", store:get("accounts.2.name"))
    assert.is_nil(store:get("accounts.nobody.risk"))
    assert.equal("debug", store:get("runtime.log_level"))
  end)

  it("keeps versions with hashes and calls subscribers only for changed subtrees", function()
    local store = config.store()
    local calls = {}
    store:subscribe("accounts.main.risk", function(new, old, v) calls[#calls + 1] = { "main", new.max_leverage, old and old.max_leverage, v } end)
    store:subscribe("accounts.alt", function(_, _, v) calls[#calls + 1] = { "alt", v } end)
    store:apply(assert(load(base:format(4))))
    assert.same({ { "main", 4, nil, 1 }, { "alt", 1 } }, calls)
    local same, why = store:apply(assert(load(base:format(4))))
    assert.is_nil(same)
    assert.equal("unchanged", why)
    store:apply(assert(load(base:format(6))))
    assert.same({ "main", 6, 4, 2 }, calls[3])
    assert.equal(3, #calls) -- alt did not change
    local versions = store:list_versions()
    assert.equal(2, #versions)
    assert.equal(2, versions[2].version)
    assert.matches("^%x+$", versions[2].hash)
    assert.equal(64, #versions[2].hash)
    assert.not_equal(versions[1].hash, versions[2].hash)
    assert.equal(2, store:version())
  end)
end)

describe("config: examples", function()
  it("examples/paper.lua is valid in every environment without any secret", function()
    for _, env in ipairs { "development", "testing", "production" } do
      local snap, errors = config.load("examples/paper.lua", { environment = env, getenv = NOENV })
      assert.truthy(snap, errors and config.format_errors(errors))
      assert.equal(2, #snap.config.accounts)
    end
  end)

  it("examples/live-aster.lua is valid in production with its secrets set, and names them when not", function()
    local vars = { ASTER_API_KEY = "k-123456", ASTER_API_SECRET = "s-123456", DEEPSEEK_API_KEY = "d-123456",
                   DATABASE_URL = "postgresql:///vibex", VIBEX_API_TOKEN = "t-123456" }
    local snap = assert(config.load("examples/live-aster.lua", { environment = "production", getenv = function(n) return vars[n] end }))
    assert.equal("live", snap.config.accounts[1].mode)
    assert.is_false(snap.config.accounts[1].exchange.testnet)
    local dev = assert(config.load("examples/live-aster.lua", { environment = "development", getenv = function(n) return vars[n] end }))
    assert.is_true(dev.config.accounts[1].exchange.testnet)
    local _, errors = config.load("examples/live-aster.lua", { environment = "production", getenv = NOENV })
    assert.equal(5, #errors)
    assert.matches("secret ASTER_API_SECRET is not set", config.format_errors(errors), 1, true)
  end)
end)
