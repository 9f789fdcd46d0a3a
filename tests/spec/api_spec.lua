-- The control plane through the binary: `vibex run` on a paper replay with
-- api.enabled, driven from outside over HTTP and WebSocket, with a real
-- PostgreSQL. Every route answers as the served OpenAPI document says
-- (checked by maintained validators from npm: the document against the
-- OpenAPI 3.1 specification, every answer against its schema); every route
-- but health needs a token and every mutation a trade token; the wallet
-- sign-in works with a signature made by ethers and fails with the wrong
-- key, an expired nonce or a replayed signature; a manual order over a
-- risk limit is refused with the rule; the stream resumes without gaps;
-- the dashboard works in headless chromium; notifications reach a local
-- fake of Telegram and the webhooks once, grouped, and a dead endpoint
-- delays nothing.
local h = require "helpers"
local task = require "vibex.task"
local http = require "vibex.http"
local json = require "vibex.json"
local process = require "vibex.process"
local runtime = require "vibex.runtime"
local ws = require "vibex.ws"
local eth = require "vibex.core.eth"

local TOKEN = "op-token-7f3a9c1e55d2"
local WALLET_KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
local OTHER_KEY = "0x6c9b1e1f7a0d4b8e2f3a5c7d9e1b3a5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a"
local NODE_DIR = "tests/node"

-- A test tool from npm (installed by `make deps` into tests/node).
local function node(script, args)
  assert(runtime.exists(NODE_DIR .. "/node_modules"), "tests/node/node_modules is missing: run `make deps`")
  local list = { NODE_DIR .. "/" .. script }
  for _, a in ipairs(args or {}) do list[#list + 1] = a end
  return h.vibex(list, { file = "node", timeout_ms = 180000 })
end

local function address_of(key)
  local s = assert(eth.signer((key:gsub("^0x", ""))))
  return s:address()
end

local CONFIG = [[
return {
  runtime = { log_dir = %q, data_dir = %q, log_level = "info" },
  database = { url = env "DATABASE_URL" },
  replay = { interval = "5m", candles = 2016, seed = 11, speed = %d, warmup = 150 },
  strategies = {
    ["ema-cross"] = { rules = "ema_cross", params = { fast = 5, slow = 13, size_usd = 300, leverage = 2 } },
  },
  accounts = {
    { name = "trend", exchange = { venue = "sim" }, symbols = { "BTCUSDT", "ETHUSDT" }, decision_interval_s = 300,
      strategy = "ema-cross", fallback = { policy = "rules" },
      risk = { max_leverage = 3, max_position_notional = 1000, max_total_notional = 2500, max_open_positions = 2,
               min_confidence = 0.5, max_orders_per_minute = 60 },
      paper = { starting_balance = 10000, fee_rate = 0.0004 } },
    { name = "careful", exchange = { venue = "sim" }, symbols = { "XRPUSDT", "ETHUSDT" }, decision_interval_s = 900,
      strategy = "ema-cross", fallback = { policy = "rules" },
      risk = { max_leverage = 2, max_position_notional = 500, max_total_notional = 1000, max_open_positions = 2,
               max_orders_per_minute = 60 } },
  },
  experiments = { { name = "ema-speed", accounts = { "trend" },
                    variants = { { name = "fast", params = { fast = 5 } }, { name = "slow", params = { fast = 8 } } } } },
  api = { enabled = true, port = 0, token = env "VIBEX_API_TOKEN", nonce_ttl_s = 2, timeout_s = 3,
          wallets = { { address = %q, scope = "trade", name = "alice" } }%s },
  %s
}]]

-- A world: a private PostgreSQL, a config, `vibex migrate up`.
local function world(o)
  o = o or {}
  local w = { dir = h.tmpdir(), pg = h.postgres() }
  w.url = ("postgresql:///vibex?host=%s&user=vibex"):format(w.pg.conninfo:match("host=(%S+)"))
  w.config = w.dir .. "/vibex.lua"
  h.write(w.config, CONFIG:format(w.dir .. "/logs", w.dir .. "/data", o.speed or 300, address_of(WALLET_KEY), o.api or "", o.extra or ""))
  h.write(w.dir .. "/.env", "VIBEX_API_TOKEN=" .. TOKEN .. "\n" .. (o.env or ""))
  process.run("chmod", { "600", w.dir .. "/.env" })
  w.env = { VIBEX_ENV = o.environment or "testing", DATABASE_URL = w.url }
  local out, err, code = h.vibex({ "migrate", "up", w.config }, { env = w.env })
  assert(code == 0, "vibex migrate up failed: " .. tostring(err) .. tostring(out))
  return w
end

local function start(w)
  w.proc = assert(process.spawn { file = h.bin, args = { "run", w.config }, env = w.env, stdout = "ignore", stderr = "ignore" })
  local st
  assert(h.wait_until(function()
    local text = runtime.read_file(w.dir .. "/data/state.json")
    st = text and json.decode(text)
    return st and st.api and st.api.url and st.pid == w.proc:pid()
  end, 60000, 50), "vibex run never said where the API listens")
  w.base = st.api.url
  return w
end

local function stop(w)
  if w.proc then
    w.proc:kill("TERM")
    local code
    task.timeout(30000, function() code = w.proc:wait() end)
    if code == nil then w.proc:kill("KILL") end
    w.proc = nil
    return code
  end
end

-- The run must end cleanly on SIGTERM: exit 0 (under `make asan`, a leak
-- or a memory error in the server would show here as another code).
local function close(w)
  local code = stop(w)
  w.pg:stop()
  assert.equal(0, code, "vibex run did not exit cleanly on SIGTERM")
end

-- A request; the body decoded.
local function call(w, method, path, o)
  o = o or {}
  local headers = { ["Content-Type"] = "application/json" }
  if o.token ~= false then headers.Authorization = "Bearer " .. (o.token or TOKEN) end
  local res = assert(http.request { method = method, url = w.base .. path, headers = headers,
                                    body = o.body and (type(o.body) == "string" and o.body or json.encode(o.body)) or nil,
                                    timeout_ms = 30000 })
  return res.status, json.decode(res.body) or res.body, res
end

local function wait_decisions(w, account, n)
  local got
  assert(h.wait_until(function()
    local st, b = call(w, "GET", "/api/v1/decisions?limit=200&account=" .. account)
    got = st == 200 and #b.items or 0
    return got >= n
  end, 60000, 100), ("fewer than %d decisions for %s (%s)"):format(n, account, tostring(got)))
end

describe("the control plane (vibex run with api.enabled)", function()
  local w
  lazy_setup(function()
    w = start(world())
  end)
  lazy_teardown(function() if w then close(w) end end)

  it("serves every route as its OpenAPI 3.1 document says, with tokens, scopes and the audit log", function()
    wait_decisions(w, "trend", 3)
    local st, doc, docres = call(w, "GET", "/api/v1/openapi.json", { token = false })
    assert.equal(200, st)
    local answers = {}
    -- answers are kept as the server's text: decoding and encoding again
    -- here would turn an empty list into an object
    local function record(method, template, path, o)
      local s, body, res = call(w, method, path, o)
      answers[#answers + 1] = { method = method, path = template, status = s, body = body, raw = res.body }
      return s, body
    end
    -- reads
    for _, p in ipairs { "/api/v1/health", "/api/v1/ready", "/api/v1/accounts", "/api/v1/positions", "/api/v1/orders",
                         "/api/v1/fills", "/api/v1/decisions", "/api/v1/diary", "/api/v1/performance",
                         "/api/v1/market/ticker", "/api/v1/strategies", "/api/v1/config", "/api/v1/config/versions",
                         "/api/v1/experiments", "/api/v1/models/stats", "/api/v1/backtests", "/api/v1/audit",
                         "/api/v1/auth/whoami", "/api/v1/tokens", "/api/v1/openapi.json" } do
      local s = record("GET", p, p)
      assert.is_true(s == 200 or (p == "/api/v1/ready" and s == 503), p .. " answered " .. s)
    end
    local s, c = record("GET", "/api/v1/market/candles", "/api/v1/market/candles?symbol=BTCUSDT&interval=5m&limit=5")
    assert.equal(200, s)
    assert.equal(5, #c.items)
    -- pagination: two pages of decisions, no overlap, in order
    local _, p1 = call(w, "GET", "/api/v1/decisions?limit=2")
    assert.equal(2, #p1.items)
    local _, p2 = record("GET", "/api/v1/decisions", "/api/v1/decisions?limit=2&cursor=" .. p1.next_cursor)
    assert.is_true(p2.items[1].decision_id < p1.items[2].decision_id)
    local _, filtered = call(w, "GET", "/api/v1/decisions?account=careful&limit=50")
    for _, d in ipairs(filtered.items) do assert.equal("careful", d.account) end
    -- details
    local _, dec = call(w, "GET", "/api/v1/decisions?account=trend&limit=1")
    record("GET", "/api/v1/decisions/{id}", "/api/v1/decisions/" .. dec.items[1].decision_id)
    record("GET", "/api/v1/accounts/{name}", "/api/v1/accounts/trend")
    local es, exp = record("GET", "/api/v1/experiments/{name}", "/api/v1/experiments/ema-speed")
    assert.equal(200, es)
    assert.equal(2, #exp.variants)
    record("GET", "/api/v1/accounts/{name}", "/api/v1/accounts/nobody")
    -- a manual order over the position limit: refused with the rule, nothing sent
    s = record("POST", "/api/v1/orders", "/api/v1/orders",
      { body = { account = "careful", action = "open", symbol = "XRPUSDT", side = "long", size_usd = 5000, leverage = 1 } })
    assert.equal(422, s)
    local refused = answers[#answers].body
    assert.same({ "max_position_notional" }, refused.error.rules)
    -- one within the limits goes through the same path, recorded as manual
    local okst, placed = record("POST", "/api/v1/orders", "/api/v1/orders",
      { body = { account = "careful", action = "open", symbol = "XRPUSDT", side = "long", size_usd = 100, leverage = 1 } })
    assert.equal(200, okst)
    assert.equal("entry", placed.orders[1].kind)
    local cid = placed.orders[1].client_order_id
    local os_, order = record("GET", "/api/v1/orders/{client_order_id}", "/api/v1/orders/" .. cid)
    assert.equal(200, os_)
    assert.equal("manual", order.origin)
    assert.equal("careful", order.account)
    record("GET", "/api/v1/orders/{client_order_id}", "/api/v1/orders/no-such-order")
    record("POST", "/api/v1/orders/{client_order_id}/cancel", "/api/v1/orders/" .. cid .. "/cancel") -- filled already: 409
    -- the diary: add, edit, soft-delete
    local ds, note = record("POST", "/api/v1/diary", "/api/v1/diary", { body = { account = "trend", body = "watching the open", tags = { "manual" } } })
    assert.equal(201, ds)
    s = record("PATCH", "/api/v1/diary/{id}", "/api/v1/diary/" .. note.diary_entry_id, { body = { body = "watching the US open" } })
    assert.equal(200, s)
    assert.equal("watching the US open", answers[#answers].body.body)
    s = record("DELETE", "/api/v1/diary/{id}", "/api/v1/diary/" .. note.diary_entry_id)
    assert.equal(200, s)
    local _, after = call(w, "GET", "/api/v1/diary?tag=manual")
    assert.equal(0, #after.items)
    -- pause, resume, flatten
    assert.equal(200, (record("POST", "/api/v1/accounts/{name}/pause", "/api/v1/accounts/careful/pause")))
    assert.is_true(answers[#answers].body.paused)
    assert.equal(200, (record("POST", "/api/v1/accounts/{name}/resume", "/api/v1/accounts/careful/resume")))
    assert.is_false(answers[#answers].body.paused)
    assert.equal(200, (record("POST", "/api/v1/accounts/{name}/flatten", "/api/v1/accounts/careful/flatten")))
    -- tokens: a read token and a trade token
    local ts, read = record("POST", "/api/v1/tokens", "/api/v1/tokens", { body = { name = "viewer", scope = "read", expires_in_s = 3600 } })
    assert.equal(201, ts)
    assert.truthy(read.token)
    local _, tokens = call(w, "GET", "/api/v1/tokens")
    for _, t in ipairs(tokens.items) do assert.is_nil(t.token) end -- never shown again
    -- every route but health: 401 without a token; every mutation: 403 with a read token
    for path, ops in pairs(doc.paths) do
      for method, op in pairs(ops) do
        local concrete = path:gsub("{[%w_]+}", "x1")
        local body = method ~= "get" and {} or nil
        local st401 = call(w, method:upper(), concrete, { token = false, body = body })
        if op.security and #op.security == 0 then
          assert.are_not.equal(401, st401, path .. " is public")
        else
          assert.equal(401, st401, method .. " " .. path .. " without a token")
          local _, b401, r401 = call(w, method:upper(), concrete, { token = false })
          answers[#answers + 1] = { method = method:upper(), path = path, status = 401, body = b401, raw = r401.body }
          local st403 = call(w, method:upper(), concrete, { token = read.token, body = body })
          if method ~= "get" then assert.equal(403, st403, method .. " " .. path .. " with a read token") end
        end
      end
    end
    local rs = record("DELETE", "/api/v1/tokens/{id}", "/api/v1/tokens/" .. read.api_token_id)
    assert.equal(200, rs)
    assert.equal(401, (call(w, "GET", "/api/v1/accounts", { token = read.token })))
    -- bad input: a clear error, and the loop goes on
    local bs, bad = record("POST", "/api/v1/orders", "/api/v1/orders", { body = { account = "trend", action = "open", symbol = "BTCUSDT", side = "up" } })
    assert.equal(400, bs)
    assert.matches("body.side", bad.error.message, 1, true)
    bs, bad = call(w, "GET", "/api/v1/orders?limit=lots")
    assert.equal(400, bs)
    assert.matches("limit", bad.error.message, 1, true)
    assert.equal(400, (call(w, "POST", "/api/v1/diary", { body = "{not json" })))
    assert.equal(404, (call(w, "GET", "/api/v1/nothing-here")))
    -- a body over the limit is refused before it is read
    local big = string.rep("x", 2 * 1024 * 1024)
    local res = assert(http.request { method = "POST", url = w.base .. "/api/v1/diary", body = big, timeout_ms = 30000,
                                      headers = { Authorization = "Bearer " .. TOKEN } })
    assert.equal(413, res.status)
    -- /metrics: Prometheus text with the runtime's and the accounts' figures
    local ms, _, mres = call(w, "GET", "/metrics")
    assert.equal(200, ms)
    for _, name in ipairs { "vibex_account_equity{account=\"trend\"}", "vibex_agent_step_seconds_bucket", "vibex_api_requests_total",
                            "vibex_account_open_orders", "vibex_db_journal_pending", "vibex_agent_cycles_total" } do
      assert.truthy(mres.body:find(name, 1, true), "/metrics lacks " .. name)
    end
    assert.is_nil(mres.body:find(TOKEN, 1, true))
    -- the shipped Grafana dashboard and alert rules ask only for metrics vibex has
    for _, f in ipairs { "examples/monitoring/grafana-dashboard.json", "examples/monitoring/prometheus-alerts.yml" } do
      local text = assert(runtime.read_file(f))
      for name in text:gmatch("vibex_[%w_]+") do
        local base = name:gsub("_bucket$", "")
        local here = mres.body:find("# HELP " .. base .. " ", 1, true)
          or base == "vibex_stream_reconnects_total" -- registered by the live venues' streams (none in a paper run)
        assert.truthy(here, f .. " uses " .. name .. ", which /metrics does not have")
      end
    end
    assert.equal(401, (call(w, "GET", "/metrics", { token = false })))
    -- the audit log: every mutation, with who
    local _, audit = call(w, "GET", "/api/v1/audit?action=API&limit=100")
    local seen = {}
    for _, e in ipairs(audit.items) do seen[e.table_name] = e.actor end
    for _, k in ipairs { "POST /api/v1/orders", "POST /api/v1/diary", "PATCH /api/v1/diary/{id}", "DELETE /api/v1/diary/{id}",
                         "POST /api/v1/accounts/{name}/pause", "POST /api/v1/accounts/{name}/flatten", "POST /api/v1/tokens" } do
      assert.equal("config:operator", seen[k], k .. " not in the audit log")
    end
    -- every answer and the document itself, by the validators
    local dir = h.tmpdir()
    h.write(dir .. "/doc.json", docres.body)
    local parts = {}
    for i, a in ipairs(answers) do
      parts[i] = ('{"method":%s,"path":%s,"status":%d,"body":%s}'):format(json.encode(a.method), json.encode(a.path), a.status, a.raw)
    end
    h.write(dir .. "/answers.json", "[" .. table.concat(parts, ",\n") .. "]")
    local out, err, code = node("openapi_check.mjs", { dir .. "/doc.json", dir .. "/answers.json" })
    local verdict = json.decode(out) or {}
    assert.equal(0, code, "OpenAPI validation failed: " .. out .. err)
    assert.is_true(verdict.valid)
    assert.is_true(verdict.checked >= 40, "checked only " .. tostring(verdict.checked))
    -- and every operation of the document was exercised
    local covered = {}
    for _, a in ipairs(answers) do covered[a.method:lower() .. " " .. a.path] = true end
    for path, ops in pairs(doc.paths) do
      for method in pairs(ops) do
        if not covered[method .. " " .. path] and path ~= "/api/v1/auth/nonce" and path ~= "/api/v1/auth/wallet" then
          error("not exercised: " .. method .. " " .. path)
        end
      end
    end
  end)

  it("signs in with a wallet signature made by ethers, and refuses a wrong key, an expired nonce and a replay", function()
    local addr = address_of(WALLET_KEY)
    local function nonce(a)
      local st, n = call(w, "POST", "/api/v1/auth/nonce", { token = false, body = { address = a or addr } })
      assert.equal(200, st)
      return n
    end
    local function sign(key, msg)
      local f = h.tmpdir() .. "/message.txt"
      h.write(f, msg)
      local out, err, code = node("sign.mjs", { key, f })
      assert.equal(0, code, err)
      return json.decode(out)
    end
    local n = nonce()
    assert.matches("Nonce: " .. n.nonce, n.message, 1, true)
    local sig = sign(WALLET_KEY, n.message)
    assert.equal(addr:lower(), sig.address:lower())
    local st, s = call(w, "POST", "/api/v1/auth/wallet", { token = false, body = { address = addr, nonce = n.nonce, signature = sig.signature } })
    assert.equal(200, st, json.encode(s))
    assert.equal("trade", s.scope)
    local ws_, who = call(w, "GET", "/api/v1/auth/whoami", { token = s.token })
    assert.equal(200, ws_)
    assert.equal("wallet", who.kind)
    assert.equal(addr:lower(), who.name:lower())
    -- the same signature again: the nonce is used up
    st = call(w, "POST", "/api/v1/auth/wallet", { token = false, body = { address = addr, nonce = n.nonce, signature = sig.signature } })
    assert.equal(401, st)
    -- signed by another key
    local n2 = nonce()
    local other = sign(OTHER_KEY, n2.message)
    local st2, e2 = call(w, "POST", "/api/v1/auth/wallet", { token = false, body = { address = addr, nonce = n2.nonce, signature = other.signature } })
    assert.equal(401, st2)
    assert.matches("not made by", e2.error.message, 1, true)
    -- an address the config does not allow, with its own valid signature
    local n3 = nonce(other.address)
    local own = sign(OTHER_KEY, n3.message)
    local st3, e3 = call(w, "POST", "/api/v1/auth/wallet", { token = false, body = { address = other.address, nonce = n3.nonce, signature = own.signature } })
    assert.equal(401, st3)
    assert.matches("api.wallets", e3.error.message, 1, true)
    -- an expired nonce (api.nonce_ttl_s = 2 here)
    local n4 = nonce()
    local late = sign(WALLET_KEY, n4.message)
    local expires = require("vibex.api.types").parse_time(n4.expires_at)
    assert(h.wait_until(function() return runtime.wall_ms() > expires + 200 end, 10000, 50))
    local st4, e4 = call(w, "POST", "/api/v1/auth/wallet", { token = false, body = { address = addr, nonce = n4.nonce, signature = late.signature } })
    assert.equal(401, st4)
    assert.matches("expired", e4.error.message, 1, true)
    -- the failures were logged, without the signatures
    local log = runtime.read_file(w.dir .. "/logs/app.log") or ""
    assert.truthy(log:find("API authentication failed", 1, true))
    assert.is_nil(log:find(other.signature:sub(3, 40), 1, true))
  end)

  it("lets a stream client that reconnects with its last sequence number receive everything it missed, in order", function()
    local url = w.base:gsub("^http", "ws") .. "/api/v1/stream"
    local function open(since)
      local c = assert(ws.connect { url = url })
      local hello = json.decode(assert(c:recv()))
      assert.equal("hello", hello.type)
      assert.is_false(hello.authenticated)
      c:send(json.encode { op = "subscribe", topics = { "decisions" } })
      local e = json.decode(assert(c:recv()))
      assert.equal("error", e.type) -- not yet authenticated
      c:send(json.encode { op = "auth", token = TOKEN })
      assert.equal("authenticated", json.decode(assert(c:recv())).type)
      c:send(json.encode { op = "subscribe", topics = { "decisions", "orders", "fills", "equity" }, since = since })
      local sub = json.decode(assert(c:recv()))
      assert.equal("subscribed", sub.type)
      return c, sub
    end
    local function next_event(c)
      while true do
        local m = json.decode(assert(task.timeout(30000, function() return c:recv() end)))
        if m.type == "event" then return m end
        assert(m.type ~= "error", json.encode(m))
      end
    end
    local c, sub = open(nil)
    local last
    for _ = 1, 5 do
      local e = next_event(c)
      if last then assert.is_true(e.seq > last) end
      last = e.seq
    end
    c:close()
    -- while it is away, the accounts keep deciding
    local _, before = call(w, "GET", "/api/v1/decisions?limit=1")
    local top = before.items[1].decision_id
    assert(h.wait_until(function()
      local _, now = call(w, "GET", "/api/v1/decisions?limit=5")
      local newer = 0
      for _, d in ipairs(now.items) do if d.decision_id > top then newer = newer + 1 end end
      return newer >= 3
    end, 60000, 100), "no decisions while the client was away")
    local _, away = call(w, "GET", "/api/v1/decisions?limit=50")
    local c2, sub2 = open(last)
    assert.is_true(sub2.seq > last + 3, "the server's sequence did not move")
    -- everything after `last` of the topics asked for, in order, up to what
    -- the server had when we subscribed again: the decisions made while away among them
    local got, prev = {}, last
    while prev < sub2.seq do
      local e = next_event(c2)
      assert.is_true(e.seq > prev, ("event %d after %d: out of order"):format(e.seq, prev))
      if e.topic == "decisions" then got[e.data.account .. " " .. e.data.cycle_key] = true end
      prev = e.seq
    end
    local missed = 0
    for _, d in ipairs(away.items) do
      if d.decision_id > top then
        missed = missed + 1
        assert.truthy(got[d.account .. " " .. d.cycle_key], "missed decision not replayed: " .. d.account .. " " .. d.cycle_key)
      end
    end
    assert.is_true(missed >= 3)
    c2:close()
    -- every event of every topic: a client that asks for all of them gets a contiguous run
    local c3 = assert(ws.connect { url = url, headers = { "Authorization: Bearer " .. TOKEN } })
    assert.is_true(json.decode(assert(c3:recv())).authenticated)
    c3:send(json.encode { op = "subscribe", since = sub.seq })
    local s3 = json.decode(assert(c3:recv()))
    local expect = sub.seq + 1
    while expect <= s3.seq do
      local e = next_event(c3)
      assert.equal(expect, e.seq, "a gap or a reordering in the replay")
      expect = expect + 1
    end
    c3:close()
    assert.truthy(sub)
    -- logs at a chosen level: warnings and errors, no info lines
    local c4 = assert(ws.connect { url = url, headers = { "Authorization: Bearer " .. TOKEN } })
    assert.truthy(c4:recv())
    c4:send(json.encode { op = "subscribe", topics = { "logs" }, log_level = "warn" })
    assert.equal("subscribed", json.decode(assert(c4:recv())).type)
    assert.equal(200, (call(w, "POST", "/api/v1/accounts/careful/pause"))) -- a warning on the trading channel
    assert.equal(200, (call(w, "POST", "/api/v1/accounts/careful/resume")))
    local e = next_event(c4)
    assert.equal("logs", e.topic)
    assert.equal("warn", e.data.level)
    assert.matches("account paused", e.data.message, 1, true)
    c4:close()
  end)

  it("works in headless chromium: pages load clean, show the demo, update live, and pause an account", function()
    local art = os.getenv("VIBEX_ARTIFACTS") or (runtime.realpath(".") .. "/build/artifacts")
    assert(runtime.mkdir_p(art))
    assert.equal(200, (call(w, "POST", "/api/v1/accounts/trend/resume")))
    wait_decisions(w, "trend", 5)
    local out, err, code = node("dashboard.mjs", { w.base, TOKEN, art })
    assert.equal(0, code, err)
    local r = json.decode(out)
    assert(r, "dashboard driver said: " .. out .. err)
    assert.is_nil(r.failed, r.failed)
    assert.same({}, r.errors)
    assert.same({}, r.external)
    assert.same({ "careful", "trend" }, r.pages.overview.accounts)
    for _, e in ipairs(r.pages.overview.equity) do assert.truthy(e:match("%d"), "an account card shows no equity: " .. e) end
    assert.is_true(r.pages.overview.decisions > 0)
    assert.is_true(r.pages.overview.curves >= 1)
    assert.is_false(r.live_update.reloaded)
    assert.is_true(r.detail.answer > 0)
    assert.is_true(r.pages.decisions.rows > 0)
    assert.same({ "ema-speed" }, r.pages.research.experiments)
    assert.equal(2, r.pages.research.variants)
    assert.is_true(r.phone.width <= 400, "the page is wider than a phone: " .. r.phone.width)
    -- the pause from the page paused the account
    local _, acc = call(w, "GET", "/api/v1/accounts/trend")
    assert.is_true(acc.paused)
    local n0 = acc.decisions
    local _, audit = call(w, "GET", "/api/v1/audit?action=API&limit=10")
    assert.equal("POST /api/v1/accounts/{name}/pause", audit.items[1].table_name)
    -- and it stays paused: no decision while paused
    local _, careful0 = call(w, "GET", "/api/v1/accounts/careful")
    assert(h.wait_until(function()
      local _, c = call(w, "GET", "/api/v1/accounts/careful")
      return c.decisions > careful0.decisions
    end, 60000, 100))
    local _, acc2 = call(w, "GET", "/api/v1/accounts/trend")
    assert.equal(n0, acc2.decisions)
    for _, f in ipairs { "dashboard-overview.png", "dashboard-decision.png", "dashboard-paused.png", "dashboard-phone.png" } do
      assert.truthy(runtime.exists(art .. "/" .. f), f)
    end
  end)

  it("drops slow clients, and keeps answering and deciding under a flood of idle connections", function()
    local port = assert(tonumber(w.base:match(":(%d+)$")))
    local p = assert(process.spawn { file = "python3", args = { "tests/support/slow_clients.py", "127.0.0.1", tostring(port), "300", "30" } })
    local opened = json.decode(assert(task.timeout(30000, function() return p:read_line() end)))
    assert.equal(300, opened.opened)
    -- 300 connections hang in their headers: the API still answers at once, and careful still decides
    local t = runtime.wall_ms()
    assert.equal(200, (call(w, "GET", "/api/v1/health", { token = false })))
    assert.is_true(runtime.wall_ms() - t < 1000, "health took " .. (runtime.wall_ms() - t) .. " ms")
    local _, a0 = call(w, "GET", "/api/v1/accounts/careful")
    assert(h.wait_until(function()
      local _, a = call(w, "GET", "/api/v1/accounts/careful")
      return a.decisions > a0.decisions
    end, 30000, 100), "no decision while the idle connections hung")
    -- and every slow client was dropped after api.timeout_s (3 s here)
    local res = json.decode(assert(task.timeout(40000, function() return p:read_line() end)))
    p:wait()
    assert.equal(300, res.closed, json.encode(res))
    assert.is_true(res.slowest_s < 3 + 8, "the slowest was dropped after " .. res.slowest_s .. " s")
  end)

  it("limits failed logins per address: 429 with Retry-After, and logged", function()
    local last
    for _ = 1, 12 do last = select(3, call(w, "GET", "/api/v1/accounts", { token = "wrong-token" })) end
    assert.equal(429, last.status)
    assert.truthy(tonumber(last.headers["retry-after"]))
    -- the real token too, for now: the limit is per address
    assert.equal(429, (call(w, "GET", "/api/v1/accounts")))
    assert.equal(200, (call(w, "GET", "/api/v1/health", { token = false })))
  end)
end)

describe("notifications", function()
  local w, fake
  lazy_setup(function()
    local p = assert(process.spawn { file = "python3", args = { "tests/support/fake_notify/server.py" } })
    local line = assert(task.timeout(15000, function() return p:read_line() end))
    fake = { proc = p, base = "http://127.0.0.1:" .. assert(tonumber(line:match("LISTENING (%d+)"))) }
    w = world { env = "TG_TOKEN=123456:ABCdefGHIjklMNOpqrSTUvwxYZ0123\n", extra = ([[notifications = {
      { name = "phone", kind = "telegram", url = %q, bot_token = env "TG_TOKEN", chat_id = "4242", events = { "entry", "exit", "fill" },
        accounts = { "careful" }, group_s = 2 },
      { name = "ops", kind = "webhook", url = %q, events = { "fill", "entry", "exit", "error", "breaker" }, group_s = 1 },
      { name = "team", kind = "slack", url = %q, events = { "entry" }, group_s = 1 },
      { name = "chat", kind = "discord", url = %q, events = { "entry" }, group_s = 1 },
      { name = "dead", kind = "webhook", url = %q, timeout_ms = 3000, group_s = 0 },
    },]]):format(fake.base, fake.base .. "/hook/ops", fake.base .. "/slack/T1", fake.base .. "/discord/D1", fake.base .. "/down/x") }
    start(w)
  end)
  lazy_teardown(function()
    if w then close(w) end
    if fake then fake.proc:kill("TERM"); task.timeout(5000, function() return fake.proc:wait() end) end
  end)

  local function received()
    return json.decode(assert(http.get(fake.base .. "/_fake/log")).body)
  end

  it("arrive once, grouped, filtered by kind and account, and a dead endpoint delays nothing", function()
    -- the strategies rest; a storm of manual orders on careful: two entries, then their exits
    assert.equal(200, (call(w, "POST", "/api/v1/accounts/trend/pause")))
    assert.equal(200, (call(w, "POST", "/api/v1/accounts/careful/pause")))
    local took = 0
    local function order(body)
      local t = runtime.wall_ms()
      local st, r = call(w, "POST", "/api/v1/orders", { body = body })
      took = math.max(took, runtime.wall_ms() - t)
      assert.equal(200, st, json.encode(r))
      return r.orders[1].client_order_id
    end
    local function filled(cid)
      assert(h.wait_until(function()
        local _, o = call(w, "GET", "/api/v1/orders/" .. cid)
        return o.status == "filled"
      end, 30000, 50), cid .. " never filled")
    end
    local entries = {}
    for _, sym in ipairs { "XRPUSDT", "ETHUSDT" } do
      entries[#entries + 1] = order { account = "careful", action = "open", symbol = sym, side = "long", size_usd = 120, leverage = 1 }
    end
    for _, cid in ipairs(entries) do filled(cid) end
    local exits = {}
    for _, sym in ipairs { "XRPUSDT", "ETHUSDT" } do exits[#exits + 1] = order { account = "careful", action = "close", symbol = sym } end
    for _, cid in ipairs(exits) do filled(cid) end
    -- no order waited for the endpoint that hangs (every message to it hangs 3 s, then again)
    assert.is_true(took < 1500, ("a manual order took %d ms"):format(took))
    -- the fills of those orders, by the record
    local want = {}
    for _, cid in ipairs { entries[1], entries[2], exits[1], exits[2] } do
      local _, o = call(w, "GET", "/api/v1/orders/" .. cid)
      for _, f in ipairs(o.fills) do
        local k = ("%s %s %s @ %s"):format(f.side, tonumber(f.quantity), f.symbol, tonumber(f.price))
        want[k] = (want[k] or 0) + 1
      end
    end
    assert.is_true(next(want) ~= nil, "no fills recorded")
    local tg, got
    assert(h.wait_until(function()
      tg, got = {}, {}
      for _, m in ipairs(received()) do
        if m.service == "telegram" then
          tg[#tg + 1] = m
          for line in m.body.text:gmatch("[^\n]+") do
            local side, q, sym, px = line:match("careful fill: (%a+) ([%d%.]+) (%u+) @ ([%d%.]+)")
            if side then
              local k = ("%s %s %s @ %s"):format(side, tonumber(q), sym, tonumber(px))
              got[k] = (got[k] or 0) + 1
            end
          end
        end
      end
      for k in pairs(want) do if not got[k] then return false end end
      return true
    end, 30000, 100), "telegram did not get every fill: want " .. json.encode(want) .. " got " .. json.encode(got or {}))
    -- each fill once (and no fill twice), nothing of trend, and the storm grouped into few messages
    for k in pairs(want) do assert.equal(1, got[k], k) end
    for k, n in pairs(got) do assert.equal(1, n, "sent twice: " .. k) end
    local grouped = false
    for _, m in ipairs(tg) do
      assert.equal("4242", m.body.chat_id)
      assert.is_nil(m.body.text:find("trend", 1, true), "telegram is for careful only: " .. m.body.text)
      if m.body.text:match("^vibex: %d+ events") then grouped = true end
    end
    assert.is_true(grouped, "no grouped message: " .. json.encode(tg))
    assert.is_true(#tg <= 4, ("%d telegram messages for two bursts of orders"):format(#tg))
    -- the others: the webhook got JSON with its events, slack and discord their entries only
    assert(h.wait_until(function()
      local s = {}
      for _, m in ipairs(received()) do s[m.service] = true end
      return s.webhook and s.slack and s.discord
    end, 30000, 100))
    for _, m in ipairs(received()) do
      if m.service == "webhook" then
        assert.equal("vibex", m.body.source)
        assert.is_true(m.body.count >= 1)
        for _, e in ipairs(m.body.events) do assert.truthy(e.kind and e.time and e.text) end
      elseif m.service == "slack" or m.service == "discord" then
        local text = m.body.text or m.body.content
        assert.truthy(text:find("entry", 1, true), text)
        assert.is_nil(text:find("fill:", 1, true), "slack/discord asked for entries only: " .. text)
      end
      local text = m.body.text or m.body.content or ""
      assert.is_nil(text:find("123456:ABC", 1, true), "the bot token leaked into a message")
    end
    -- the trading loop kept its pace while the dead endpoint hung
    local _, before = call(w, "GET", "/api/v1/accounts/trend")
    assert.equal(200, (call(w, "POST", "/api/v1/accounts/trend/resume")))
    assert(h.wait_until(function()
      local _, a = call(w, "GET", "/api/v1/accounts/trend")
      return a.decisions >= before.decisions + 3
    end, 30000, 100), "trend stopped deciding")
    local metrics = select(3, call(w, "GET", "/metrics")).body
    assert.truthy(metrics:find('vibex_notifications_total{notifier="phone",outcome="sent"}', 1, true))
  end)
end)

describe("the API beyond this machine", function()
  it("needs a token and TLS (or insecure = true) to bind elsewhere, serves HTTPS, and warns at every insecure start", function()
    local dir = h.tmpdir()
    local function check(api)
      h.write(dir .. "/c.lua", ([[return { api = { enabled = true, bind = "0.0.0.0", port = 0, %s },
        accounts = { { name = "a", exchange = { venue = "sim" }, symbols = { "BTCUSDT" } } } }]]):format(api))
      h.write(dir .. "/.env", "VIBEX_API_TOKEN=x\n")
      return h.vibex({ "check", "-q", dir .. "/c.lua" }, { env = { VIBEX_ENV = "development" } })
    end
    local _, err, code = check("")
    assert.equal(2, code)
    assert.matches("api.token: required when the API listens on 0.0.0.0", err, 1, true)
    _, err, code = check('token = env "VIBEX_API_TOKEN"')
    assert.equal(2, code)
    assert.matches("api.tls_cert: the API listens on 0.0.0.0 (not loopback) without TLS", err, 1, true)
    _, err, code = check('token = env "VIBEX_API_TOKEN", insecure = true')
    assert.equal(0, code, err)
    -- HTTPS with a certificate made here
    local ok = process.run("sh", { "-c", ('openssl req -x509 -newkey rsa:2048 -nodes -keyout "%s/key.pem" -out "%s/cert.pem" '
      .. '-days 1 -subj /CN=127.0.0.1 2>/dev/null'):format(dir, dir) })
    assert.truthy(ok)
    local w = world { api = (", tls_cert = %q, tls_key = %q"):format(dir .. "/cert.pem", dir .. "/key.pem") }
    start(w)
    assert.matches("^https://", w.base)
    local res = assert(http.request { url = w.base .. "/api/v1/accounts", insecure = true, headers = { Authorization = "Bearer " .. TOKEN } })
    assert.equal(200, res.status)
    local plain = http.request { url = (w.base:gsub("^https", "http")) .. "/api/v1/health", timeout_ms = 5000 }
    assert.is_true(plain == nil or plain.status ~= 200, "plain HTTP answered on the TLS port")
    assert.equal(0, stop(w))
    -- every insecure start says so
    h.write(w.config, (runtime.read_file(w.config):gsub('timeout_s = 3,', 'timeout_s = 3, bind = "0.0.0.0", insecure = true,')
      :gsub(', tls_cert = "[^"]*", tls_key = "[^"]*"', "")))
    w.env.VIBEX_ENV = "development"
    start(w)
    assert.matches("^http://0%.0%.0%.0:", w.base)
    w.base = w.base:gsub("0%.0%.0%.0", "127.0.0.1")
    assert.equal(200, (call(w, "GET", "/api/v1/health", { token = false })))
    local log = runtime.read_file(w.dir .. "/logs/app.log") or ""
    assert.truthy(log:find("without TLS (api.insecure = true)", 1, true), "no warning about the insecure API")
    close(w)
  end)
end)
