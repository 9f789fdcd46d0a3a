-- The order path's local rules and exactness: what is refused before a
-- byte is sent (and why), quantities that never pass through a binary
-- double, and V3 nonces that recover when a clock resync moves the offset
-- backwards (against the fake venue, which checks nonces as Aster does).
local h = require "helpers"
local orders = require "vibex.exchange.orders"
local filters = require "vibex.exchange.filters"
local exchange = require "vibex.exchange"
local venues = require "vibex.exchange.venue"
local execute = require "vibex.agent.execute"
local dec = require "vibex.decimal"
local sim = require "vibex.exchange.sim"

local RULES = filters.from_symbol { symbol = "BTCUSDT", status = "TRADING", filters = {
  { filterType = "PRICE_FILTER", minPrice = "1", maxPrice = "1000000", tickSize = "0.1" },
  { filterType = "LOT_SIZE", minQty = "0.001", maxQty = "1000", stepSize = "0.001" },
  { filterType = "MARKET_LOT_SIZE", minQty = "0.001", maxQty = "120", stepSize = "0.001" },
  { filterType = "MIN_NOTIONAL", notional = "5" },
  { filterType = "PERCENT_PRICE", multiplierUp = "1.15", multiplierDown = "0.85" } } }

local function prepare(order, quote) return orders.prepare(RULES, order, { account = "t", quote = quote }) end

describe("order preparation refuses locally, with the reason", function()
  it("closePosition with a quantity or with reduceOnly", function()
    local p, err = prepare { symbol = "BTCUSDT", side = "sell", type = "stop_market", stop_price = 59000,
                             close_position = true, quantity = "0.01" }
    assert.is_nil(p)
    assert.equal("invalid", err.kind)
    assert.truthy(err.message:find("takes no quantity", 1, true), err.message)
    p, err = prepare { symbol = "BTCUSDT", side = "sell", type = "stop_market", stop_price = 59000, close_position = true,
                       reduce_only = true }
    assert.is_nil(p)
    assert.truthy(err.message:find("cannot be combined with reduceOnly", 1, true), err.message)
    p, err = prepare { symbol = "BTCUSDT", side = "sell", type = "limit", price = 60000, close_position = true }
    assert.is_nil(p)
    assert.truthy(err.message:find("only with STOP_MARKET or TAKE_PROFIT_MARKET", 1, true), err.message)
    assert.truthy(prepare { symbol = "BTCUSDT", side = "sell", type = "stop_market", stop_price = 59000, close_position = true })
  end)

  it("client order ids of the wrong length or characters", function()
    local p, err = prepare { symbol = "BTCUSDT", side = "buy", type = "market", quantity = "0.01",
                             client_order_id = ("x"):rep(37) }
    assert.is_nil(p)
    assert.truthy(err.message:find("has 37 characters; the venue allows 1 to 36", 1, true), err.message)
    p, err = prepare { symbol = "BTCUSDT", side = "buy", type = "market", quantity = "0.01", client_order_id = "bad id!" }
    assert.is_nil(p)
    assert.truthy(err.message:find('has " " at position 4', 1, true), err.message)
    p, err = prepare { symbol = "BTCUSDT", side = "buy", type = "market", quantity = "0.01", client_order_id = "" }
    assert.is_nil(p)
    assert.truthy(prepare { symbol = "BTCUSDT", side = "buy", type = "market", quantity = "0.01", client_order_id = "ok.id:1/2_3-4" })
  end)

  it("MARKET orders against MIN_NOTIONAL and PERCENT_PRICE with the mark price", function()
    -- 0.001 BTC at a mark of 4000 is 4 USDT: below the 5 minimum
    local p, err = prepare({ symbol = "BTCUSDT", side = "buy", type = "market", quantity = "0.001" }, { mark = 4000 })
    assert.is_nil(p)
    assert.equal("MIN_NOTIONAL", err.filter)
    assert.truthy(prepare({ symbol = "BTCUSDT", side = "buy", type = "market", quantity = "0.001" }, { mark = 60000 }))
    -- a BUY would take an ask 20% above the mark: outside the band
    p, err = prepare({ symbol = "BTCUSDT", side = "buy", type = "market", quantity = "0.01" },
                     { mark = 60000, bid = 59990, ask = 72000 })
    assert.is_nil(p)
    assert.equal("PERCENT_PRICE", err.filter)
    p, err = prepare({ symbol = "BTCUSDT", side = "sell", type = "market", quantity = "0.01" },
                     { mark = 60000, bid = 50000, ask = 60010 })
    assert.equal("PERCENT_PRICE", err and err.filter)
    assert.truthy(prepare({ symbol = "BTCUSDT", side = "sell", type = "market", quantity = "0.01" },
                          { mark = 60000, bid = 59990, ask = 60010 }))
    -- a reduce-only exit is not held to the minimum notional
    assert.truthy(prepare({ symbol = "BTCUSDT", side = "sell", type = "market", quantity = "0.001", reduce_only = true },
                          { mark = 4000 }))
  end)
end)

describe("quantities are exact", function()
  it("divides a notional by the price in decimals and rounds down onto the step", function()
    assert.equal("0.006", RULES:qty_of_notional(400, 60000.1, true))     -- 0.0066665...
    assert.equal("0.005", RULES:qty_of_notional(300, 60000, true))       -- exactly 0.005, not 0.00499999…
    assert.equal("0.3", dec.div_round("0.3", "1", "0.1", "down"))         -- a double would give 0.2
    assert.equal("0.3", dec.round(0.3, "0.1", "down"))
    assert.equal("0.123", RULES:qty(0.1239, true, "down"))
  end)

  it("the executor's legs carry the exact strings it sends, client ids from account, cycle and leg", function()
    local paper = sim.new { balance = 10000 }
    paper:tick("BTCUSDT", "60000.1")
    local a = { venue = venues.new(paper), leverage = {}, exit_plans = {} }
    local view = { symbols = { BTCUSDT = true }, prices = { BTCUSDT = 60000.1 }, books = {}, positions = {} }
    local legs = execute.legs(a, { { action = "open", symbol = "BTCUSDT", side = "long", size_usd = 400, stop_loss = 58765.432,
                                     take_profit = 61234.567 } }, {}, view)
    local prepared, bad = execute.prepare(a, { name = "acc" }, legs, view, "2026-12-06T12:00:00Z")
    assert.same({}, bad)
    assert.equal(3, #prepared)
    assert.equal("0.006", prepared[1].params.quantity)
    assert.equal("58765.4", prepared[2].params.stopPrice) -- onto the tick
    assert.equal("61234.6", prepared[3].params.stopPrice)
    for i, leg in ipairs(prepared) do
      assert.equal(orders.client_order_id("acc", "2026-12-06T12:00:00Z", i), leg.params.newClientOrderId)
      local row = execute.row({ name = "acc" }, leg, "2026-12-06T12:00:00Z", { gate = "approved" })
      assert.equal(leg.params.quantity, row.quantity)   -- the record holds what is sent
      assert.equal(leg.params.stopPrice, row.stop_price)
    end
  end)
end)

describe("V3 nonces after a clock step", function()
  local fake
  setup(function()
    fake = h.fake_aster { accounts = { { name = "n3", balance = "1000", user = h.ASTER_V3.user, signer = h.ASTER_V3.signer } } }
  end)
  teardown(function() fake.stop() end)

  it("recover when a resync moves the offset backwards by more than the nonce window", function()
    -- the venue's clock runs 30 s ahead; the client syncs to it and trades
    fake.ctl("clock", { offset_ms = 30000 })
    local c = exchange.aster { base_url = fake.base, credentials = h.ASTER_V3, account = "n3" }
    assert(c:sync_time())
    for _ = 1, 3 do assert(c:balances()) end
    -- the venue's clock steps back 30 s: the client's next nonces are 30 s
    -- ahead of it; the resync must bring them back into its window
    fake.ctl("clock", { offset_ms = 0 })
    local b, err = c:balances()
    assert.truthy(b, tostring(err))
    for _ = 1, 3 do assert(c:balances()) end
    assert.is_true(math.abs(c.offset_ms) < 2000)
  end)
end)
