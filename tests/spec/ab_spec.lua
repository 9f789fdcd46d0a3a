-- Experiments: deterministic, persisted assignment; Thompson sampling that
-- moves traffic to what works; an arena of three fake models of known
-- quality ranked correctly, its report recomputed from the raw rows; the
-- chart; and the config errors.
local h = require "helpers"
local ab = require "vibex.ab"
local report = require "vibex.ab.report"
local config = require "vibex.config"
local config_schema = require "vibex.config_schema"
local S = require "vibex.schema"
local db = require "vibex.db"
local migrate = require "vibex.db.migrate"
local json = require "vibex.json"
local runtime = require "vibex.runtime"
local secret = require "vibex.secret"
local vtime = require "vibex.time"
local datasets = require "vibex.data"
local paper = require "vibex.exchange.paper"

local function experiment(o)
  local e = { name = "exp", enabled = true, accounts = { "a1" }, unit = "cycle", split = "fixed", outcome = "return",
              variants = { { name = "A", weight = 1, params = {} }, { name = "B", weight = 3, params = {} } } }
  for k, v in pairs(o or {}) do e[k] = v end
  return e
end

describe("experiments: assignment", function()
  it("gives the same unit the same variant every time, and honours the weights over 10,000 units", function()
    local e = experiment()
    local n = { A = 0, B = 0 }
    for i = 1, 10000 do
      local v = ab.choose(e, 1, "a1/" .. i)
      assert.equal(v.name, ab.choose(e, 1, "a1/" .. i).name)
      n[v.name] = n[v.name] + 1
    end
    -- B has weight 3 of 4: 7500 expected, sd = sqrt(10000 * 0.75 * 0.25) = 43.3; 4 sd either side
    assert.is_true(math.abs(n.B - 7500) < 4 * 43.3, "B got " .. n.B)
    -- another version reshuffles (a changed experiment starts over)
    local moved = 0
    for i = 1, 1000 do if ab.choose(e, 1, "u" .. i).name ~= ab.choose(e, 2, "u" .. i).name then moved = moved + 1 end end
    assert.is_true(moved > 200)
  end)

  it("hashes the definition: a changed variant is a new version, a reordered table is not", function()
    local e1, e2 = experiment(), experiment()
    assert.equal(ab.hash(e1), ab.hash(e2))
    e2.variants[2].weight = 2
    assert.are_not.equal(ab.hash(e1), ab.hash(e2))
    local lab = ab.new { config = { experiments = { e1 } } }
    assert.equal(1, lab:version(e1).version)
    assert.equal(2, lab:version(e2).version)
  end)

  it("runs an experiment only between its start and stop", function()
    local e = experiment { start = "2026-12-01", stop = "2026-12-31" }
    local lab = ab.new { config = { experiments = { e } } }
    local day = 86400000
    local dec1 = vtime.date_ms("2026-12-01")
    assert.is_nil(lab:experiment_for("a1", dec1 - 1))
    assert.equal(e, lab:experiment_for("a1", dec1))
    assert.equal(e, lab:experiment_for("a1", dec1 + 30 * day + day - 1)) -- all of the stop day
    assert.is_nil(lab:experiment_for("a1", dec1 + 31 * day))
    assert.is_nil(lab:experiment_for("a2", dec1 + day))
    e.enabled = false
    assert.is_nil(lab:experiment_for("a1", dec1 + day))
  end)

  it("draws Beta variates with the right mean", function()
    local r = ab.stream("beta-test")
    local s = 0
    for _ = 1, 4000 do s = s + ab.beta(r, 8, 2) end
    assert.near(0.8, s / 4000, 0.01) -- mean a / (a + b); sd of the mean 0.002
  end)
end)

describe("experiments: config errors", function()
  local function check(extra)
    local raw = {
      llm = { providers = { { name = "p1", kind = "openai", base_url = "http://127.0.0.1:1/v1", model = "m",
                              api_key = secret.new("K", "x") } } },
      accounts = { { name = "a1", exchange = { venue = "sim" }, symbols = { "BTCUSDT" } },
                   { name = "a2", exchange = { venue = "sim" }, symbols = { "BTCUSDT" } } },
      experiments = extra,
    }
    local _, errs = S.validate(config_schema.config, raw, { data = { environment = "testing",
      script_exists = function(name) return name == "prompt" or name == "context" or name == "policy" or name == "ema_cross" end } })
    local out = {}
    for _, e in ipairs(errs or {}) do out[#out + 1] = e.path .. ": " .. e.message end
    return table.concat(out, "\n")
  end
  local function variants(a, b) return { a or { name = "A" }, b or { name = "B" } } end

  it("names the path of each mistake", function()
    assert.equal("", check { { name = "ok", accounts = { "a1" }, variants = variants({ name = "A", llm = "p1", prompt = "prompt" }) } })
    assert.truthy(check { { name = "x", accounts = { "a1" }, variants = variants({ name = "A", llm = "nope" }) } }
      :find('experiments[1].variants[1].llm: no LLM provider named "nope"', 1, true))
    assert.truthy(check { { name = "x", accounts = { "a1" }, variants = variants({ name = "A", prompt = "missing_prompt" }) } }
      :find('experiments[1].variants[1].prompt: no script "missing_prompt"', 1, true))
    assert.truthy(check { { name = "x", accounts = { "a1" }, variants = variants({ name = "A", weight = 0 }, { name = "B", weight = 0 }) } }
      :find("experiments[1].variants: the weights must sum to a positive number, found 0", 1, true))
    assert.truthy(check { { name = "x", accounts = { "a1" }, variants = variants() },
                          { name = "y", accounts = { "a2", "a1" }, variants = variants() } }
      :find('experiments[2].accounts[2]: account "a1" is already in experiment "x"', 1, true))
    assert.truthy(check { { name = "x", accounts = { "zz" }, variants = variants() } }
      :find('experiments[1].accounts[1]: no account named "zz"', 1, true))
    assert.truthy(check { { name = "x", accounts = { "a1" }, split = "arena", unit = "account", variants = variants() } }
      :find("experiments[1].accounts: an arena needs one account per variant", 1, true))
  end)
end)

describe("experiments: with the database and the fake model", function()
  local cluster, pool, llm
  setup(function()
    cluster = h.postgres()
    pool = db.pool { conninfo = cluster.conninfo, size = 3 }
    assert(migrate.up(pool))
    llm = h.fake_llm { key = "sk-ab" }
  end)
  teardown(function()
    llm.stop()
    pool:close()
    cluster:stop()
  end)

  it("keeps assignments across restarts and reloads; a changed experiment starts a new version", function()
    local e = experiment { name = "persist" }
    local cfg = { experiments = { e } }
    local lab = ab.new { pool = pool, config = cfg }
    local first = {}
    for i = 1, 200 do first[i] = assert(lab:assign(e, "a1/" .. i)).name end
    local again = ab.new { pool = pool, config = cfg } -- a restart: nothing in memory
    for i = 1, 200 do assert.equal(first[i], (assert(again:assign(e, "a1/" .. i))).name) end
    -- stored: even a different rule would read the stored choice back
    local rows = assert(pool:query([[SELECT count(*) AS n FROM experiment_assignments x JOIN experiments USING (experiment_id)
      WHERE name = 'persist']]))
    assert.equal(200, tonumber(rows[1].n))
    local e2 = experiment { name = "persist" }
    e2.variants[1].weight = 5
    local v2 = assert(ab.new { pool = pool, config = { experiments = { e2 } } }:version(e2))
    assert.equal(2, v2.version)
    assert.equal(1, assert(ab.new { pool = pool, config = cfg }:version(e)).version)
  end)

  it("moves traffic to the better variant with Thompson sampling", function()
    llm.ctl("setup", { key = "sk-ab", models = { ["m-good"] = { mode = "hold" }, ["m-bad"] = { mode = "malformed" } } })
    local agent = require "vibex.agent"
    local replay = require "vibex.agent.replay"
    local scripts = require "vibex.scripts"
    local raw = {
      llm = { providers = { { name = "fz", kind = "openai", base_url = llm.base .. "/v1", model = "m-good",
                              api_key = secret.new("K", "sk-ab"), max_retries = 0 } } },
      accounts = { { name = "ts", exchange = { venue = "sim" }, symbols = { "BTCUSDT" }, llm = "fz", decision_interval_s = 300,
                     fallback = { policy = "hold", after_invalid = 100 } } },
      experiments = { { name = "thompson", accounts = { "ts" }, split = "thompson", outcome = "valid", min_trials = 5,
                        variants = { { name = "bad", model = "m-bad" }, { name = "good", model = "m-good" } } } },
    }
    local cfg, errs = S.validate(config_schema.config, raw, { data = { environment = "testing" } })
    assert.same({}, errs or {})
    assert(pool:query("INSERT INTO accounts (name, venue) VALUES ('ts', 'sim')"))
    local reg = scripts.registry { dir = runtime.home() .. "/scripts" }
    reg:load_all()
    local lab = ab.new { pool = pool, config = cfg }
    local ag = agent.new { config = cfg, repos = db.repos { pool = pool }, scripts = reg, lab = lab,
                           getenv = function() end, venue = paper.venue, data_dir = h.tmpdir() }
    local a = ag:add_account(cfg.accounts[1])
    local rows = datasets.generate("BTCUSDT", paper.spec("BTCUSDT"), 400, 300000, vtime.date_ms("2026-04-01"), 2)
    local counts = { early = { good = 0, bad = 0 }, late = { good = 0, bad = 0 } }
    for i, k in ipairs(rows) do
      a.sim:candle("BTCUSDT", k, 300000)
      a.market:push("BTCUSDT", { open_time = k.open_time, open = tonumber(k.open), high = tonumber(k.high),
                                 low = tonumber(k.low), close = tonumber(k.close), volume = tonumber(k.volume) })
      if i > 100 then
        local rec = assert(ag:cycle("ts"))
        local bucket = i <= 150 and counts.early or (i > 300 and counts.late or nil)
        if bucket then bucket[rec.variant] = bucket[rec.variant] + 1 end
      end
    end
    ag:close()
    -- the bad variant answers garbage every time: after a few cycles it gets almost no traffic
    assert.is_true(counts.late.good >= 95, ("late traffic: good %d, bad %d"):format(counts.late.good, counts.late.bad))
    assert.is_true(counts.early.bad >= 5, ("early traffic: good %d, bad %d"):format(counts.early.good, counts.early.bad))
    local rep = assert(report.build(pool, "thompson", { metric = "validity" }))
    assert.equal("good", rep.ranking[1])
    assert.is_true(rep.significant)
  end)

  it("ranks an arena of three fake models of known quality, and its report matches the raw rows", function()
    local dir = h.tmpdir()
    -- the replay's own candles, to tell the oracle where the price goes next
    local replay = require "vibex.agent.replay"
    local rows = datasets.generate("BTCUSDT", paper.spec("BTCUSDT"), 700, 300000, vtime.date_ms("2026-01-01"), 21)
    local future = {}
    for i = 1, #rows - 6 do
      local key = (("%.6f"):format(tonumber(rows[i].close)):gsub("0+$", ""):gsub("%.$", ""))
      future[key] = tonumber(rows[i + 6].close) > tonumber(rows[i].close) and "up" or "down"
    end
    llm.ctl("setup", { key = "sk-ab", models = { ["m-oracle"] = { mode = "oracle", future = future },
                                                 ["m-anti"] = { mode = "anti", future = future },
                                                 ["m-hold"] = { mode = "hold" } } })
    local function acc(name) return ([[{ name = %q, exchange = { venue = "sim" }, symbols = { "BTCUSDT" }, llm = "fake",
      decision_interval_s = 1800, fallback = { policy = "hold" },
      risk = { max_position_notional = 2000, max_total_notional = 2000, max_leverage = 3 } }]]):format(name) end
    h.write(dir .. "/arena.lua", ([[
return {
  runtime = { log_dir = %q, data_dir = %q },
  llm = { providers = { { name = "fake", kind = "openai", base_url = %q, model = "m-hold", api_key = env "FAKE_KEY",
                          max_retries = 0 } } },
  replay = { interval = "5m", candles = 700, seed = 21, warmup = 100 },
  accounts = { %s, %s, %s },
  experiments = { { name = "arena", split = "arena", unit = "account", accounts = { "oracle", "hold", "anti" },
    variants = { { name = "oracle", model = "m-oracle" }, { name = "hold", model = "m-hold" }, { name = "anti", model = "m-anti" } } } },
}
]]):format(dir .. "/logs", dir .. "/data", llm.base .. "/v1", acc("oracle"), acc("hold"), acc("anti")))
    h.write(dir .. "/.env", "FAKE_KEY=sk-ab\n")
    h.migrate(dir .. "/arena.lua")
    local out, err, code = h.vibex({ "run", dir .. "/arena.lua" }, { env = { VIBEX_ENV = "testing" }, timeout_ms = 180000 })
    assert.equal(0, code, err .. out)
    assert.truthy(out:find("Paper replay finished", 1, true))
    assert.truthy(out:find("oracle%s+oracle%s+model"), out) -- the summary names each account's variant
    local st = json.decode(assert(runtime.read_file(dir .. "/data/state.json")))
    assert.equal("oracle", st.leaderboard[1].account)  -- the live leaderboard, as of the end
    assert.equal("anti", st.leaderboard[3].account)
    local jout, jerr, jcode = h.vibex({ "ab", "report", "arena", dir .. "/arena.lua", "--json", "--chart", dir .. "/arena.svg" },
      { env = { VIBEX_ENV = "testing" } })
    assert.equal(0, jcode, jerr)
    local r = json.decode(jout)
    assert.same({ "oracle", "hold", "anti" }, r.ranking)

    -- recompute from the raw rows
    local hdl = assert(db.open { data_dir = dir .. "/data" })
    local ok, perr = pcall(function()
      for _, v in ipairs(r.variants) do
        local drows = assert(hdl.pool:query([[SELECT d.equity, d.tokens_in, d.cost FROM decisions d JOIN accounts a USING (account_id)
          WHERE a.name = $1 AND d.experiment = 'arena' ORDER BY d.started_at, d.decision_id]], v.name))
        assert.equal(#drows, v.cycles)
        local rets, pnl, tokens, cost = {}, 0, 0, 0
        for i, d in ipairs(drows) do
          tokens, cost = tokens + (tonumber(d.tokens_in) or 0), cost + (tonumber(d.cost) or 0)
          if i > 1 then
            rets[#rets + 1] = tonumber(d.equity) / tonumber(drows[i - 1].equity) - 1
            pnl = pnl + tonumber(d.equity) - tonumber(drows[i - 1].equity)
          end
        end
        local m = 0
        for _, x in ipairs(rets) do m = m + x end
        m = m / #rets
        assert.near(m, v.mean_return, 1e-12)
        assert.near(pnl, v.pnl, 1e-6)
        assert.equal(tokens, v.tokens_in)
        assert.near(cost, v.cost, 1e-9)
        assert.is_true(v.ci[1] <= v.mean_return and v.mean_return <= v.ci[2])
        local f = assert(hdl.pool:query([[SELECT COALESCE(sum(realized_pnl), 0) AS r, COALESCE(sum(fee), 0) AS fee FROM fills f
          JOIN accounts a USING (account_id) WHERE a.name = $1]], v.name))[1]
        assert.near(tonumber(f.r), v.realized, 1e-6)
        assert.near(tonumber(f.fee), v.fees, 1e-6)
      end
    end)
    hdl.close()
    assert(ok, perr)
    local oracle = r.variants[1]
    assert.is_true(oracle.mean_return > 0 and r.variants[3].mean_return < 0)

    -- the chart: an SVG with one polyline of many points per variant, and a legend
    local svg = assert(runtime.read_file(dir .. "/arena.svg"))
    assert.truthy(svg:match("^<svg "))
    assert.truthy(svg:match("</svg>%s*$"))
    local lines = 0
    for pts in svg:gmatch('<polyline[^>]-points="([^"]+)"') do
      lines = lines + 1
      local n = 0
      for _ in pts:gmatch("[%d.]+,[%d.]+") do n = n + 1 end
      assert.is_true(n >= 20, "a curve of " .. n .. " points")
    end
    assert.equal(3, lines)
    for _, name in ipairs { "oracle", "hold", "anti" } do assert.truthy(svg:find(">" .. name .. " (", 1, true)) end

    -- the text and CSV forms
    local tout = h.vibex({ "ab", "report", "arena", dir .. "/arena.lua" }, { env = { VIBEX_ENV = "testing" } })
    assert.truthy(tout:find("oracle leads hold", 1, true))
    local cout = h.vibex({ "ab", "report", "arena", dir .. "/arena.lua", "--csv" }, { env = { VIBEX_ENV = "testing" } })
    local header = cout:match("^([^\n]+)")
    assert.truthy(header:find("experiment,version,rank,name,cycles,mean_return", 1, true))
    local n = 0
    for _ in cout:gmatch("\narena,") do n = n + 1 end
    assert.equal(3, n)
    local sout = h.vibex({ "llm", "stats", dir .. "/arena.lua" }, { env = { VIBEX_ENV = "testing" } })
    assert.truthy(sout:find("m-oracle", 1, true))
  end)
end)
