-- 10,000 random or adversarial model answers (seeded, from the fake LLM
-- process) through the whole cycle — validation, the default policy, the
-- risk gate, the simulated venue — and not one order that breaks a limit.
-- The check is independent of the gate: it watches what the venue was
-- asked to do.
local h = require "helpers"
local config_schema = require "vibex.config_schema"
local S = require "vibex.schema"
local scripts = require "vibex.scripts"
local agent = require "vibex.agent"
local replay = require "vibex.agent.replay"
local secret = require "vibex.secret"
local runtime = require "vibex.runtime"
local datasets = require "vibex.data"
local paper = require "vibex.exchange.paper"
local vtime = require "vibex.time"

local ANSWERS = tonumber(os.getenv("VIBEX_FUZZ_ANSWERS") or "10000")

describe("agent fuzz", function()
  local fake
  setup(function() fake = h.fake_llm { key = "sk-fuzz" } end)
  teardown(function() fake.stop() end)

  it(("turns %d adversarial answers into zero orders that break the risk limits"):format(ANSWERS), function()
    fake.ctl("setup", { models = { ["m-fuzz"] = { mode = "fuzz", seed = 1000 } } })
    local LIMITS = { max_leverage = 3, max_position_notional = 800, max_total_notional = 1200, max_open_positions = 2,
                     max_daily_loss = 40, min_confidence = 0.6, max_orders_per_minute = 4 }
    local raw = {
      llm = { providers = { { name = "fz", kind = "openai", base_url = fake.base .. "/v1", model = "m-fuzz",
                              api_key = secret.new("FZ", "sk-fuzz"), max_retries = 0 } } },
      accounts = { { name = "fuzz", exchange = { venue = "sim" }, symbols = { "BTCUSDT", "ETHUSDT", "XRPUSDT" },
                     llm = "fz", decision_interval_s = 60, risk = LIMITS,
                     strategy = { intervals = { "1m", "5m" } }, fallback = { policy = "hold", after_invalid = 100 },
                     paper = { starting_balance = 2000 } } },
    }
    local cfg, errs = S.validate(config_schema.config, raw, { data = { environment = "testing" } })
    assert(cfg, errs and errs[1] and (errs[1].path .. ": " .. errs[1].message))
    local reg = scripts.registry { dir = runtime.home() .. "/scripts" }
    reg:load_all()
    local acc = cfg.accounts[1]
    local ag = agent.new { config = cfg, scripts = reg, getenv = function() end, venue = function(a) return paper.venue(a) end }
    local a = ag:add_account(acc)
    local venue = a.sim -- the simulated venue itself: watch the exact requests the executor sends

    -- watch what the venue is asked to do
    local violations, placed, entries = {}, {}, 0
    local day, day_equity = nil, nil
    local function equity()
      local b = venue:balances()[1]
      return tonumber(b.balance) + tonumber(b.crossUnPnl), tonumber(b.availableBalance)
    end
    local place, set_leverage = venue.send_order, venue.set_leverage
    function venue.set_leverage(v, symbol, lev)
      if lev > LIMITS.max_leverage then violations[#violations + 1] = ("leverage %s on %s"):format(lev, symbol) end
      return set_leverage(v, symbol, lev)
    end
    function venue.send_order(v, o)
      local now = v:now()
      local entry = not o.reduceOnly and not o.closePosition
      if entry then
        entries = entries + 1
        local recent = 0
        for _, t in ipairs(placed) do if t > now - 60000 then recent = recent + 1 end end
        if recent + 1 > LIMITS.max_orders_per_minute then violations[#violations + 1] = "order rate" end
        local eq = equity()
        if day_equity and day_equity - eq >= LIMITS.max_daily_loss then violations[#violations + 1] = "entry after the daily loss" end
        local px = tonumber(v:ticker(o.symbol).price)
        local n = tonumber(o.quantity) * px
        -- exposure per symbol: positions, and entries sent but not filled yet
        local exposure = {}
        for _, p in ipairs(v:positions()) do
          local q = math.abs(tonumber(p.positionAmt))
          if q > 0 then exposure[p.symbol] = (exposure[p.symbol] or 0) + q * tonumber(p.markPrice) end
        end
        for _, oo in ipairs(v:open_orders()) do
          if oo.type == "MARKET" and not oo.reduceOnly then
            exposure[oo.symbol] = (exposure[oo.symbol] or 0) + tonumber(oo.origQty) * tonumber(v:ticker(oo.symbol).price)
          end
        end
        local total, count = 0, 0
        for _, x in pairs(exposure) do total, count = total + x, count + 1 end
        if exposure[o.symbol] then violations[#violations + 1] = "added to a position" end
        if count + 1 > LIMITS.max_open_positions then violations[#violations + 1] = "open positions" end
        if n > LIMITS.max_position_notional * 1.0001 then violations[#violations + 1] = ("position notional %.2f"):format(n) end
        if total + n > LIMITS.max_total_notional * 1.0001 then violations[#violations + 1] = ("total notional %.2f"):format(total + n) end
      end
      placed[#placed + 1] = now
      local res, err = place(v, o)
      return res, err
    end

    -- a market that moves: one 1-minute candle every third cycle (so the
    -- order rate is tested within a minute), a few percent a day
    local data, next_i = {}, 1
    for _, sym in ipairs(acc.symbols) do
      data[sym] = datasets.generate(sym, paper.spec(sym), 300 + ANSWERS, 60000, vtime.date_ms("2026-02-01"), 11)
    end
    local function advance()
      for _, sym in ipairs(acc.symbols) do
        local k = data[sym][next_i]
        venue:candle(sym, k, 60000)
        a.market:push(sym, { open_time = k.open_time, open = tonumber(k.open), high = tonumber(k.high), low = tonumber(k.low),
                             close = tonumber(k.close), volume = tonumber(k.volume) })
      end
      next_i = next_i + 1
    end
    for _ = 1, 100 do advance() end
    local outcomes, model_ms, overhead_ms = {}, 0, 0
    for i = 1, ANSWERS do
      if i % 3 == 0 then advance() end
      local d = math.floor(venue:now() / 86400000)
      if d ~= day then day, day_equity = d, equity() end
      local rec, err = ag:cycle("fuzz")
      assert(rec, err)
      model_ms, overhead_ms = model_ms + rec.model_ms, overhead_ms + rec.overhead_ms
      local k = rec.valid == true and "valid" or rec.valid == false and "invalid" or (rec.error and "error" or "other")
      outcomes[k] = (outcomes[k] or 0) + 1
    end
    ag:close()
    print(("fuzz: %d answers, model %.2f ms and the rest %.2f ms per cycle; %d entries tried"):format(ANSWERS,
      model_ms / ANSWERS, overhead_ms / ANSWERS, entries))
    assert.same({}, violations)
    -- the fuzz reached every part: valid answers, invalid ones, orders and refusals
    assert.is_true((outcomes.valid or 0) > ANSWERS / 10)
    assert.is_true((outcomes.invalid or 0) > ANSWERS / 10)
    assert.is_true(entries > 10, "only " .. entries .. " entries were tried")
  end)
end)
