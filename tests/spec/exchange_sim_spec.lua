-- The simulated venue behind the exchange interface: same calls, same
-- refusals, same event shapes as the live adapter; exact money; replays
-- that are deterministic.
local exchange = require "vibex.exchange"
local crypto = require "vibex.crypto"
local json = require "vibex.json"
local h = require "helpers"
local dec = require "vibex.decimal"
local datasets = require "vibex.data"

describe("the simulated venue", function()
  it("fills a market order at the next price, with slippage and the taker fee, exactly", function()
    local paper = exchange.sim { balance = 10000 }
    paper:tick("BTCUSDT", 60000, 1000)
    local o = assert(paper:place { symbol = "BTCUSDT", side = "BUY", type = "MARKET", quantity = 0.01, decision = "m", leg = 1 })
    assert.equal("NEW", o.status)
    paper:tick("BTCUSDT", 60010, 2000)
    -- 60010 + 2 bps = 60022.002 -> 60022.1 at the 0.1 tick; fee 600.221 x 0.04% = 0.2400884
    local got = assert(paper:get_order("BTCUSDT", { client_id = o.clientOrderId }))
    assert.equal("FILLED", got.status)
    assert.equal("60022.1", got.avgPrice)
    local p = paper:positions("BTCUSDT")[1]
    assert.equal("0.01", p.positionAmt)
    assert.equal("60022.1", p.entryPrice)
    assert.equal("-0.121", p.unRealizedProfit)
    local b = paper:balances()[1]
    assert.equal("9999.7599116", b.balance)
    assert.equal("-0.121", b.crossUnPnl)
  end)

  it("refuses what the live adapter refuses, with the same error kinds", function()
    local paper = exchange.sim { balance = 100 }
    paper:tick("BTCUSDT", 60000, 1000)
    local _, ferr = paper:place { symbol = "BTCUSDT", side = "BUY", type = "LIMIT", price = 59000, quantity = 0.0001 }
    assert.equal("filter", ferr.kind)
    assert.equal("LOT_SIZE", ferr.filter)
    local _, merr = paper:place { symbol = "BTCUSDT", side = "BUY", type = "MARKET", quantity = 1 }
    assert.equal("rejected", merr.kind)
    assert.equal("MARGIN_NOT_SUFFICIENT", merr.name)
    local _, rerr = paper:place { symbol = "BTCUSDT", side = "SELL", type = "MARKET", quantity = 0.001, reduce_only = true }
    assert.equal(-2022, rerr.code)
    local _, serr = paper:place { symbol = "NOPEUSDT", side = "BUY", type = "MARKET", quantity = 1 }
    assert.equal("BAD_SYMBOL", serr.name)
    local _, lerr = paper:set_leverage("BTCUSDT", 500)
    assert.equal(-4028, lerr.code)
  end)

  it("rests, fills, modifies and cancels limit orders, with live-shaped user events", function()
    local paper = exchange.sim { balance = 10000 }
    local events = {}
    local us = paper:user_stream { on_order = function(ev) events[#events + 1] = ev end,
                                   on_account = function(ev) events[#events + 1] = ev end }
    paper:tick("ETHUSDT", 3000, 1000)
    local a = assert(paper:place { symbol = "ETHUSDT", side = "BUY", type = "LIMIT", price = 2990, quantity = 0.5, decision = "l", leg = 1 })
    local c = assert(paper:place { symbol = "ETHUSDT", side = "BUY", type = "LIMIT", price = 2980, quantity = 0.5, decision = "l", leg = 2 })
    assert.equal(2, #paper:open_orders("ETHUSDT"))
    assert(paper:modify { symbol = "ETHUSDT", client_id = c.clientOrderId, price = 2985 })
    assert(paper:cancel { symbol = "ETHUSDT", client_id = c.clientOrderId })
    paper:tick("ETHUSDT", 2990, 2000) -- touched only
    assert.equal("NEW", paper:get_order("ETHUSDT", { client_id = a.clientOrderId }).status)
    paper:tick("ETHUSDT", 2989.99, 3000)
    assert.equal("FILLED", us.orders[a.clientOrderId].status)
    local fill
    for _, ev in ipairs(events) do if ev.e == "ORDER_TRADE_UPDATE" and ev.o.x == "TRADE" then fill = ev end end
    assert.equal("2990", fill.o.L)
    assert.is_true(fill.o.m) -- maker
    assert.equal("0.299", fill.o.n) -- 1495 x 0.02%
    for _, k in ipairs { "s", "c", "S", "o", "f", "q", "p", "ap", "x", "X", "i", "l", "z", "L", "n", "N", "T", "t", "m", "R", "ps", "rp" } do
      assert.is_not_nil(fill.o[k], "ORDER_TRADE_UPDATE field " .. k)
    end
    local acc = events[#events]
    assert.equal("ACCOUNT_UPDATE", acc.e)
    assert.equal("9999.701", acc.a.B[1].wb)
    assert.equal("0.5", acc.a.P[1].pa)
    assert.same({}, paper:open_orders("ETHUSDT"))
  end)

  it("settles funding and closes on a stop", function()
    local paper = exchange.sim { balance = 10000, symbols = { BTCUSDT = { tick = "0.1", step = "0.001", slippage_bps = 0 } } }
    paper:tick("BTCUSDT", 60000, 1000)
    assert(paper:place { symbol = "BTCUSDT", side = "BUY", type = "MARKET", quantity = 0.01, decision = "f", leg = 1 })
    paper:tick("BTCUSDT", 60000, 2000)
    paper:funding("BTCUSDT", "0.0001", 60000, 28800000)
    assert.equal("9999.7", paper:balances()[1].balance) -- 10000 - 0.24 taker fee - 0.06 funding
    local stop = assert(paper:place { symbol = "BTCUSDT", side = "SELL", type = "STOP_MARKET", stop_price = 59000,
                                      close_position = true, decision = "f", leg = 2 })
    paper:candle("BTCUSDT", { open_time = 28800000, open = 59800, high = 59900, low = 58700, close = 58900 }, "1m")
    assert.equal("0", paper:positions("BTCUSDT")[1].positionAmt)
    -- long: the low comes first on the path; the stop fills at the gap, 58700 (not 59000):
    -- realized (58700 - 60000) x 0.01 = -13, taker fee 587 x 0.04% = 0.2348
    assert.equal("9986.4652", paper:balances()[1].balance)
    local done = paper:get_order("BTCUSDT", { client_id = stop.clientOrderId })
    assert.equal("FILLED", done.status) -- a close-position order takes its size when it fires
    assert.equal("0.01", done.origQty)
  end)

  it("saves and restores a paper account: wallet, positions, open orders", function()
    local a = exchange.sim { balance = 10000 }
    a:tick("BTCUSDT", 60000, 1000)
    assert(a:place { symbol = "BTCUSDT", side = "BUY", type = "MARKET", quantity = 0.01, decision = "s", leg = 1 })
    a:tick("BTCUSDT", 60100, 2000)
    assert(a:set_leverage("BTCUSDT", 5))
    local rest = assert(a:place { symbol = "BTCUSDT", side = "SELL", type = "LIMIT", price = 61000, quantity = 0.01, decision = "s", leg = 2 })
    local snap = json.decode(json.encode(a:snapshot())) -- through JSON, as it is stored
    local b = exchange.sim { balance = 1 }
    assert(b:restore(snap))
    assert.equal(a:balances()[1].balance, b:balances()[1].balance)
    assert.same(a:positions("BTCUSDT"), b:positions("BTCUSDT"))
    assert.equal(1, #b:open_orders("BTCUSDT"))
    assert.equal(rest.clientOrderId, b:open_orders("BTCUSDT")[1].clientOrderId)
    -- and both go on the same way
    a:tick("BTCUSDT", 61000.1, 3000)
    b:tick("BTCUSDT", 61000.1, 3000)
    assert.equal(a:balances()[1].balance, b:balances()[1].balance)
    assert.equal("0", b:positions("BTCUSDT")[1].positionAmt)
    local _, err = exchange.sim {}:restore({ version = 9 })
    assert.matches("not a version 1 snapshot", err)
  end)

  it("replays stored candles across symbols in time order, with a strategy hook", function()
    local paper = exchange.sim { balance = 10000, symbols = {
      BTCUSDT = { tick = "0.1", step = "0.001", slippage_bps = 0 }, ETHUSDT = { tick = "0.01", step = "0.001", slippage_bps = 0 } } }
    local data = { BTCUSDT = {}, ETHUSDT = {} }
    for i = 1, 5 do
      local t = i * 60000
      data.BTCUSDT[i] = { open_time = t, open = 60000 + i, high = 60010 + i, low = 59990 + i, close = 60005 + i }
      data.ETHUSDT[i] = { open_time = t, open = 3000 + i, high = 3001 + i, low = 2999 + i, close = 3000.5 + i }
    end
    local seen = {}
    local n = paper:replay(data, { interval = "1m", on_candle = function(symbol, k)
      seen[#seen + 1] = symbol .. "@" .. k.open_time
      if symbol == "ETHUSDT" and k.open_time == 120000 then
        assert(paper:place { symbol = "ETHUSDT", side = "BUY", type = "MARKET", quantity = 1, decision = "r", leg = 1 })
      end
    end })
    assert.equal(10, n)
    assert.same({ "BTCUSDT@60000", "ETHUSDT@60000", "BTCUSDT@120000", "ETHUSDT@120000" }, { seen[1], seen[2], seen[3], seen[4] })
    -- placed after the 2nd ETH candle: filled at the 3rd candle's open, 3003
    assert.equal("3003", paper:positions("ETHUSDT")[1].entryPrice)
    -- recorded funding settles at its time during a replay: 1 ETH long pays 0.01% of the last price (3005.5)
    local before = paper:balances()[1].balance
    paper:replay({ ETHUSDT = { { open_time = 28800000, open = 3010, high = 3011, low = 3009, close = 3010 } } },
      { funding = { ETHUSDT = { { time_ms = 28800000, rate = "0.0001" } } } })
    assert.equal(0, dec.cmp(paper:balances()[1].balance, dec.round(tonumber(before) - 0.30055, "0.00000001", "nearest")))
  end)

  it("keeps hedge-mode sides and isolated margin, and restores them", function()
    local paper = exchange.sim { balance = 10000, symbols = { BTCUSDT = { tick = "0.1", step = "0.001", slippage_bps = 0 } } }
    assert(paper:set_position_mode(true))
    assert(paper:set_margin_type("BTCUSDT", "ISOLATED"))
    assert(paper:set_leverage("BTCUSDT", 10))
    paper:tick("BTCUSDT", 60000, 1000)
    local _, err = paper:place { symbol = "BTCUSDT", side = "BUY", type = "MARKET", quantity = 0.01 }
    assert.equal(-4061, err.code) -- hedge mode needs a position side
    assert(paper:place { symbol = "BTCUSDT", side = "BUY", position_side = "LONG", type = "MARKET", quantity = 0.01, decision = "h", leg = 1 })
    assert(paper:place { symbol = "BTCUSDT", side = "SELL", position_side = "SHORT", type = "MARKET", quantity = 0.02, decision = "h", leg = 2 })
    paper:tick("BTCUSDT", 60000, 2000)
    local pos = paper:positions("BTCUSDT")
    assert.equal("LONG", pos[1].positionSide)
    assert.equal("0.01", pos[1].positionAmt)
    assert.equal("60", pos[1].isolatedMargin)
    assert.equal("-0.02", pos[2].positionAmt)
    assert.equal("120", pos[2].isolatedMargin)
    local _, merr = paper:set_position_mode(false)
    assert.equal(-4068, merr.code)
    local back = exchange.sim { balance = 1, symbols = { BTCUSDT = { tick = "0.1", step = "0.001", slippage_bps = 0 } } }
    assert(back:restore(json.decode(json.encode(paper:snapshot()))))
    assert.same(paper:positions("BTCUSDT"), back:positions("BTCUSDT"))
    assert.equal(paper:balances()[1].availableBalance, back:balances()[1].availableBalance)
  end)

  it("reads OHLCV files and forgets old finished orders past its history", function()
    local sim = require "vibex.exchange.sim"
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("[[1636934400000, 1.1893, 1.1954, 1.1891, 1.1941, 9289043.5], [1636934700000, 1.1941, 1.1952, 1.1901, 1.1912, 100.5]]")
    f:close()
    local rows = assert(datasets.read_ohlcv(path))
    assert.equal(2, #rows)
    assert.equal(1.1912, rows[2].close)
    assert.equal(100.5, rows[2].volume)
    f = assert(io.open(path, "w"))
    f:write('[[1, 2], "x"]')
    f:close()
    local bad, err = datasets.read_ohlcv(path)
    assert.is_nil(bad)
    assert.matches("row 2 is not", err)
    os.remove(path)
    local paper = exchange.sim { balance = 1e6, history = 5 }
    paper:tick("BTCUSDT", 60000, 1)
    local first
    for i = 1, 20 do
      local o = assert(paper:place { symbol = "BTCUSDT", side = i % 2 == 1 and "BUY" or "SELL", type = "MARKET", quantity = 0.01,
                                     decision = "h" .. i, leg = 1 })
      first = first or o.clientOrderId
      paper:tick("BTCUSDT", 60000, i + 1)
    end
    local n = 0
    for _ in pairs(paper.orders) do n = n + 1 end
    assert.is_true(n <= 10)
    assert.is_nil((paper:get_order("BTCUSDT", { client_id = first })))
  end)

  local function replay(seed_shift)
    local paper = exchange.sim { balance = 10000 }
    local log = {}
    paper:user_stream { on_order = function(ev) log[#log + 1] = json.encode(ev) end,
                        on_account = function(ev) log[#log + 1] = json.encode(ev) end }
    local fast, slow, last_cross = nil, nil, 0
    for i = 1, 3000 do
      local t = i * 60000
      local px = 60000 + 800 * math.sin(i / 40 + seed_shift) + 150 * math.sin(i / 7)
      local k = { open_time = t, open = ("%.1f"):format(px), high = ("%.1f"):format(px + 40), low = ("%.1f"):format(px - 40),
                  close = ("%.1f"):format(px + 10) }
      paper:candle("BTCUSDT", k, "1m")
      local c = tonumber(k.close)
      fast = fast and fast + (c - fast) * 2 / 13 or c
      slow = slow and slow + (c - slow) * 2 / 27 or c
      local side = fast > slow and 1 or -1
      if side ~= last_cross then
        local pos = tonumber(paper:positions("BTCUSDT")[1].positionAmt)
        local qty = 0.01 + math.abs(pos)
        assert(paper:place { symbol = "BTCUSDT", side = side > 0 and "BUY" or "SELL", type = "MARKET", quantity = qty,
                             decision = tostring(i), leg = 1 })
        last_cross = side
      end
    end
    return crypto.sha256(table.concat(log, "\n")), #log, paper:balances()[1].balance
  end

  it("replays deterministically: the same data gives the same events, byte for byte", function()
    local h1, n1, b1 = replay(0)
    local h2, n2, b2 = replay(0)
    assert.is_true(n1 > 50)
    assert.equal(h1, h2)
    assert.equal(n1, n2)
    assert.equal(b1, b2)
    local h3 = replay(0.5)
    assert.not_equal(h1, h3)
  end)

  it("runs the same scenario as the live adapter against the fake venue: same order states, position, balance", function()
    local fake = h.fake_aster { accounts = { { name = "cmp", balance = "10000", user = h.ASTER_V3.user, signer = h.ASTER_V3.signer } } }
    local ok, err = pcall(function()
      local live = exchange.aster { base_url = fake.base, ws_url = fake.ws, credentials = h.ASTER_V3, account = "cmp" }
      local paper = exchange.sim { balance = 10000, account = "cmp",
                                   symbols = { ETHUSDT = { tick = "0.01", step = "0.001", slippage_bps = 0 } } }
      local function states(venue)
        local seq = {}
        local us = venue:user_stream { reorder_ms = 0, on_order = function(ev)
          local k = ev.o.c
          seq[k] = seq[k] or {}
          if seq[k][#seq[k]] ~= ev.o.X then seq[k][#seq[k] + 1] = ev.o.X end
        end }
        return seq, us
      end
      local live_seq, live_us = states(live)
      local paper_seq = states(paper)
      assert(h.wait_until(function() return live_us:connected() end, 10000, 10))
      local function price(p)
        fake.ctl("price", { symbol = "ETHUSDT", price = p })
        paper:tick("ETHUSDT", p)
      end
      local function both(order)
        local a = assert(live:place(order))
        local b = assert(paper:place(order))
        return a, b
      end
      price("3000")
      local m = both { symbol = "ETHUSDT", side = "BUY", type = "MARKET", quantity = 0.1, decision = "cmp", leg = 1 }
      paper:tick("ETHUSDT", "3000") -- the sim executes at the next price; the same price here
      both { symbol = "ETHUSDT", side = "SELL", type = "LIMIT", price = 3100, quantity = 0.1, decision = "cmp", leg = 2 }
      local c = both { symbol = "ETHUSDT", side = "BUY", type = "LIMIT", price = 2900, quantity = 0.1, decision = "cmp", leg = 3 }
      assert(live:cancel { symbol = "ETHUSDT", client_id = c.clientOrderId })
      assert(paper:cancel { symbol = "ETHUSDT", client_id = c.clientOrderId })
      price("3100.01")
      assert(h.wait_until(function()
        local n = 0
        for _, seq in pairs(live_seq) do n = n + #seq end
        return n >= 6
      end, 10000, 10))
      for id, seq in pairs(paper_seq) do assert.same(live_seq[id], seq, "order states of " .. id) end
      assert.same({ "NEW", "FILLED" }, paper_seq[m.clientOrderId])
      local lp = assert(live:positions("ETHUSDT"))
      local lpos
      for _, p in ipairs(lp) do if p.symbol == "ETHUSDT" then lpos = p end end
      assert.equal(0, dec.cmp(lpos.positionAmt, paper:positions("ETHUSDT")[1].positionAmt))
      local lb
      for _, b in ipairs(assert(live:balances())) do if b.asset == "USDT" then lb = b end end
      -- 10000 - 0.12 taker + 10 realized - 0.062 maker
      assert.equal(0, dec.cmp(lb.balance, paper:balances()[1].balance))
      assert.equal("10009.818", paper:balances()[1].balance)
      live_us:close()
    end)
    fake.stop()
    assert(ok, err)
  end)

  it("trades on paper next to a live market stream", function()
    local fake = h.fake_aster {}
    local ok, err = pcall(function()
      local live = exchange.aster { base_url = fake.base, ws_url = fake.ws }
      local md = live:market_stream {}
      local paper = exchange.sim { balance = 10000 }:follow(md)
      md:book_ticker("ETHUSDT")
      md:kline("BTCUSDT", "1m")
      assert(h.wait_until(function() return paper:ticker("ETHUSDT").price == "3000" end, 10000, 10)) -- mid of 2999.99 / 3000.01
      assert(h.wait_until(function() return paper:ticker("BTCUSDT").price ~= "0" end, 10000, 10))
      assert(paper:place { symbol = "ETHUSDT", side = "BUY", type = "MARKET", quantity = 0.1, decision = "follow", leg = 1 })
      assert(h.wait_until(function() return paper:positions("ETHUSDT")[1].positionAmt == "0.1" end, 10000, 10))
      md:close()
    end)
    fake.stop()
    assert(ok, err)
  end)
end)
