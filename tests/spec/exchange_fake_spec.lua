-- The REST client against the fake Aster venue (tests/support/fake_aster),
-- a separate process that verifies signatures independently.
local process = require "vibex.process"
local task = require "vibex.task"
local http = require "vibex.http"
local json = require "vibex.json"
local exchange = require "vibex.exchange"

local h = require "helpers"
local USER, SIGNER, KEY = h.ASTER_V3.user, h.ASTER_V3.signer, h.ASTER_V3.private_key
local V1_SECRET = "v1-secret-never-logged-8c1f"

describe("exchange client against the fake venue", function()
  local fake, base

  local function ctl(path, body)
    local res = assert(http.request { method = "POST", url = base .. "/_fake/" .. path, body = json.encode(body or {}) })
    assert.equal(200, res.status)
    return json.decode(res.body)
  end
  local function state()
    return json.decode(assert(http.get(base .. "/_fake/state")).body)
  end
  local function venue_log()
    return json.decode(assert(http.get(base .. "/_fake/log")).body)
  end
  local function count(method, path)
    local n = 0
    for _, r in ipairs(venue_log()) do
      if r[1] == method and r[2] == path then n = n + 1 end
    end
    return n
  end

  setup(function()
    fake = assert(process.spawn { file = "python3", args = { "tests/support/fake_aster/server.py" } })
    local line = assert(task.timeout(15000, function() return fake:read_line() end))
    base = "http://127.0.0.1:" .. assert(line:match("LISTENING (%d+)"))
    ctl("setup", { accounts = {
      { name = "v3acct", balance = "10000", user = USER, signer = SIGNER },
      { name = "v1acct", balance = "5000", api_key = "v1-key", api_secret = V1_SECRET },
    }, nonce_window_ms = 2000 })
  end)

  teardown(function()
    fake:kill("TERM")
    task.timeout(5000, function() return fake:wait() end)
  end)

  local function v3(o)
    o = o or {}
    o.base_url = base
    o.nonce_window_ms = o.nonce_window_ms or 2000 -- the fake is set to the same below
    o.clock_margin_ms = o.clock_margin_ms or 300
    o.credentials = { user = USER, signer = SIGNER, private_key = KEY }
    o.lookup_delay_ms = 20
    return exchange.aster(o)
  end
  local function v1(o)
    o = o or {}
    o.base_url = base
    o.recv_window_ms = o.recv_window_ms or 2000
    o.clock_margin_ms = o.clock_margin_ms or 300
    o.credentials = { api_key = "v1-key", api_secret = V1_SECRET }
    o.lookup_delay_ms = 20
    return exchange.aster(o)
  end

  before_each(function()
    ctl("faults", { clear = true })
    ctl("clock", { offset_ms = 0 })
    -- injected transport failures of one test must not leave the venue's breaker open for the next
    local b = require("vibex.breaker").get("aster:" .. base)
    if b then b:reset() end
  end)

  it("runs a complete trading session with V3 signatures", function()
    local ex = v3 { account = "acct-a" }
    assert.is_number(ex:sync_time())
    local info = assert(ex:exchange_info())
    assert.is_true(#info.symbols >= 3)
    assert.equal(20, assert(ex:set_leverage("ETHUSDT", 20)).leverage)
    assert.truthy(ex:set_margin_type("ETHUSDT", "ISOLATED"))
    assert.is_true(assert(ex:set_margin_type("ETHUSDT", "ISOLATED")).unchanged)
    local before = state().created.v3acct or 0

    -- a resting limit, modified, then cancelled
    local rest = assert(ex:place { symbol = "ETHUSDT", side = "BUY", type = "LIMIT", price = 2900.004, quantity = 0.5,
                                   decision = "d1", leg = 1 })
    assert.equal("NEW", rest.status)
    assert.equal("2900", rest.price)
    assert.equal(exchange.client_order_id("acct-a", "d1", 1), rest.clientOrderId)
    local mod = assert(ex:modify { symbol = "ETHUSDT", client_id = rest.clientOrderId, side = "BUY", price = 2910.01, quantity = 0.5 })
    assert.equal("2910.01", mod.price)
    assert.equal(1, #assert(ex:open_orders("ETHUSDT")))
    assert.equal("CANCELED", assert(ex:cancel { symbol = "ETHUSDT", client_id = rest.clientOrderId }).status)

    -- a market buy fills at the price; a resting sell fills when the price reaches it
    local buy = assert(ex:place { symbol = "ETHUSDT", side = "BUY", quantity = 1.2345, decision = "d2" })
    assert.equal("FILLED", buy.status)
    assert.equal("1.234", buy.executedQty)
    local tp = assert(ex:place { symbol = "ETHUSDT", side = "SELL", type = "LIMIT", price = 3100, quantity = 1.234,
                                 reduceOnly = true, decision = "d2", leg = 2 })
    assert.equal("NEW", tp.status)
    local pos = assert(ex:positions("ETHUSDT"))
    assert.equal("1.234", pos[1].positionAmt)
    assert.equal("3000", pos[1].entryPrice)
    ctl("price", { symbol = "ETHUSDT", price = "3100" })
    assert.equal("FILLED", assert(ex:get_order("ETHUSDT", { client_id = tp.clientOrderId })).status)
    assert.equal("0", assert(ex:positions("ETHUSDT"))[1].positionAmt)
    -- wallet = 10000 + 1.234 x 100 realized - 0.04% taker on 3702 - 0.02% maker on 3825.4
    --        = 10000 + 123.4 - 1.4808 - 0.76508
    local bal = assert(ex:balances())[1]
    assert.equal("10121.15412", bal.balance)
    assert.equal(2, #assert(ex:user_trades("ETHUSDT")))
    assert.equal(0, #assert(ex:open_orders("ETHUSDT")))
    assert.equal(before + 3, state().created.v3acct)
    ctl("price", { symbol = "ETHUSDT", price = "3000" })
  end)

  it("signs with V1 HMAC keys too, and a wrong secret is an auth error with the secret masked", function()
    local ex = v1()
    local o = assert(ex:place { symbol = "XRPUSDT", side = "BUY", type = "LIMIT", price = 0.49999, quantity = 20.05 })
    assert.equal("0.4999", o.price)
    assert.equal("20", o.origQty)
    local bad = exchange.aster { base_url = base, credentials = { api_key = "v1-key", api_secret = "wrong" } }
    local r, err = bad:balances()
    assert.is_nil(r)
    assert.equal("auth", err.kind)
    assert.equal(-1022, err.code)
    assert.matches("signature=%*%*%*", err.request)
    assert.not_matches(V1_SECRET, tostring(err), 1, true)
  end)

  it("refuses an order that breaks a filter without sending it", function()
    local ex = v3()
    assert(ex:exchange_info())
    local n = #venue_log()
    local o, err = ex:place { symbol = "BTCUSDT", side = "BUY", type = "LIMIT", price = 60000, quantity = 0.00001 }
    assert.is_nil(o)
    assert.equal("LOT_SIZE", err.filter)
    assert.equal(n, #venue_log())
  end)

  it("does not retry a rejected order", function()
    local ex = v3()
    local n = count("POST", "/fapi/v3/order")
    local o, err = ex:place { symbol = "BTCUSDT", side = "BUY", type = "MARKET", quantity = 100 }
    assert.is_nil(o)
    assert.equal("rejected", err.kind)
    assert.equal("MARGIN_NOT_SUFFICIENT", err.name)
    assert.equal(n + 1, count("POST", "/fapi/v3/order"))
  end)

  local function exactly_one(fault, opts)
    local ex = v3(opts)
    assert(ex:exchange_info())
    ctl("faults", { faults = { fault } })
    local before = state().created.v3acct or 0
    local o, err = ex:place { symbol = "XRPUSDT", side = "BUY", type = "LIMIT", price = 0.45, quantity = 20,
                              decision = "unknown-" .. tostring(fault.kind) .. tostring(fault.after) .. tostring(fault.latency_ms), leg = 1 }
    assert.is_nil(err)
    assert.truthy(o and o.orderId)
    assert.equal(before + 1, state().created.v3acct)
    ex:cancel { symbol = "XRPUSDT", order_id = o.orderId }
  end

  it("resolves a 503 after the order was placed by looking it up: exactly one order", function()
    exactly_one { method = "POST", path = "/fapi/v3/order", kind = "status", status = 503, after = true }
  end)
  it("re-sends after a 503 when the venue does not have the order: exactly one order", function()
    exactly_one { method = "POST", path = "/fapi/v3/order", kind = "status", status = 503 }
  end)
  it("resolves a timeout on placement: exactly one order", function()
    exactly_one({ method = "POST", path = "/fapi/v3/order", kind = "timeout", seconds = 2 }, { order_timeout_ms = 400 })
  end)
  it("never duplicates an order held up in the network past the lookups", function()
    -- the request reaches the venue 1.2 s late, long after the client gave up and looked it
    -- up ("not there"): the client waits out the acceptance window, finds it, sends nothing more
    exactly_one({ method = "POST", path = "/fapi/v3/order", latency_ms = 1200 }, { order_timeout_ms = 200 })
    -- held up longer than the window: the venue refuses the stale original, the re-send is the one
    exactly_one({ method = "POST", path = "/fapi/v3/order", latency_ms = 3500 }, { order_timeout_ms = 200 })
  end)
  it("resolves a malformed answer to a placement: exactly one order", function()
    exactly_one { method = "POST", path = "/fapi/v3/order", kind = "malformed" }
  end)
  it("resolves repeated 500s: exactly one order", function()
    exactly_one { method = "POST", path = "/fapi/v3/order", kind = "status", status = 500, after = true, count = 2 }
  end)

  it("places batches of more than five in several requests, each once", function()
    local ex = v3()
    local before = state().created.v3acct or 0
    local orders = {}
    for i = 1, 7 do
      orders[i] = { symbol = "XRPUSDT", side = "BUY", type = "LIMIT", price = 0.40 + i / 1000, quantity = 20, decision = "batch", leg = i }
    end
    orders[8] = { symbol = "XRPUSDT", side = "BUY", type = "LIMIT", price = 0.4, quantity = 0.01 }
    local n = count("POST", "/fapi/v3/batchOrders")
    local out = ex:place_batch(orders)
    assert.equal(n + 2, count("POST", "/fapi/v3/batchOrders"))
    for i = 1, 7 do assert.equal("NEW", out[i].status) end
    assert.equal("LOT_SIZE", out[8].error.filter)
    assert.equal(before + 7, state().created.v3acct)
    assert(ex:cancel_all("XRPUSDT"))
    assert.equal(0, #assert(ex:open_orders("XRPUSDT")))
  end)

  it("waits as told by 429 Retry-After, then succeeds", function()
    local ex = v3()
    ctl("faults", { faults = { { method = "GET", path = "/fapi/v3/klines", kind = "status", status = 429, retry_after = 1 } } })
    local t0 = task.now()
    local k = assert(ex:klines("BTCUSDT", "1h", 5))
    assert.equal(5, #k)
    assert.is_true(task.now() - t0 >= 1000)
  end)

  it("stops every request to the venue during a 418 ban", function()
    local ex = v3()
    ctl("faults", { faults = { { method = "GET", path = "/fapi/v3/ticker/price", kind = "status", status = 418, retry_after = 2 } } })
    local r, err = ex:ticker("BTCUSDT")
    assert.is_nil(r)
    assert.equal("banned", err.kind)
    local n = #venue_log()
    local t0 = task.now()
    local r2, err2 = ex:klines("BTCUSDT", "1h", 5)
    assert.is_nil(r2)
    assert.equal("banned", err2.kind)
    assert.is_true(task.now() - t0 < 100)
    assert.equal(n, #venue_log())  -- nothing was sent
    task.sleep(2100)
    assert.truthy(ex:ticker("BTCUSDT"))
  end)

  it("resyncs the clock on -1021 and re-signs (V1 timestamp and V3 nonce)", function()
    for _, ex in ipairs { v1(), v3() } do
      assert(ex:sync_time())
      ctl("clock", { offset_ms = 40000 })
      local b = assert(ex:balances())
      assert.truthy(b[1].balance)
      assert.is_true(ex.offset_ms > 35000)
      ctl("clock", { offset_ms = 0 })
    end
  end)

  it("backfills any range of klines across pages, contiguous", function()
    local ex = v3()
    local now = ex:now()
    local start = (math.floor(now / 60000) - 3200) * 60000
    local k = assert(ex:klines("BTCUSDT", "1m", { start_ms = start, end_ms = start + 3099 * 60000 }))
    assert.equal(3100, #k)
    for i = 2, #k do assert.equal(k[i - 1].open_time + 60000, k[i].open_time) end
    local bad, err = ex:klines("BTCUSDT", "7m", 5)
    assert.is_nil(bad)
    assert.matches("unknown interval", err.message)
  end)

  it("reads market data", function()
    local ex = v3()
    assert.equal("60000", assert(ex:ticker("BTCUSDT")).price)
    assert.truthy(assert(ex:book_ticker("BTCUSDT")).bidPrice)
    assert.equal(5, #assert(ex:depth("BTCUSDT", 5)).bids)
    assert.truthy(assert(ex:premium_index("BTCUSDT")).markPrice)
    assert.equal(3, #assert(ex:funding_rates("BTCUSDT", { limit = 3 })))
    local r, err = ex:ticker("NOPEUSDT")
    assert.is_nil(r)
    assert.equal("BAD_SYMBOL", err.name)
  end)
  it("paces requests under the weight limit instead of running into 429", function()
    -- a one-second window with room for 20 weight stands in for the venue's minute
    ctl("setup", { weight_limit = 20, window_ms = 1000 })
    local function burst(ex, n)
      local t0 = task.now()
      for _ = 1, n do assert(ex:ping()) end
      return task.now() - t0
    end
    local function count_429()
      local n = 0
      for _, r in ipairs(venue_log()) do if r[3] == 429 then n = n + 1 end end
      return n
    end
    local ok, err = pcall(function()
      local before = count_429()
      local paced = v3 { window_ms = 1000, weight_limit = 20 }
      local took = burst(paced, 45)
      assert.equal(before, count_429()) -- not one 429: the client waited for the next window itself
      assert.is_true(took >= 1000, "45 requests at 18 per window need at least two window turns")
      -- the same burst without pacing runs into the venue's limit (the test can fail)
      task.sleep(1000 - task.now() % 1000) -- a fresh window
      local unpaced = v3 { window_ms = 1000, weight_limit = 1e6 }
      burst(unpaced, 45)
      assert.is_true(count_429() > before)
    end)
    ctl("setup", { weight_limit = 2400, window_ms = 60000 })
    assert(ok, err)
  end)
  it("waits out a slow venue within the timeout and retries a read that overran it", function()
    ctl("faults", { faults = { { method = "GET", path = "/fapi/v3/ticker/price", latency_ms = 300, count = 1 } } })
    local ex = v3 { timeout_ms = 2000 }
    local t0 = task.now()
    assert.equal("60000", assert(ex:ticker("BTCUSDT")).price)
    assert.is_true(task.now() - t0 >= 300)
    -- slower than the timeout: the read times out, is retried, and the retry answers
    ctl("faults", { faults = { { method = "GET", path = "/fapi/v3/ticker/price", latency_ms = 1500, count = 1 } } })
    local quick = v3 { timeout_ms = 500 }
    quick.breaker:reset() -- earlier tests' injected failures count against the venue's breaker
    assert.equal("60000", assert(quick:ticker("BTCUSDT")).price)
    -- every attempt overruns: a clear retry-later error naming the timeout
    ctl("faults", { faults = { { method = "GET", path = "/fapi/v3/ticker/price", latency_ms = 1500, count = 3 } } })
    quick.breaker:reset()
    local r, err = quick:ticker("BTCUSDT")
    assert.is_nil(r)
    assert.equal("timeout", err.kind)
    assert.is_true(err.retryable)
    assert.matches("timeout", tostring(err))
  end)
end)
