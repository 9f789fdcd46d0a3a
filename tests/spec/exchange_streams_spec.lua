-- WebSocket streams against the fake Aster venue: market streams (combined,
-- run-time subscribe, reconnect + resubscribe, gap backfill, rotation,
-- sharding, malformed frames) and the user-data stream (listen keys, event
-- order, expiry, reconnect storms with an exact order count).
local h = require "helpers"
local exchange = require "vibex.exchange"
local streams = require "vibex.exchange.streams"
local task = require "vibex.task"
local ws = require "vibex.ws"

local USER, SIGNER, KEY = h.ASTER_V3.user, h.ASTER_V3.signer, h.ASTER_V3.private_key

local function wait(what, pred, ms)
  assert(h.wait_until(pred, ms or 10000, 10), "timed out waiting for " .. what)
end

describe("exchange streams against the fake venue", function()
  local fake

  setup(function()
    fake = h.fake_aster { accounts = {
      { name = "v3acct", balance = "10000", user = USER, signer = SIGNER },
      { name = "v1acct", balance = "5000", api_key = "v1-key", api_secret = "v1-secret" },
    } }
  end)
  teardown(function() fake.stop() end)
  -- every stream a test opens is closed after it, pass or fail
  local opened = {}
  local function track(x) opened[#opened + 1] = x return x end
  after_each(function()
    for _, x in ipairs(opened) do x:close() end
    opened = {}
    assert(h.wait_until(function() local o = fake.ctl("ws").open return o.market + o.user == 0 end, 10000, 10))
  end)

  before_each(function()
    fake.ctl("faults", { clear = true })
    fake.ctl("ws", { clear = true })
    fake.ctl("clock", { offset_ms = 0 })
  end)

  local function client(o)
    o = o or {}
    o.base_url, o.ws_url = fake.base, fake.ws
    if not o.v1 then o.credentials = o.credentials or { user = USER, signer = SIGNER, private_key = KEY } end
    o.lookup_delay_ms = 20
    return exchange.aster(o)
  end

  describe("the WebSocket client", function()
    it("connects, exchanges messages and reports a refused or failed handshake", function()
      local c = assert(ws.connect { url = fake.ws .. "/ws" })
      assert.equal("open", c:status())
      assert.is_true(c:send('{"method":"SUBSCRIBE","params":["btcusdt@bookTicker"],"id":1}'))
      local msg = assert(c:recv())
      assert.equal('{"result":null,"id":1}', msg)
      local bt = assert(c:recv())
      assert.truthy(bt:find('"e":"bookTicker"', 1, true))
      c:close()
      assert.equal("closed", c:status())
      local none, err = c:recv()
      assert.is_nil(none)
      assert.equal("closed", err.kind)
      assert.truthy(err.message:find("closed by us", 1, true))

      local bad, berr = ws.connect { url = fake.ws .. "/ws/not-a-listen-key" }
      assert.is_nil(bad)
      assert.equal("transport", berr.kind)
      assert.truthy(berr.message:find("101", 1, true), tostring(berr))
      local refused, rerr = ws.connect { url = "ws://127.0.0.1:1/ws" }
      assert.is_nil(refused)
      assert.truthy(rerr.message:find("connect", 1, true))
      local _, uerr = ws.connect { url = "http:/nonsense" }
      assert.equal("transport", uerr.kind)
      assert.truthy(uerr.message:find("URL", 1, true), tostring(uerr))
    end)

    it("answers the venue's pings and pings a quiet line itself", function()
      local c = assert(ws.connect { url = fake.ws .. "/ws", ping_s = 1 })
      local before = fake.ctl("ws")
      fake.ctl("ws", { faults = { { kind = "ping" } } })
      wait("our pong", function() return fake.ctl("ws").pongs == before.pongs + 1 end)
      -- nothing is subscribed, so the line is quiet: lws sends a ping after ping_s
      wait("our ping", function() return fake.ctl("ws").pings > before.pings end, 5000)
      assert.equal("open", c:status())
      c:close()
    end)

    it("hangs up on a line that went silent", function()
      local c = assert(ws.connect { url = fake.ws .. "/ws/btcusdt@bookTicker", ping_s = 1, hangup_s = 2 })
      assert(c:recv())
      fake.ctl("ws", { faults = { { kind = "mute" } } })
      local msg, err
      assert(task.timeout(15000, function()
        repeat msg, err = c:recv() until not msg
        return true
      end))
      assert.equal("closed", err.kind)
      assert.truthy(err.message:find("connection lost", 1, true), err.message)
    end)

    it("tells a server close frame apart from a lost line", function()
      local c = assert(ws.connect { url = fake.ws .. "/ws/btcusdt@bookTicker" })
      assert(c:recv())
      fake.ctl("ws", { faults = { { kind = "close", code = 1001 } } })
      local msg, err
      repeat msg, err = c:recv() until not msg
      assert.equal("closed", err.kind)
      assert.equal(1001, err.code)
      assert.truthy(err.message:find("closed by the server", 1, true), err.message)
    end)
  end)

  describe("the kline scanner", function()
    it("parses raw and combined kline events and refuses anything else", function()
      local raw = '{"e":"kline","E":123456789,"s":"BNBUSDT","k":{"t":123400000,"T":123460000,"s":"BNBUSDT",' ..
        '"i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020","h":"0.0025","l":"0.0015","v":"1000","n":100,' ..
        '"x":false,"q":"1.0000","V":"500","Q":"0.500","B":"123456"}}'
      local k = assert(streams.parse_kline(raw))
      assert.same({ symbol = "BNBUSDT", interval = "1m", open_time = 123400000, close_time = 123460000,
                    open = 0.001, high = 0.0025, low = 0.0015, close = 0.002, volume = 1000, quote_volume = 1,
                    trades = 100, taker_buy_volume = 500, taker_buy_quote_volume = 0.5, closed = false,
                    event_time = 123456789 }, k)
      local wrapped = assert(streams.parse_kline('{"stream":"bnbusdt@kline_1m","data":' .. raw .. '}'))
      assert.equal(0.0025, wrapped.high)
      -- long decimals take the strtod path and still give the nearest double
      local long = raw:gsub('"o":"0.0010"', '"o":"60383.123456789012345"')
      assert.equal(tonumber("60383.123456789012345"), assert(streams.parse_kline(long)).open)
      assert.is_true(assert(streams.parse_kline((raw:gsub('"x":false', '"x":true')))).closed)
      assert.is_nil(streams.parse_kline('{"e":"aggTrade","E":1,"s":"BTCUSDT"}'))
      assert.is_nil(streams.parse_kline(raw:sub(1, -3)))                         -- truncated
      assert.is_nil(streams.parse_kline((raw:gsub('"h":"0.0025",', ''))))       -- a field missing
      assert.is_nil(streams.parse_kline((raw:gsub('"o":"0.0010"', '"o":"1x"')))) -- not a number
      assert.is_nil(streams.parse_kline(raw .. "x"))                             -- trailing garbage
      assert.is_nil(streams.parse_kline(""))
    end)
  end)

  describe("market streams", function()
    it("delivers combined streams, subscribes and unsubscribes at run time", function()
      local ex = client()
      local klines, books, marks, trades = {}, 0, {}, 0
      local md = track(ex:market_stream {
        on_kline = function(k) klines[#klines + 1] = k end,
        on_book_ticker = function() books = books + 1 end,
        on_mark_price = function(m) marks[#marks + 1] = m end,
        on_agg_trade = function() trades = trades + 1 end,
      })
      md:kline("BTCUSDT", "1m")
      md:book_ticker("ETHUSDT")
      md:mark_price("BTCUSDT", true)
      wait("klines, book tickers and mark prices", function() return #klines > 0 and books > 0 and #marks > 0 end)
      local k = klines[1]
      assert.equal("BTCUSDT", k.symbol)
      assert.equal("1m", k.interval)
      assert.equal(0, k.open_time % 60000)
      -- the stream's candle is the venue's candle: compare with REST
      local rest = assert(ex:klines("BTCUSDT", "1m", { start_ms = k.open_time, end_ms = k.open_time }))
      assert.equal(rest[1].open, k.open)
      assert.equal(rest[1].high, k.high)
      assert.equal("0.0001", marks[1].r)
      assert.equal(0, trades)

      md:agg_trade("btcusdt")
      wait("aggregate trades after a run-time subscribe", function() return trades > 0 end)
      assert.same({ "btcusdt@aggTrade", "btcusdt@kline_1m", "btcusdt@markPrice@1s", "ethusdt@bookTicker" }, md:streams())
      md:unsubscribe("ethusdt@bookTicker")
      wait("the venue to drop the stream", function()
        for _, s in ipairs(fake.ctl("ws").subscriptions) do if s == "ethusdt@bookTicker" then return false end end
        return true
      end)
      md:close()
      wait("the connection to close", function() return fake.ctl("ws").open.market == 0 end)
    end)

    it("reconnects after a drop, resubscribes, and backfills the candles it missed", function()
      local ex = client()
      local seen, reconnects = {}, {}
      local md = track(ex:market_stream {
        min_backoff_ms = 20,
        on_kline = function(k) seen[#seen + 1] = k end,
        on_reconnect = function(info) reconnects[#reconnects + 1] = info end,
      })
      md:kline("BTCUSDT", "1m")
      md:book_ticker("ETHUSDT")
      wait("a first candle", function() return #seen > 0 end)
      local first = seen[#seen].open_time
      -- the line drops while five minutes pass on the venue
      fake.ctl("ws", { faults = { { kind = "drop", target = "market", advance_ms = 300000 } } })
      wait("the reconnect", function() return #reconnects == 1 end)
      -- five minutes advanced: four candles missed, one more when the venue's
      -- own clock crossed a minute while the line was down
      local missed = reconnects[1].backfilled
      assert.is_true(missed == 4 or missed == 5, "backfilled " .. tostring(missed))
      local filled = {}
      for _, k in ipairs(seen) do if k.backfilled then filled[#filled + 1] = k end end
      -- the candle that was forming (now closed), the missed ones, and the new forming one, in order
      assert.equal(missed + 2, #filled)
      for i, k in ipairs(filled) do
        assert.equal(first + (i - 1) * 60000, k.open_time)
        assert.equal(i < missed + 2, k.closed)
      end
      local rest = assert(ex:klines("BTCUSDT", "1m", { start_ms = first + 60000, end_ms = first + 60000 }))
      assert.equal(rest[1].close, filled[2].close)
      wait("live candles again", function() return not seen[#seen].backfilled end)
      local subs = fake.ctl("ws").subscriptions
      table.sort(subs)
      assert.same({ "btcusdt@kline_1m", "ethusdt@bookTicker" }, subs)
      assert.equal(1, md.stats.reconnects)
      md:close()
    end)

    it("replaces a connection before the venue's time limit without backoff", function()
      local ex = client()
      local n = 0
      local md = track(ex:market_stream { rotate_ms = 300, on_book_ticker = function() n = n + 1 end })
      md:book_ticker("ETHUSDT")
      wait("two rotations", function() return md.stats.reconnects >= 2 end)
      local before = n
      wait("messages after rotating", function() return n > before end)
      md:close()
    end)

    it("spreads streams over connections within the per-connection limit", function()
      local ex = client()
      local md = track(ex:market_stream { max_streams = 2 })
      md:subscribe { "btcusdt@bookTicker", "ethusdt@bookTicker", "xrpusdt@bookTicker" }
      wait("two connections", function() return fake.ctl("ws").open.market == 2 end)
      assert.equal(2, #md.shards)
      md:close()
    end)

    it("skips malformed frames and survives a failing handler", function()
      local ex = client()
      local calls = 0
      local md = track(ex:market_stream { on_book_ticker = function()
        calls = calls + 1
        if calls == 1 then error("strategy bug") end
      end })
      md:book_ticker("ETHUSDT")
      wait("a first message", function() return calls >= 1 end)
      fake.ctl("ws", { faults = { { kind = "malformed", count = 2 } } })
      wait("two malformed frames", function() return md.stats.malformed == 2 end)
      local before = calls
      wait("messages after them", function() return calls > before + 1 end)
      assert.equal(0, md.stats.reconnects)
      md:close()
    end)
  end)

  describe("the user data stream", function()
    local function order_session(o, so)
      local ex = client(o)
      local events, resyncs = {}, 0
      so = so or {}
      local us = track(ex:user_stream {
        reorder_ms = so.reorder_ms or 50, min_backoff_ms = 20, keepalive_ms = so.keepalive_ms,
        on_order = function(ev) events[#events + 1] = ev end,
        on_account = function(ev) events[#events + 1] = ev end,
        on_resync = function(snap)
          assert.is_table(snap.balances)
          resyncs = resyncs + 1
        end,
      })
      wait("the user stream", function() return us:connected() and resyncs > 0 end)
      return ex, us, events, function() return resyncs end
    end

    it("delivers order, fill and account events for a V3 account", function()
      local ex, us, events = order_session()
      local o = assert(ex:place { symbol = "ETHUSDT", side = "BUY", type = "MARKET", quantity = 0.1, decision = "us1", leg = 1 })
      wait("the fill", function() return us.orders[o.clientOrderId] and us.orders[o.clientOrderId].status == "FILLED" end)
      wait("the account update", function()
        for _, ev in ipairs(events) do if ev.e == "ACCOUNT_UPDATE" then return true end end
      end)
      local fills = 0
      for _, ev in ipairs(events) do
        if ev.e == "ORDER_TRADE_UPDATE" and ev.o.x == "TRADE" then fills = fills + 1 end
      end
      assert.equal(1, fills)
      assert.equal("0.1", us.orders[o.clientOrderId].executed)
      -- the stream's last account update agrees with REST
      local last
      for _, ev in ipairs(events) do if ev.e == "ACCOUNT_UPDATE" then last = ev.a end end
      local pos
      for _, p in ipairs(assert(ex:positions("ETHUSDT"))) do if p.symbol == "ETHUSDT" then pos = p end end
      assert.equal(last.P[1].pa, pos.positionAmt)
      local usdt
      for _, b in ipairs(assert(ex:balances())) do if b.asset == "USDT" then usdt = b end end
      assert.equal(last.B[1].wb, usdt.balance)
      us:close()
    end)

    it("passes margin calls on", function()
      local ex = client()
      local calls = {}
      local us = track(ex:user_stream { on_margin_call = function(ev) calls[#calls + 1] = ev end })
      wait("the user stream", function() return us:connected() end)
      fake.ctl("ws", { faults = { { kind = "margin_call", account = "v3acct" } } })
      wait("the margin call", function() return #calls == 1 end)
      assert.equal("1.614445", calls[1].p[1].mm)
      assert.is_number(calls[1].E)
    end)

    it("works with V1 keys too", function()
      local ex, us = order_session { v1 = true, credentials = { api_key = "v1-key", api_secret = "v1-secret" } }
      local o = assert(ex:place { symbol = "ETHUSDT", side = "SELL", type = "MARKET", quantity = 0.1, decision = "v1us", leg = 1 })
      wait("the fill", function() return us.orders[o.clientOrderId] and us.orders[o.clientOrderId].status == "FILLED" end)
      us:close()
    end)

    it("puts out-of-order events back in event-time order", function()
      local ex, us, events = order_session()
      fake.ctl("ws", { faults = { { kind = "reorder", count = 3 } } })
      for i = 1, 3 do
        assert(ex:place { symbol = "ETHUSDT", side = "BUY", type = "MARKET", quantity = 0.1, decision = "ooo", leg = i })
      end
      wait("nine events", function() return #events >= 9 end)
      for i = 2, #events do assert.is_true(events[i].E >= events[i - 1].E, "events out of order at " .. i) end
      assert.equal(0, us.stats.late)
      us:close()
    end)

    it("never moves an order backwards for an event that arrives too late", function()
      -- released at once, so the held-back event arrives after a later one
      local ex, us, events = order_session(nil, { reorder_ms = 0 })
      fake.ctl("ws", { faults = { { kind = "reorder", count = 1 } } })
      local o = assert(ex:place { symbol = "ETHUSDT", side = "BUY", type = "MARKET", quantity = 0.1, decision = "late", leg = 1 })
      wait("three events", function() return #events >= 3 end)
      assert.equal(1, us.stats.late)
      local stale = 0
      for _, ev in ipairs(events) do if ev.stale then stale = stale + 1 end end
      assert.equal(1, stale)
      assert.equal("FILLED", us.orders[o.clientOrderId].status)
      us:close()
    end)

    it("replaces an expired or forgotten listen key", function()
      local ex, us, _, resyncs = order_session()
      fake.ctl("ws", { faults = { { kind = "expire_key", account = "v3acct" } } })
      wait("a new connection after listenKeyExpired", function() return us.stats.expired == 1 and us:connected() and resyncs() == 2 end)
      local o = assert(ex:place { symbol = "ETHUSDT", side = "BUY", type = "MARKET", quantity = 0.1, decision = "exp", leg = 1 })
      wait("events on the new key", function() return us.orders[o.clientOrderId] ~= nil end)
      us:close()

      -- the venue forgets the key without a word: the next keepalive finds out
      local _, us2, _, resyncs2 = order_session(nil, { keepalive_ms = 100 })
      wait("a keepalive", function() return us2.stats.keepalives >= 1 end)
      fake.ctl("ws", { faults = { { kind = "forget_key", account = "v3acct" } } })
      wait("a reconnect with a fresh key", function() return resyncs2() == 2 and us2:connected() end)
      assert.equal(1, us2.stats.reconnects)
      us2:close()
    end)

    it("keeps the exact order count through a reconnect storm and unknown outcomes", function()
      local ex, us = order_session()
      local before = fake.state().created.v3acct or 0
      local storm = task.spawn(function()
        for _ = 1, 8 do
          fake.ctl("ws", { faults = { { kind = "drop", target = "all" } } })
          task.sleep(30)
        end
      end)
      local ids = {}
      for i = 1, 6 do
        if i % 2 == 0 then -- the venue places the order and then answers 503
          fake.ctl("faults", { faults = { { method = "POST", path = "/fapi/v3/order", kind = "status", status = 503, after = true } } })
        end
        local o = assert(ex:place { symbol = "ETHUSDT", side = "BUY", type = "LIMIT", price = 2500, quantity = 0.1,
                                    decision = "storm", leg = i })
        ids[#ids + 1] = o.clientOrderId
      end
      storm:join(10000)
      assert.equal(6, fake.state().created.v3acct - before)
      -- every order reaches the stream's view (live events or the resync snapshot)
      wait("the stream back", function() return us:connected() end)
      assert(ex:cancel_all("ETHUSDT"))
      wait("six cancellations", function()
        for _, id in ipairs(ids) do
          if not (us.orders[id] and us.orders[id].status == "CANCELED") then return false end
        end
        return true
      end, 15000)
      us:close()
    end)
  end)
end)
