-- The agent end to end: two accounts (a paper one on the simulated venue,
-- a live one on the fake Aster server), the fake LLM provider in both wire
-- formats, the real database. Everything is asserted from what was
-- recorded.
local h = require "helpers"
local db = require "vibex.db"
local migrate = require "vibex.db.migrate"
local config = require "vibex.config"
local scripts = require "vibex.scripts"
local agent = require "vibex.agent"
local replay = require "vibex.agent.replay"
local exchange = require "vibex.exchange"
local marketdata = require "vibex.marketdata"
local json = require "vibex.json"
local runtime = require "vibex.runtime"
local task = require "vibex.task"
local datasets = require "vibex.data"
local paper = require "vibex.exchange.paper"
local vtime = require "vibex.time"

local CONFIG = [[
return {
  llm = { providers = {
    { name = "oai", kind = "openai", base_url = "%s/v1", model = "m-paper", api_key = env "FAKE_LLM_KEY",
      max_retries = 1, retry_base_ms = 5, price = { input_per_mtok = 1, output_per_mtok = 2 } },
    { name = "ant", kind = "anthropic", base_url = "%s", model = "m-live", api_key = env "FAKE_LLM_KEY",
      max_retries = 1, retry_base_ms = 5, breaker = { failure_threshold = 2, cooldown_ms = 300 } },
    { name = "rel", kind = "openai", base_url = "%s/v1", model = "m-reload", api_key = env "FAKE_LLM_KEY" },
  } },
  strategies = { llm = { params = { max_size_usd = 1000 } } },
  accounts = {
    { name = "paper1", exchange = { venue = "sim" }, symbols = { "BTCUSDT", "ETHUSDT" }, llm = "oai", strategy = "llm",
      decision_interval_s = 300, fallback = { policy = "rules", after_invalid = 2, cooldown_s = 600 },
      risk = { max_leverage = 3, max_position_notional = 1000, max_total_notional = 2000, max_open_positions = 2,
               min_confidence = 0.6, max_orders_per_minute = 20 } },
    { name = "live1", mode = "live", symbols = { "BTCUSDT" }, llm = "ant", strategy = "llm", decision_interval_s = 300,
      exchange = { venue = "aster", testnet = true, chain_id = 1666, base_url = "%s", ws_url = "%s",
                   credentials = { user = env "ASTER_USER", signer = env "ASTER_SIGNER", private_key = env "ASTER_PRIVATE_KEY" } },
      fallback = { policy = "hold", after_invalid = 3 },
      risk = { max_leverage = 3, max_position_notional = 200, max_total_notional = 200, max_open_positions = 1,
               min_confidence = 0.6, max_orders_per_minute = 20 } },
    { name = "reload", exchange = { venue = "sim" }, symbols = { "BTCUSDT" }, llm = "rel", strategy = "llm",
      decision_interval_s = 300 },
  },
}
]]

describe("agent", function()
  local cluster, pool, repos, llmfake, venue_fake, dir, reg, cfg, ag
  local services = {}

  setup(function()
    cluster = h.postgres()
    pool = db.pool { conninfo = cluster.conninfo, size = 3 }
    assert(migrate.up(pool))
    repos = db.repos { pool = pool }
    llmfake = h.fake_llm { key = "sk-fake-llm" }
    venue_fake = h.fake_aster { accounts = { { name = "live1", balance = "10000", user = h.ASTER_V3.user, signer = h.ASTER_V3.signer } } }
    dir = h.tmpdir()
    assert(runtime.mkdir_p(dir .. "/scripts"))
    for _, f in ipairs { "context", "prompt", "policy", "ema_cross" } do
      h.write(dir .. "/scripts/" .. f .. ".lua", assert(runtime.read_file("scripts/" .. f .. ".lua")))
    end
    h.write(dir .. "/vibex.lua", CONFIG:format(llmfake.base, llmfake.base, llmfake.base, venue_fake.base, venue_fake.ws))
    h.write(dir .. "/.env", ("FAKE_LLM_KEY=sk-fake-llm\nASTER_USER=%s\nASTER_SIGNER=%s\nASTER_PRIVATE_KEY=%s\n")
      :format(h.ASTER_V3.user, h.ASTER_V3.signer, h.ASTER_V3.private_key))
    local snap, errs = config.load(dir .. "/vibex.lua", { environment = "testing" })
    assert(snap, errs and config.format_errors(errs, dir .. "/vibex.lua"))
    cfg = snap.config
    reg = scripts.registry { dir = dir .. "/scripts" }
    reg:load_all()
    assert(reg:watch())
    for _, acc in ipairs(cfg.accounts) do
      assert(repos.accounts:ensure { name = acc.name, venue = acc.exchange.venue, mode = acc.mode })
    end
    ag = agent.new { config = cfg, repos = repos, scripts = reg, getenv = function() end, data_dir = dir .. "/data",
                     venue = function(acc)
                       if acc.exchange.venue == "sim" then return paper.venue(acc) end
                       return assert(exchange.from_config(acc))
                     end,
                     -- a live account's candles come from the venue's market-data service
                     market = function(acc)
                       if acc.exchange.venue == "sim" then return nil end
                       local md = marketdata.live { client = assert(exchange.from_config(acc)) }
                       assert(md:track(acc.symbols, { "5m", "1h" }, 400))
                       services[#services + 1] = md
                       return md
                     end }
    for _, acc in ipairs(cfg.accounts) do ag:add_account(acc) end
  end)
  teardown(function()
    if ag then ag:close() end
    for _, md in ipairs(services) do md:close() end
    if reg then reg:close() end
    llmfake.stop()
    venue_fake.stop()
    pool:close()
    cluster:stop()
  end)

  local function model(name, m) llmfake.ctl("setup", { models = { [name] = m } }) end
  local function calls(name)
    local n = 0
    for _, c in ipairs(llmfake.log()) do if c.model == name then n = n + 1 end end
    return n
  end

  -- Paper market data: generated candles pushed into the account's venue
  -- and market series, as the replay does.
  local candles, pushed = {}, {}
  local function advance(name, n)
    local a = ag.accounts[name]
    for _, sym in ipairs(a.mview.symbols) do
      candles[sym] = candles[sym] or datasets.generate(sym, paper.spec(sym), 1000, 300000, vtime.date_ms("2026-03-01"), 3)
      pushed[name .. sym] = pushed[name .. sym] or 0
      for _ = 1, n do
        pushed[name .. sym] = pushed[name .. sym] + 1
        local k = candles[sym][pushed[name .. sym]]
        a.sim:candle(sym, k, 300000)
        a.market:push(sym, { open_time = k.open_time, open = tonumber(k.open), high = tonumber(k.high), low = tonumber(k.low),
                             close = tonumber(k.close), volume = tonumber(k.volume) })
      end
    end
  end

  local function cycle(name, error_like)
    local rec, err = ag:cycle(name)
    assert(rec, err)
    if error_like then
      assert.truthy(rec.error and rec.error:find(error_like, 1, true), rec.error)
    else
      assert.is_nil(rec.error, rec.error)
    end
    return rec
  end

  it("runs paper cycles from model answers: valid, prose, repaired, rejected, then the fallback and back", function()
    advance("paper1", 300)
    model("m-paper", { sequence = { "good", "prose", "malformed", "good", "out_of_range", "out_of_range",
                                    "unknown", "unknown" }, mode = "close" })
    local r1 = cycle("paper1")
    assert.equal("model", r1.source)
    assert.equal(3, #r1.orders) -- entry, stop loss, take profit
    for _, o in ipairs(r1.orders) do assert.equal("new", o.status) end
    advance("paper1", 1) -- the market entry fills on the next candle
    local r2 = cycle("paper1")
    assert.equal("pyramiding", r2.validation.refusals[1].rule) -- long already: the gate refuses adding
    assert.truthy(table.concat(r2.validation.notes, ","):find("numbers") == nil)
    local r3 = cycle("paper1")
    assert.is_true(r3.validation.repair_asked)
    assert.is_true(r3.valid)
    local r4 = cycle("paper1")
    assert.is_false(r4.valid)
    assert.truthy(r4.validation.rejected[1].reason:find("free margin", 1, true))
    assert.equal(0, #r4.orders)
    local r5 = cycle("paper1") -- the second invalid cycle in a row: the fallback takes over now
    assert.equal("fallback", r5.source)
    assert.equal("engaged", r5.fallback_event)
    local before = calls("m-paper")
    advance("paper1", 1)
    local r6 = cycle("paper1")
    assert.equal("fallback", r6.source)
    assert.equal(before, calls("m-paper")) -- cooling down: the model is not asked
    advance("paper1", 2)                   -- 15 minutes later the cool-down (10 min) is over
    local r7 = cycle("paper1")
    assert.equal("model", r7.source)
    assert.equal("released", r7.fallback_event)
    assert.equal("close", r7.decisions[1].action)
    advance("paper1", 1)
    cycle("paper1") -- settles the close's fills

    -- from the database, once the records written behind the cycles are in
    ag:flush_records()
    local rows = assert(pool:query([[SELECT d.* FROM decisions d JOIN accounts a USING (account_id)
      WHERE a.name = 'paper1' ORDER BY d.started_at, d.decision_id]]))
    assert.equal(8, #rows)
    local model_rows = 0
    for _, d in ipairs(rows) do
      local parsed = d.parsed and json.decode(d.parsed)
      if parsed and parsed.source == "model" then
        model_rows = model_rows + 1
        assert.is_true(tonumber(d.tokens_in) > 0 and tonumber(d.tokens_out) > 0)
        assert.is_true(tonumber(d.latency_ms) >= 0)
        assert.is_true(tonumber(d.cost) > 0)
        assert.truthy(d.prompt_version:match("^prompt@%d+$"))
      end
      assert.truthy(json.decode(d.step_ms).context)
    end
    assert.is_true(model_rows >= 4)
    local rejected = assert(pool:query([[SELECT validation FROM decisions d JOIN accounts a USING (account_id)
      WHERE a.name = 'paper1' AND d.valid = false]]))
    assert.is_true(#rejected >= 1)
    assert.truthy(json.decode(rejected[1].validation).rejected[1].reason:find("free margin", 1, true))
    local repairs = assert(pool:query("SELECT count(*) AS n FROM llm_calls WHERE purpose = 'repair'"))
    assert.is_true(tonumber(repairs[1].n) >= 2)
    local refusals = assert(pool:query([[SELECT rule FROM risk_refusals r JOIN accounts a USING (account_id)
      WHERE a.name = 'paper1']]))
    assert.equal("pyramiding", refusals[1].rule)
    local orders = assert(pool:query([[SELECT o.* FROM orders o JOIN accounts a USING (account_id) WHERE a.name = 'paper1']]))
    assert.is_true(#orders >= 4)
    for _, o in ipairs(orders) do assert.is_not_nil(o.decision_id) end
    local fills = assert(pool:query([[SELECT f.* FROM fills f JOIN accounts a USING (account_id) WHERE a.name = 'paper1']]))
    assert.is_true(#fills >= 2) -- the entry and the close
    local diary = assert(pool:query([[SELECT e.body, array_to_string(e.tags, ',') AS tags, e.decision_id
      FROM diary_entries e JOIN accounts a USING (account_id) WHERE a.name = 'paper1' ORDER BY e.diary_entry_id]]))
    assert.equal(8, #diary)
    local all_tags = {}
    for _, e in ipairs(diary) do
      all_tags[#all_tags + 1] = e.tags
      assert.is_not_nil(e.decision_id)
    end
    all_tags = table.concat(all_tags, ";")
    assert.truthy(all_tags:find("fallback_engaged", 1, true))
    assert.truthy(all_tags:find("fallback_released", 1, true))
    assert.truthy(diary[5].body:find("Fallback engaged", 1, true))
    -- the close's result is told back with the decision that opened the position
    assert.truthy(diary[8].body:find("Since the last cycle: BTCUSDT realized", 1, true), diary[8].body)
    assert.truthy(diary[8].body:find("the position opened at " .. r1.cycle_key, 1, true), diary[8].body)
    local perf = assert(pool:query([[SELECT m.* FROM performance_metrics m JOIN accounts a USING (account_id)
      WHERE a.name = 'paper1' ORDER BY m.performance_metric_id DESC LIMIT 1]]))
    assert.equal("llm", perf[1].strategy)
    assert.is_true(tonumber(perf[1].fees) > 0)
  end)

  it("runs live cycles on the fake exchange: nothing outside the risk limits reaches it; a broken model falls back", function()
    local a = ag.accounts.live1
    model("m-live", { sequence = { "good", "risky", "500", "500", "500", "500" }, mode = "hold" })
    local l1 = cycle("live1")
    assert.equal("model", l1.source)
    assert.equal("new", l1.orders[2].status) -- the stop loss rests at the venue
    -- the entry's fill comes back on the user stream
    assert.is_true(h.wait_until(function() return #a.events > 0 end, 10000))
    local l2 = cycle("live1")
    assert.equal("max_leverage", l2.validation.refusals[1].rule)
    assert.equal(0, #l2.orders)
    local l3 = cycle("live1", "(500)")         -- 500 twice (one retry): the call fails, the fallback holds
    assert.equal("fallback", l3.source)
    local l4 = cycle("live1", "(500)")         -- fails again: the breaker opens
    assert.equal("fallback", l4.source)
    assert.equal("open", ag:client(ag:provider(cfg.accounts[2])):breaker_state())
    local before = calls("m-live")
    local l5 = cycle("live1")
    assert.equal("fallback", l5.source)
    assert.equal(before, calls("m-live"))     -- open: not asked
    local c = ag:client(ag:provider(cfg.accounts[2]))
    assert.is_true(h.wait_until(function() return c.breaker:retry_in_ms() == 0 end, 5000))
    model("m-live", { mode = "hold" })
    local l6 = cycle("live1")
    assert.equal("model", l6.source)
    assert.equal("released", l6.fallback_event)

    -- what reached the exchange
    local live = assert(exchange.aster { base_url = venue_fake.base, ws_url = venue_fake.ws, credentials = h.ASTER_V3, account = "x" })
    local all = assert(live:all_orders("BTCUSDT"))
    local entries = 0
    for _, o in ipairs(all) do
      if not o.reduceOnly and not o.closePosition then
        entries = entries + 1
        assert.is_true(tonumber(o.origQty) * 60000 * 1.05 <= 200, "entry notional above the limit")
      end
    end
    assert.equal(1, entries)
    for _, p in ipairs(assert(live:positions("BTCUSDT"))) do assert.is_true(tonumber(p.leverage) <= 3) end
    local fills = assert(pool:query([[SELECT f.* FROM fills f JOIN accounts a USING (account_id) WHERE a.name = 'live1']]))
    assert.equal(1, #fills)
    local tokens = assert(pool:query([[SELECT sum(tokens_in) AS t FROM decisions d JOIN accounts a USING (account_id)
      WHERE a.name = 'live1']]))
    assert.is_true(tonumber(tokens[1].t) > 0)
    local outcomes = assert(pool:query([[SELECT outcome, count(*) AS n FROM llm_calls c JOIN accounts a USING (account_id)
      WHERE a.name = 'live1' GROUP BY outcome ORDER BY outcome]]))
    local by = {}
    for _, r in ipairs(outcomes) do by[r.outcome] = tonumber(r.n) end
    assert.equal(2, by.unavailable)
    assert.equal(3, by.ok) -- l1, l2 and the probe; nothing was sent while the breaker was open
    local diary = assert(pool:query([[SELECT array_to_string(e.tags, ',') AS tags FROM diary_entries e
      JOIN accounts a USING (account_id) WHERE a.name = 'live1']]))
    assert.equal(6, #diary)
  end)

  it("trades paper next to a live market: the venue's public prices feed the simulator", function()
    local acc = { name = "shadow", mode = "paper", symbols = { "BTCUSDT" }, llm = "oai", strategy = "llm", decision_interval_s = 300,
                  exchange = { venue = "aster", base_url = venue_fake.base, testnet = true },
                  fallback = { policy = "hold", after_invalid = 3, cooldown_s = 600 },
                  risk = { max_leverage = 3, max_position_notional = 1000, max_total_notional = 1000, max_open_positions = 1,
                           min_confidence = 0.6, max_orders_per_minute = 20, max_daily_loss = 100 },
                  paper = { starting_balance = 5000, fee_rate = 0.0004 } }
    assert(repos.accounts:ensure { name = "shadow", venue = "aster", mode = "paper" })
    local public = assert(exchange.from_config { name = "shadow", exchange = { venue = "aster", base_url = venue_fake.base,
                                                                               ws_url = venue_fake.ws } })
    local md = marketdata.live { client = public }
    assert(md:track(acc.symbols, { "5m", "1h" }, 400))
    local sim = paper.venue(acc)
    local a = ag:add_account(acc, { venue = sim, sim = sim, market = md, data_venue = true })
    model("m-paper", { mode = "good" })
    local r1 = ag:cycle("shadow", { account = acc })
    assert.is_nil(r1.error, r1.error)
    assert.equal("model", r1.source)
    assert.equal("new", r1.orders[1].status)
    assert.is_true(a.market:series("BTCUSDT", "5m"):len() >= 300) -- history loaded over REST
    local r2 = ag:cycle("shadow", { account = acc }) -- the next live price fills the paper entry
    assert.is_nil(r2.error, r2.error)
    local pos = a.venue:positions("BTCUSDT")[1]
    assert.is_true(tonumber(pos.quantity) > 0)
    -- filled at the live venue's price (its mark), not at a made-up one
    local mark = tonumber(public:premium_index("BTCUSDT").markPrice)
    assert.near(mark, tonumber(pos.entry_price), mark * 0.03)
    ag:remove_account("shadow")
    md:close()
  end)

  it("reloads prompt.lua while cycles run: the next prompt changes, a broken edit keeps the previous one", function()
    model("m-reload", { mode = "hold" })
    advance("reload", 300)
    local stop, errors, ran = false, {}, 0
    local t = task.spawn("load", function()
      while not stop do
        advance("reload", 1)
        local rec, err = ag:cycle("reload")
        ran = ran + 1
        if not rec or rec.error then errors[#errors + 1] = tostring(err or rec.error) end
        task.yield()
      end
    end)
    local function last_system()
      local log = llmfake.log()
      for i = #log, 1, -1 do if log[i].model == "m-reload" then return log[i].messages[1].content end end
      return ""
    end
    assert.is_true(h.wait_until(function() return ran >= 3 end, 10000))
    local src = assert(runtime.read_file(dir .. "/scripts/prompt.lua"))
    h.write(dir .. "/scripts/prompt.lua", (src:gsub('"You are a disciplined', '"MARKER-V2 You are a disciplined')))
    assert.is_true(h.wait_until(function() return last_system():find("MARKER-V2", 1, true) ~= nil end, 10000))
    local n = ran
    h.write(dir .. "/scripts/prompt.lua", "return { render = function( end }")
    assert.is_true(h.wait_until(function() return reg.errors.prompt ~= nil end, 10000))
    assert.is_true(h.wait_until(function() return ran >= n + 3 end, 10000))
    stop = true
    t:join(10000)
    assert.same({}, errors)
    assert.truthy(last_system():find("MARKER-V2", 1, true)) -- the previous (good) version still renders
    h.write(dir .. "/scripts/prompt.lua", src)
  end)
end)
