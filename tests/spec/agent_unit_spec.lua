-- The decision validator and the risk gate, rule by rule, with numbers
-- worked out by hand in the test.
local decision = require "vibex.agent.decision"
local risk = require "vibex.agent.risk"
local perf = require "vibex.agent.perf"
local replay = require "vibex.agent.replay"
local datasets = require "vibex.data"
local vtime = require "vibex.time"

local CTX = {
  symbols = { BTCUSDT = { price = 100 }, ETHUSDT = { price = 10 } }, nsymbols = 2,
  positions = { ETHUSDT = { side = "long", qty = 5 } }, free_margin = 1000, max_leverage = 125,
}

local GOOD = '{"decisions": [{"symbol": "BTCUSDT", "action": "open_long", "size_usd": 500, "leverage": 2, '
  .. '"stop_loss": 95, "take_profit": 110, "confidence": 0.8, "rationale": "up"}]}'

describe("decision.read", function()
  it("accepts the forms models really write", function()
    local forms = {
      GOOD,
      "Sure! Here is my answer:\n```json\n" .. GOOD .. "\n```\nGood luck.",
      "I think " .. GOOD .. " is right",
      '[{"symbol": "BTCUSDT", "action": "open_long", "size_usd": 500, "leverage": 2, "stop_loss": 95, "confidence": 0.8}]',
      '{"symbol": "btcusdt", "action": "BUY", "size_usd": "500", "leverage": "2", "stop_loss": "95", "confidence": "0.8"}',
      '{"BTCUSDT": {"action": "long", "size_usd": "$500", "leverage": 2, "stop_loss": 95, "confidence": 0.8}}',
      '{"decisions": {"symbol": "BTCUSDT", "action": "open-long", "size_usd": "1,000", "leverage": 4, "stop_loss": 95, "confidence": 0.8}}',
    }
    for i, text in ipairs(forms) do
      local r = decision.read(text, CTX)
      assert.is_true(r.ok, "form " .. i .. ": " .. tostring(r.reason))
      assert.equal(1, #r.decisions, "form " .. i)
      local d = r.decisions[1]
      assert.equal("BTCUSDT", d.symbol)
      assert.equal("open_long", d.action)
      assert.equal(95, d.stop_loss)
      assert.equal(0.8, d.confidence)
    end
    assert.equal(1000, decision.read(forms[7], CTX).decisions[1].size_usd)
    local notes = decision.read(forms[5], CTX).notes
    assert.truthy(table.concat(notes, ","):find("numbers as strings"))
  end)

  it("rejects everything else with a reason", function()
    local cases = {
      { "", "empty" },
      { "I would not trade today.", "no JSON" },
      { '{"decisions": [{"symbol": "BTCUSDT", "action": "open_long",, }', "incomplete" },
      { '{"foo": 1}', "no \"decisions\"" },
      { '{"decisions": "none"}', "neither a list" },
    }
    for _, c in ipairs(cases) do
      local r = decision.read(c[1], CTX)
      assert.is_false(r.ok, c[1])
      assert.truthy(r.reason:find(c[2], 1, true), r.reason)
    end
  end)

  it("rejects decisions that must never become orders, and keeps the others", function()
    local function one(d)
      local r = decision.read(require("vibex.json").encode { decisions = { d } }, CTX)
      return r.decisions[1], r.rejected[1] and r.rejected[1].reason
    end
    local base = { symbol = "BTCUSDT", action = "open_long", size_usd = 500, leverage = 2, stop_loss = 95, confidence = 0.8 }
    local function with(k, v)
      local d = {}
      for kk, vv in pairs(base) do d[kk] = vv end
      d[k] = v
      return d
    end
    local cases = {
      { with("stop_loss", 101), "not below the price" },
      { with("take_profit", 99), "not above the price" },
      { with("action", "open_short"), "not above the price" },     -- a stop at 95 on a short
      { with("symbol", "DOGEUSDT"), "unknown symbol" },
      { with("action", "moon"), "unknown action" },
      { with("size_usd", 5000), "above the free margin" },         -- 5000 / 2 = 2500 > 1000
      { with("size_usd", -5), "must be positive" },
      { with("leverage", 500), "outside 1..125" },
      { with("confidence", 1.5), "outside 0..1" },
      { with("confidence", "high"), "not a finite number" },
      { with("stop_loss", nil), "needs a stop_loss" },
      { with("size_usd", nil), "needs size_usd" },
      { { symbol = "BTCUSDT", action = "close" }, "no open position" },
      { { symbol = "ETHUSDT", action = "adjust", stop_loss = 11 }, "not below the price" },
    }
    for i, c in ipairs(cases) do
      local d, reason = one(c[1])
      assert.is_nil(d, "case " .. i)
      assert.truthy(reason and reason:find(c[2], 1, true), ("case %d: %s"):format(i, tostring(reason)))
    end
    -- a good one next to a bad one: the good one stays
    local r = decision.read('{"decisions": [' .. GOOD:match("%[(.*)%]") .. ', {"symbol": "XXXUSDT", "action": "hold"}]}', CTX)
    assert.equal(1, #r.decisions)
    assert.equal(1, #r.rejected)
    -- 2000 USD at 2x needs exactly the free 1000: allowed
    assert.is_not_nil(one(with("size_usd", 2000)))
  end)
end)

describe("risk gate", function()
  local LIMITS = { max_leverage = 3, max_position_notional = 1000, max_total_notional = 1500, max_open_positions = 2,
                   max_daily_loss = 100, min_confidence = 0.6, max_orders_per_minute = 5 }
  local function view(o)
    local v = { now_ms = 86400000 * 10 + 3600000, symbols = { BTCUSDT = true, ETHUSDT = true, XRPUSDT = true },
                prices = { BTCUSDT = 100, ETHUSDT = 10, XRPUSDT = 1 }, positions = {}, equity = 10000, available = 10000 }
    for k, x in pairs(o or {}) do v[k] = x end
    return v
  end
  local function entry(o)
    local e = { kind = "entry", symbol = "BTCUSDT", side = "buy", qty = 5, price = 100, leverage = 2, confidence = 0.8 }
    for k, x in pairs(o or {}) do e[k] = x end
    return e
  end
  local function rule_of(g, orders, v)
    local _, refused = g:check(orders, v or view(), LIMITS)
    return refused[1] and refused[1].rule
  end

  it("passes an order inside every limit", function()
    local g = risk.gate()
    local ok, refused = g:check({ entry() }, view(), LIMITS)
    assert.equal(1, #ok)
    assert.equal(0, #refused)
  end)

  it("fires each rule on the order that breaks it", function()
    assert.equal("min_confidence", rule_of(risk.gate(), { entry { confidence = 0.5 } }))
    assert.equal("max_leverage", rule_of(risk.gate(), { entry { leverage = 4 } }))
    assert.equal("max_position_notional", rule_of(risk.gate(), { entry { qty = 10.01 } }))         -- 1001 > 1000
    assert.equal("symbol", rule_of(risk.gate(), { entry { symbol = "DOGEUSDT" } }))
    assert.equal("quantity", rule_of(risk.gate(), { entry { qty = 0 / 0 } }))
    local pos = { BTCUSDT = { side = "long", qty = 5, notional = 500 } }
    assert.equal("pyramiding", rule_of(risk.gate(), { entry() }, view { positions = pos }))
    assert.equal("opposite_position", rule_of(risk.gate(), { entry { side = "sell" } }, view { positions = pos }))
    local v = view { pyramiding = true, positions = pos }
    assert.is_nil(rule_of(risk.gate(), { entry() }, v))                                              -- 500 + 500 = 1000
    assert.equal("max_position_notional", rule_of(risk.gate(), { entry { qty = 5.1 } }, v))
    local two = { ETHUSDT = { side = "long", qty = 10, notional = 100 }, XRPUSDT = { side = "short", qty = 10, notional = 10 } }
    assert.equal("max_open_positions", rule_of(risk.gate(), { entry() }, view { positions = two }))
    -- total: 800 + 800 > 1500 within one check (the first approved counts against the second)
    local ok, refused = risk.gate():check({ entry { qty = 8 }, entry { symbol = "ETHUSDT", qty = 80, price = 10 } }, view(), LIMITS)
    assert.equal(1, #ok)
    assert.equal("max_total_notional", refused[1].rule)
    assert.equal("free_margin", rule_of(risk.gate(), { entry() }, view { available = 249 }))    -- 500 / 2 = 250
    assert.equal("database_outage", rule_of(risk.gate(), { entry() }, view { outage = true }))
  end)

  it("blocks entries after the daily loss until the next UTC day, never exits", function()
    local g = risk.gate { account = "t" }
    local day = 86400000 * 10
    assert.is_nil(rule_of(g, { entry() }, view { now_ms = day + 1000, equity = 10000 }))
    assert.equal("max_daily_loss", rule_of(g, { entry() }, view { now_ms = day + 5000, equity = 9900 }))
    local exit = { kind = "exit", symbol = "BTCUSDT", side = "sell", qty = 5, price = 100, reduce_only = true }
    assert.is_nil(rule_of(g, { exit }, view { now_ms = day + 6000, equity = 9850 }))
    assert.is_nil(rule_of(g, { entry() }, view { now_ms = day + 86400000, equity = 9850 })) -- a new day, a new start
  end)

  it("limits the order rate, but never for a way out", function()
    local g = risk.gate()
    local t = 86400000 * 10
    for i = 1, 5 do g:sent({}, t + i) end
    assert.equal("max_orders_per_minute", rule_of(g, { entry() }, view { now_ms = t + 10 }))
    local exit = { kind = "exit", symbol = "BTCUSDT", side = "sell", qty = 5, price = 100, reduce_only = true }
    assert.is_nil(rule_of(g, { exit }, view { now_ms = t + 10 }))
    assert.is_nil(rule_of(g, { entry() }, view { now_ms = t + 60010 }))                         -- the minute has passed
  end)

  it("refuses exits that are not reduce-only and stops that would fire at once", function()
    assert.equal("reduce_only", rule_of(risk.gate(), { { kind = "exit", symbol = "BTCUSDT", side = "sell", qty = 1 } }))
    local stop = { kind = "protect", protect = "stop", symbol = "BTCUSDT", side = "sell", stop_price = 101, close_position = true }
    assert.equal("protective_side", rule_of(risk.gate(), { stop }))
    stop.stop_price = 99
    assert.is_nil(rule_of(risk.gate(), { stop }))
    local tp = { kind = "protect", protect = "take_profit", symbol = "BTCUSDT", side = "sell", stop_price = 99, close_position = true }
    assert.equal("protective_side", rule_of(risk.gate(), { tp }))
  end)
end)

describe("performance", function()
  it("computes return, drawdown, win rate and Sharpe from the equity curve", function()
    local p = perf.new()
    local eq = { 100, 110, 99, 121 }
    for i, e in ipairs(eq) do p:observe(i * 3600000, e) end
    p:fill(10, 0.5); p:fill(-4, 0.5); p:fill(0, 0.1); p:funding(-0.25)
    local s = p:summary()
    assert.equal(21, s.pnl)
    assert.near(21, s.return_pct, 1e-12)
    assert.near(10, s.max_drawdown, 1e-12)            -- 110 -> 99
    assert.equal(2, s.trades)
    assert.equal(0.5, s.win_rate)
    assert.near(1.1, s.fees, 1e-12)
    assert.equal(-0.25, s.funding)
    -- returns 0.1, -0.1, 2/9: mean and sample sd by hand, hourly periods annualised
    local r = { 0.1, -0.1, 22 / 99 }
    local m = (r[1] + r[2] + r[3]) / 3
    local sd = math.sqrt(((r[1] - m) ^ 2 + (r[2] - m) ^ 2 + (r[3] - m) ^ 2) / 2)
    assert.near(m / sd * math.sqrt(365 * 24), s.sharpe, 1e-9)
  end)
end)

describe("replay data", function()
  it("generates the same candles from the same seed, on the tick, in time order", function()
    local spec = { tick = "0.1", step = "0.001" }
    local a = datasets.generate("BTCUSDT", spec, 500, 300000, vtime.date_ms("2026-01-01"), 7)
    local b = datasets.generate("BTCUSDT", spec, 500, 300000, vtime.date_ms("2026-01-01"), 7)
    local c = datasets.generate("BTCUSDT", spec, 500, 300000, vtime.date_ms("2026-01-01"), 8)
    assert.same(a, b)
    assert.are_not.same(a, c)
    assert.equal(1767225600000, a[1].open_time) -- 2026-01-01T00:00:00Z
    for i, k in ipairs(a) do
      assert.truthy(k.close:match("^%d+%.%d$"), k.close)
      assert.is_true(tonumber(k.high) >= math.max(tonumber(k.open), tonumber(k.close)))
      assert.is_true(tonumber(k.low) <= math.min(tonumber(k.open), tonumber(k.close)))
      if i > 1 then assert.equal(a[i - 1].open_time + 300000, k.open_time) end
    end
  end)
end)
