--- Exchange benchmarks: signing cost per request for both schemes and the
-- local order preparation (rounding + filter checks), beside SHA-256 of the
-- same string as a baseline.
local crypto = require "vibex.core.crypto"
local filters = require "vibex.exchange.filters"
local signer = require "vibex.exchange.signer"
local task = require "vibex.task"
local json = require "vibex.json"
local process = require "vibex.process"
local http = require "vibex.http"
local ws = require "vibex.ws"
local streams = require "vibex.exchange.streams"
local exchange = require "vibex.exchange"

local M = {}

-- the order sink: stamps a request's first bytes as they arrive (tests/support/order_sink.c)
local SINK = (os.getenv("BUILD") or "build/release") .. "/tests/order_sink"

local function spawn_server(file)
  local p
  if file:match("%.py$") then p = assert(process.spawn { file = "python3", args = { file } })
  else p = assert(process.spawn { file = file }) end
  local line = assert(task.timeout(15000, function() return p:read_line() end))
  return p, assert(tonumber(line:match("LISTENING (%d+)")))
end

local function stop(p)
  p:kill("TERM")
  task.timeout(5000, function() return p:wait() end)
end

--- Drain a firehose connection, handing each message to fn; messages/s
-- from the first message to the last.
local function drain(port, n, fn)
  local c = assert(ws.connect { url = ("ws://127.0.0.1:%d/firehose?n=%d"):format(port, n), max_queue = 64 * 2 ^ 20 })
  local got, t0 = 0, nil
  while true do
    local msg = c:recv()
    if not msg then break end
    if not t0 then t0 = task.hrtime() end
    got = got + 1
    fn(msg)
  end
  local dt = tonumber(task.hrtime() - t0) / 1e9
  assert(got == n, ("firehose: got %d of %d messages"):format(got, n))
  return n / dt
end

--- WebSocket kline messages: socket -> C scanner -> Lua callback.
local function bench_stream(row, fmt, best, quick)
  local p, port = spawn_server("tests/support/fake_aster/server.py")
  local n = quick and 50000 or 300000
  -- the production path: Market:_dispatch (C scan, table, handler via xpcall)
  local calls = 0
  local md = streams.market { url = "ws://127.0.0.1:" .. port, on_kline = function() calls = calls + 1 end }
  local best_full, best_raw = 0, 0
  for _ = 1, 3 do
    best_raw = math.max(best_raw, drain(port, n, function() end))
    best_full = math.max(best_full, drain(port, n, function(msg) md:_dispatch(msg) end))
  end
  assert(calls == 3 * n, "every kline reached the callback")
  -- the split, on the same messages held in memory
  local sample = {}
  drain(port, 1000, function(msg) sample[#sample + 1] = msg end)
  stop(p)
  local reps = quick and 20 or 200
  local keep = {} -- the tables escape, as they do into a handler: no allocation sinking
  local tparse = best(3, function()
    for _ = 1, reps do for i = 1, #sample do keep[i] = streams.parse_kline(sample[i]) end end
  end)
  local ffi = require "ffi"
  local kbuf = ffi.new("vx_kline_msg")
  local C = ffi.C
  local tscan = best(3, function()
    for _ = 1, reps do for i = 1, #sample do local m = sample[i]; C.vx_kline_msg_parse(m, #m, kbuf) end end
  end)
  local tjson = best(3, function()
    for _ = 1, reps do for i = 1, #sample do json.decode(sample[i]) end end
  end)
  local tdispatch = best(3, function()
    for _ = 1, reps do for i = 1, #sample do md:_dispatch(sample[i]) end end
  end)
  local per = #sample * reps
  row("ws kline msgs -> Lua callback", fmt(best_full), "msg/s",
    ("target >= 200k/s on one core: %s"):format(best_full >= 2e5 and "ok" or "MISSED"))
  row("  baseline: ws receive only, no parse", fmt(best_raw), "msg/s", ("ratio %.2fx"):format(best_full / best_raw))
  row("  split: parse (C scanner into a struct)", ("%.2f"):format(tscan / per * 1e6), "us/msg")
  row("  split: + Lua table of the candle", ("%.2f"):format((tparse - tscan) / per * 1e6), "us/msg")
  row("  split: + dispatch (gap tracking, handler)", ("%.2f"):format(math.max(0, tdispatch - tparse) / per * 1e6), "us/msg",
    ("whole path in memory %.2f us/msg"):format(tdispatch / per * 1e6))
  row("  baseline: lua-cjson decode of the same", ("%.2f"):format(tjson / per * 1e6), "us/msg",
    ("C scanner %.1fx faster"):format(tjson / tparse))
end

--- Strategy call -> order bytes on the socket, stamped by a local sink.
local function bench_order_latency(row, quick)
  local p, port = spawn_server(SINK)
  local base = "http://127.0.0.1:" .. port
  local n = quick and 200 or 2000
  local function run(credentials)
    -- the sink has no limits; keep the client's own pacing out of the figure
    local ex = exchange.aster { base_url = base, credentials = credentials, account = "bench",
                                weight_limit = 1e9, order_limit = 1e9 }
    assert(ex:symbol_rules("BTCUSDT"))
    for i = 1, 20 do assert(ex:place { symbol = "BTCUSDT", side = "BUY", type = "LIMIT", price = 60000, quantity = 0.01,
                                       decision = "warm", leg = i }) end
    assert(http.get(base .. "/_stamps"))
    local starts = {}
    for i = 1, n do
      starts[i] = task.hrtime()
      assert(ex:place { symbol = "BTCUSDT", side = "BUY", type = "LIMIT", price = 60000.04, quantity = 0.0123,
                        decision = "lat", leg = i })
    end
    local stamps = json.decode(assert(http.get(base .. "/_stamps")).body)
    assert(#stamps == n, "one stamp per order")
    local lat = {}
    for i = 1, n do lat[i] = (stamps[i] - tonumber(starts[i])) / 1e3 end
    table.sort(lat)
    return lat[math.floor(n * 0.5)], lat[math.floor(n * 0.99)]
  end
  local p50v3, p99v3 = run { user = "0x63DD5aCC6b1aa0f563956C0e534DD30B6dcF7C4e", signer = "0x21cF8Ae13Bb72632562c6Fff438652Ba1a151bb0",
                             private_key = "4fd0a42218f3eae43a6ce26d22544e986139a01e5b34a62db53757ffca81bae1" }
  local p50v1, p99v1 = run { api_key = "k", api_secret = ("s"):rep(64) }
  stop(p)
  row("order call -> bytes on socket, V3 p50", ("%.0f"):format(p50v3), "us", ("p99 %.0f us (target p99 < 1 ms): %s"):format(
    p99v3, p99v3 < 1000 and "ok" or "MISSED"))
  row("order call -> bytes on socket, V1 p50", ("%.0f"):format(p50v1), "us", ("p99 %.0f us (target p99 < 1 ms): %s"):format(
    p99v1, p99v1 < 1000 and "ok" or "MISSED"))
end

--- Kline frames from the socket into the candle buffer: the market-data
-- sink (runtime/mdsink.c) on a WebSocket connection, end to end from the
-- fake venue's firehose, and the same frames in memory beside lua-cjson.
local function bench_kline_sink(row, fmt, best, quick)
  local ffi = require "ffi"
  local marketdata = require "vibex.marketdata" -- declares the sink's layout
  local core = require "vibex.core.mdsink"
  local ta = require "vibex.ta"
  local cjson = require "cjson"
  local C = ffi.C
  local _ = marketdata
  local function sink_for_btc()
    local ud = core.new()
    local s = ffi.cast("vx_md_sink *", ud)
    -- the firehose cycles through 1,000 candle times: room for all of them
    local c = assert(ta.candles { interval = "1m", capacity = 2048, symbol = "BTCUSDT" })
    assert(C.vx_md_sink_route(s, "BTCUSDT", "1m", c.ptr) >= 0)
    return ud, s, c
  end
  local p, port = spawn_server("tests/support/fake_aster/server.py")
  local n = quick and 200000 or 2000000
  local best_rate, applied, passed = 0, 0, 0
  for _ = 1, 3 do
    local ud, s, c = sink_for_btc()
    local conn = assert(ws.connect { url = ("ws://127.0.0.1:%d/firehose?n=%d"):format(port, n), sink = ud })
    local t0 = task.hrtime()
    while conn:recv() do passed = passed + 1 end -- nothing reaches Lua but the close
    local dt = tonumber(task.hrtime() - t0) / 1e9
    applied = tonumber(s.applied)
    assert(applied == n, ("firehose: %d of %d frames applied"):format(applied, n))
    assert(c:len() == 1000)
    best_rate = math.max(best_rate, n / dt)
  end
  -- the same frames in memory: the sink's own work, and lua-cjson's
  local sample = {}
  drain(port, 1000, function(msg) sample[#sample + 1] = msg end)
  stop(p)
  local ud, s = sink_for_btc()
  local reps = quick and 20 or 300
  local per = #sample * reps
  local tsink = best(5, function()
    for _ = 1, reps do for i = 1, #sample do local m = sample[i]; C.vx_md_sink_offer(s, m, #m) end end
  end)
  local tjson = best(3, function()
    for _ = 1, reps do for i = 1, #sample do cjson.decode(sample[i]) end end
  end)
  local _ = ud
  local us = 1e6 / best_rate
  row("kline frame: socket -> candle buffer", ("%.2f"):format(us), "us/frame",
    ("%s frames/s end to end (target <= 0.5 us, 2M/s): %s"):format(fmt(best_rate),
      (us <= 0.5 and best_rate >= 2e6) and "ok" or "MISSED"))
  row("  in memory: scan + buffer update (C sink)", ("%.0f"):format(tsink / per * 1e9), "ns/frame",
    ("%s frames/s on one core"):format(fmt(per / tsink)))
  row("  baseline: lua-cjson decode of the same", ("%.0f"):format(tjson / per * 1e9), "ns/frame",
    ("the sink is %.1fx faster and builds no Lua value"):format(tjson / tsink))
end

--- From a strategy's decision (the policy's intents) to the order's bytes
-- handed to the socket, through the production executor: legs, exact
-- sizing and filters, the risk gate, the order log, the signature, libcurl.
-- The moment of sending is curl's own (pretransfer, on the loop's monotonic
-- clock); a local sink (tests/support/order_sink.c) also stamps when the
-- bytes arrive, which adds loopback delivery and its thread's wake-up.
-- Decisions run back to back, 3,000 per scheme; with the record going to a
-- private PostgreSQL behind the wire (flushed after each decision, as a
-- cycle's end does), and without a database.
local function bench_decision_latency(row, quick)
  local agent = require "vibex.agent"
  local execute = require "vibex.agent.execute"
  local risk = require "vibex.agent.risk"
  local recorder = require "vibex.agent.recorder"
  local reconcile = require "vibex.agent.reconcile"
  local venues = require "vibex.exchange.venue"
  local config_schema = require "vibex.config_schema"
  local S = require "vibex.schema"
  local log = require "vibex.log"
  log.configure { level = "error", console_level = "error" }
  local p, port = spawn_server(SINK)
  local base = "http://127.0.0.1:" .. port
  local n = quick and 300 or 3000
  local dir = ("/tmp/vibex-bench-exec-%d"):format(require("vibex.runtime").pid())
  package.path = "tests/support/?.lua;" .. package.path
  local db = require "vibex.db"
  local cluster = require("helpers").postgres()
  local pool = db.pool { conninfo = cluster.conninfo, size = 2 }
  assert(require("vibex.db.migrate").up(pool))
  local pg_repos = db.repos { pool = pool }
  assert(pg_repos.accounts:ensure { name = "bench", venue = "aster", mode = "live" })
  local raw = { accounts = { { name = "bench", mode = "paper", exchange = { venue = "sim" }, symbols = { "BTCUSDT" },
                               risk = { max_orders_per_minute = 1200, max_position_notional = 1e9, max_total_notional = 1e9,
                                        max_open_positions = 200, max_leverage = 5 } } } }
  local cfg = assert(S.validate(config_schema.config, raw, { data = { environment = "testing" } }))
  local acc = cfg.accounts[1]
  local function pct(list, q) table.sort(list); return list[math.max(1, math.floor(#list * q))] end
  local function stamps_since(starts)
    local st = json.decode(assert(http.get(base .. "/_stamps")).body)
    local lat = {}
    for i = 1, #starts do lat[i] = (st[#st - #starts + i] - starts[i]) / 1e3 end
    return lat
  end
  local function run(credentials, repos)
    local client = exchange.aster { base_url = base, credentials = credentials, account = "bench",
                                    weight_limit = 1e9, order_limit = 1e9 }
    assert(client:symbol_rules("BTCUSDT"))
    local ag = agent.new { config = cfg, repos = repos }
    local a = { name = "bench", venue = venues.new(client, { account = "bench" }), gate = risk.gate { account = "bench" },
                rq = recorder.new { repos = repos, path = dir .. "/orders.log", account = "bench" },
                leverage = { BTCUSDT = 2 }, known = {}, exit_plans = {} }
    a.resolver = reconcile.resolver(ag, a, "bench")
    local view = { now_ms = 0, symbols = { BTCUSDT = true }, prices = { BTCUSDT = 60000.1 },
                   books = { BTCUSDT = { bid = 60000, ask = 60000.2 } }, positions = {}, list = {},
                   equity = 1e7, available = 1e7, wallet = 1e7 }
    local decisions = { { symbol = "BTCUSDT", action = "open_long", confidence = 0.9 } }
    local sent, starts = {}, {}
    local function decide(i, keep)
      local rec = { account = "bench", cycle_key = ("bench-%s-%d"):format(tostring(repos ~= nil), i),
                    validation = { refusals = {}, rejected = {} }, orders = {}, script_versions = {}, step_ms = {} }
      view.now_ms = i * 1000
      local intents = { { action = "open", symbol = "BTCUSDT", side = "long", size_usd = 739.5, leverage = 2,
                          confidence = 0.9, decision = 1 } }
      local t0 = tonumber(task.hrtime())
      execute.run(ag, a, acc, intents, decisions, view, rec)
      assert(rec.orders[1] and rec.orders[1].status ~= "rejected", rec.orders[1] and rec.orders[1].error)
      if keep then
        starts[#starts + 1] = t0
        sent[#sent + 1] = (client.last_sent_ns - t0) / 1e3
      end
      a.rq:flush() -- the database has it before the next decision, as a cycle's end would
    end
    for i = 1, 50 do decide(-i) end -- warm up (JIT, connections)
    assert(http.get(base .. "/_stamps"))
    for i = 1, n do decide(i, true) end
    local arrived = stamps_since(starts)
    return pct(sent, 0.5), pct(sent, 0.99), pct(arrived, 0.5), pct(arrived, 0.99)
  end
  -- the floor: our HTTP client alone posting a ready-made order body to the same sink
  local function bare()
    local body = "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.012&newClientOrderId=vx348bb5122d716ae135c49d378b135a"
      .. "&newOrderRespType=RESULT&recvWindow=5000&timestamp=1700000000000&signature=" .. ("a"):rep(64)
    local hd = { "X-MBX-APIKEY: k", "Content-Type: application/x-www-form-urlencoded" }
    local function post() return assert(http.request { method = "POST", url = base .. "/fapi/v1/order", headers = hd, body = body }) end
    for _ = 1, 50 do post() end
    assert(http.get(base .. "/_stamps"))
    local sent, starts = {}, {}
    for i = 1, n do
      local t0 = tonumber(task.hrtime())
      local res = post()
      starts[i], sent[i] = t0, (res.sent_ns - t0) / 1e3
    end
    local arrived = stamps_since(starts)
    return pct(sent, 0.5), pct(sent, 0.99), pct(arrived, 0.5), pct(arrived, 0.99)
  end
  local V1 = { api_key = "k", api_secret = ("s"):rep(64) }
  local V3 = { user = "0x63DD5aCC6b1aa0f563956C0e534DD30B6dcF7C4e", signer = "0x21cF8Ae13Bb72632562c6Fff438652Ba1a151bb0",
               private_key = "4fd0a42218f3eae43a6ce26d22544e986139a01e5b34a62db53757ffca81bae1" }
  local results = {
    { "decision -> order bytes sent, V1", run(V1, pg_repos) },
    { "decision -> order bytes sent, V3", run(V3, pg_repos) },
    { "  same, V1, no database (order log only)", run(V1, nil) },
    { "  baseline: bare HTTP POST of a ready order", bare() },
  }
  stop(p)
  pool:close()
  cluster:stop()
  os.execute("rm -rf " .. dir)
  for k, r in ipairs(results) do
    local name, s50, s99, a50, a99 = r[1], r[2], r[3], r[4], r[5]
    local note = ("p99 %.0f us; at the sink p50 %.0f / p99 %.0f us"):format(s99, a50, a99)
    if k <= 2 then note = note .. (" (target p99 < 100 us): %s"):format(s99 < 100 and "ok" or "MISSED") end
    row(name .. " p50", ("%.0f"):format(s50), "us", note)
  end
end

local ORDER = { { "symbol", "BTCUSDT" }, { "side", "BUY" }, { "type", "LIMIT" }, { "timeInForce", "GTC" },
                { "quantity", "0.012" }, { "price", "60000.1" }, { "newClientOrderId", "vx348bb5122d716ae135c49d378b135a" } }

local function copy(list)
  local out = {}
  for i, kv in ipairs(list) do out[i] = kv end
  return out
end

function M.run(row, fmt, best, quick)
  local n1 = quick and 20000 or 200000
  local n3 = quick and 500 or 5000
  local v1 = signer.v1 { api_key = "k", api_secret = ("s"):rep(64) }
  local v3 = signer.v3 { user = "0x63DD5aCC6b1aa0f563956C0e534DD30B6dcF7C4e", signer = "0x21cF8Ae13Bb72632562c6Fff438652Ba1a151bb0",
                         private_key = "4fd0a42218f3eae43a6ce26d22544e986139a01e5b34a62db53757ffca81bae1" }
  local s = signer.join(ORDER)
  local tb = best(3, function() for _ = 1, n1 do crypto.sha256(s) end end)
  task.yield()
  local t1 = best(3, function() for i = 1, n1 do v1.sign(copy(ORDER), 1700000000000 + i) end end)
  task.yield()
  local t3 = best(3, function() for i = 1, n3 do v3.sign(copy(ORDER), 1700000000000 + i) end end)
  row("sign request, V1 HMAC-SHA256", ("%.2f"):format(t1 / n1 * 1e6), "us/req", ("%s req/s"):format(fmt(n1 / t1)))
  row("sign request, V3 EIP-712 + secp256k1", ("%.2f"):format(t3 / n3 * 1e6), "us/req", ("%s req/s"):format(fmt(n3 / t3)))
  row("  baseline: sha256 of the same string", ("%.2f"):format(tb / n1 * 1e6), "us/op")
  local rules = filters.from_symbol { symbol = "BTCUSDT", status = "TRADING", filters = {
    { filterType = "PRICE_FILTER", minPrice = "1", maxPrice = "1000000", tickSize = "0.1" },
    { filterType = "LOT_SIZE", minQty = "0.001", maxQty = "1000", stepSize = "0.001" },
    { filterType = "MIN_NOTIONAL", notional = "5" },
    { filterType = "PERCENT_PRICE", multiplierUp = "1.15", multiplierDown = "0.85" } } }
  task.yield()
  local tf = best(3, function()
    for i = 1, n1 / 4 do
      assert(rules:format({ side = "BUY", type = "LIMIT", price = 60000.123 + i % 7, quantity = 0.0123 }, "60000"))
    end
  end)
  row("order rounding + filter checks", ("%.2f"):format(tf / (n1 / 4) * 1e6), "us/order")
  bench_stream(row, fmt, best, quick)
  bench_kline_sink(row, fmt, best, quick)
  bench_order_latency(row, quick)
  bench_decision_latency(row, quick)
end

return M
