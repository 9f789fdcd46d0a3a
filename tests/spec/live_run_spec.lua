-- Live trading through the binary, end to end: `vibex run` with live
-- accounts (V1 and V3 keys) on the fake Aster venue, killed with -9 at
-- three moments and restarted, then with faults on the order endpoint, then
-- with its streams dropped. Asserted from the venue's own record, the
-- database and the files: orders were placed; every order the venue holds
-- is in the database with the venue's status and fills; none was placed
-- twice; positions and balances match after each restart's reconciliation;
-- every order passed the risk gate.
local live = require "live"
local h = require "helpers"
local task = require "vibex.task"
local json = require "vibex.json"

local ACCOUNTS = {
  { name = "v1", keys = "v1", symbols = { "BTCUSDT", "ETHUSDT" } },
  { name = "v3", keys = "v3", symbols = { "ETHUSDT", "XRPUSDT" } },
}

-- No entry at the venue larger than the gate allows (a little slippage aside).
local function assert_within_limits(w)
  for _, a in ipairs(ACCOUNTS) do
    local v = w:venue(true).accounts[a.name]
    local avg = {}
    for _, o in ipairs(v.all_orders) do
      if not o.reduceOnly and not o.closePosition and tonumber(o.executedQty) > 0 then
        local notional = tonumber(o.executedQty) * tonumber(o.avgPrice)
        assert.is_true(notional <= live.LIMITS.max_position_notional * 1.05,
          ("%s entry %s notional %.2f above the limit"):format(a.name, o.clientOrderId, notional))
        avg[#avg + 1] = notional
      end
    end
    assert.is_true(#avg > 0, a.name .. " placed no entry at all")
    -- the oversized decisions were refused by the gate, and recorded as such
    local refused = w:query([[SELECT count(*) AS n FROM risk_refusals r JOIN accounts a USING (account_id)
      WHERE a.name = $1 AND r.rule = 'max_position_notional']], a.name)[1]
    assert.is_true(tonumber(refused.n) > 0, a.name .. ": no oversized entry was refused")
  end
end

-- Freeze the venue (no price moves, no market orders), restart, and check
-- that the reconciliation brought the database to the venue.
local function restart_and_check(w, why)
  w:wait_idle()
  w:freeze(true)
  w:start()
  local st = w:wait_running()
  w:wait_consistent(20000, true, "after the restart (" .. why .. ")")
  for _, a in ipairs(ACCOUNTS) do
    assert.equal(0, st.accounts[a.name].unknown_orders or 0, why)
    local rows = w:query([[SELECT count(*) AS n FROM reconciliations r JOIN accounts a USING (account_id)
      WHERE a.name = $1 AND r.reason = 'start']], a.name)
    assert.is_true(tonumber(rows[1].n) >= 1)
  end
  w:freeze(false)
end

describe("vibex run trades live accounts", function()
  local w
  setup(function() w = live.world { accounts = ACCOUNTS } end)
  teardown(function() if w then w:close() end end)

  it("survives kill -9 during a cycle, between an entry and its stop, and while the venue answers 503", function()
    w:start()
    w:wait_running()
    w:wait_decisions(8)
    w:wait_consistent(20000, false, "before the first kill")

    -- 1. during a cycle: an order is in the venue's hands when the process dies
    w:faults { { method = "POST", path = "/fapi/v1/order", latency_ms = 2500, count = 1 } }
    w:wait_inflight(1)
    w:kill()
    restart_and_check(w, "killed during a cycle")
    w:wait_decisions(12)

    -- 2. between an entry and its stop: the stop never reaches the venue
    w:faults { { method = "POST", path = "/fapi/v3/order", match = "type=STOP_MARKET", latency_ms = 3000, kind = "drop",
                 count = 1 } }
    w:wait_inflight(1)
    local before = w:venue(true).accounts.v3
    w:kill()
    w:wait_idle()
    -- the entry is filled and has no stop on the venue
    local v3 = w:venue(true).accounts.v3
    local entry_pos = next(v3.positions)
    assert.truthy(entry_pos, "the entry before the held stop did not open a position")
    restart_and_check(w, "killed between an entry and its stop")
    -- the stop the kill held back, sent by the restart's reconciliation (found
    -- by its log line: cycles after the restart place stops of their own)
    local recovered
    for line in w:log_text("trading"):gmatch("[^\n]+") do
      if line:find("protective order sent after a restart", 1, true) then
        local e = json.decode(line)
        if e and e.account == "v3" and e.kind == "stop" then recovered = e end
      end
    end
    assert.truthy(recovered, "the stop of the filled entry was not sent after the restart (logs in " .. w.dir .. "/logs)")
    local protected -- the venue's positions are keyed "SYMBOL:SIDE"
    for key in pairs(v3.positions) do
      if key:match("^[^:]+") == recovered.symbol then protected = key end
    end
    assert.truthy(protected, "the recovered stop protects no position of the kill's moment")
    local stop = w:query([[SELECT o.client_order_id, o.symbol, o.status, o.parent_client_order_id FROM orders o
      WHERE o.client_order_id = $1]], recovered.client_order_id)[1]
    assert.truthy(stop)
    local on_venue
    for _, o in ipairs(w:venue(true).accounts.v3.all_orders) do
      if o.clientOrderId == stop.client_order_id then on_venue = o end
    end
    assert.truthy(on_venue, "the recovered stop is not on the venue: " .. json.encode(stop))
    assert.equal("STOP_MARKET", on_venue.type)
    assert.truthy(stop.status == "new" or stop.status == "filled" or stop.status == "canceled", stop.status)
    assert.is_true(#before.all_orders < #w:venue(true).accounts.v3.all_orders)
    w:wait_decisions(16)

    -- 3. while the venue answers 503 (it processed the orders; lookups fail too)
    w:faults {
      { method = "POST", path = "/fapi/v1/order", kind = "status", status = 503, after = true, count = -1 },
      { method = "POST", path = "/fapi/v3/order", kind = "status", status = 503, after = true, count = -1 },
      { method = "GET", path = "/fapi/v1/order", kind = "status", status = 503, count = -1 },
      { method = "GET", path = "/fapi/v3/order", kind = "status", status = 503, count = -1 },
    }
    assert.is_true(h.wait_until(function() return w:venue().faults_fired >= 6 end, 30000, 20))
    w:kill()
    w:clear_faults()
    restart_and_check(w, "killed while the venue answered 503")

    -- more cycles, then a clean stop: everything agrees and nothing broke a limit
    w:wait_decisions(20)
    w:freeze(true)
    w:wait_idle()
    assert.equal(0, w:stop())
    w:wait_consistent(5000, false, "after the clean stop")
    assert_within_limits(w)
    local placed = w:venue().accounts
    assert.is_true(placed.v1.orders >= 10 and placed.v3.orders >= 10)
  end)
end)

describe("vibex run under faults on the order endpoint", function()
  local w
  setup(function() w = live.world { accounts = ACCOUNTS, seed = 2 } end)
  teardown(function() if w then w:close() end end)

  it("ends with no duplicate and no order the venue holds that the database calls rejected or unknown", function()
    w:start()
    w:wait_running()
    local rounds = {
      { kind = "status", status = 503, after = true, count = 2 },     -- processed, then 503
      { kind = "malformed", count = 2 },                              -- processed, body cut off
      { kind = "timeout", seconds = 7, count = 1 },                   -- processed, answered after the client gave up
      { kind = "status", status = 429, retry_after = 1, count = 2 },  -- not processed: slow down
      { kind = "status", status = 500, count = 2 },                   -- not processed, outcome unknown to the client
      { kind = "status", status = 502, after = true, count = 1 },     -- processed, then 5xx
    }
    local n = 4
    for _, f in ipairs(rounds) do
      for _, path in ipairs { "/fapi/v1/order", "/fapi/v3/order" } do
        local r = {}
        for k, v in pairs(f) do r[k] = v end
        r.method, r.path = "POST", path
        w:faults { r }
      end
      n = n + 3
      w:wait_decisions(n, 90000)
    end
    w:wait_decisions(n + 3, 90000)
    w:freeze(true)
    w:wait_idle()
    -- every unknown outcome resolved before stopping
    w:wait_state(function(st)
      for _, a in ipairs(ACCOUNTS) do
        if (st.accounts[a.name].unknown_orders or 0) > 0 then return false end
      end
      return true
    end, "the unknown orders to resolve", 60000)
    assert.equal(0, w:stop())
    w:wait_consistent(10000, false, "after the faults and a clean stop")
    for _, a in ipairs(ACCOUNTS) do
      local v = w:venue(true).accounts[a.name]
      assert.same({}, v.duplicates)
      local held = {}
      for _, o in ipairs(v.all_orders) do held[o.clientOrderId] = true end
      local bad = w:query([[SELECT o.client_order_id, o.status FROM orders o JOIN accounts a USING (account_id)
        WHERE a.name = $1 AND o.status IN ('rejected', 'unknown', 'pending')]], a.name)
      for _, r in ipairs(bad) do
        assert.is_nil(held[r.client_order_id], ("%s: the venue holds %s, the database calls it %s"):format(a.name,
          r.client_order_id, r.status))
      end
      -- every outcome that was unknown is known now (a leg the shutdown kept
      -- from leaving may stay pending: the next start settles it)
      local unknowns = w:query([[SELECT count(*) AS n FROM orders o JOIN accounts a USING (account_id)
        WHERE a.name = $1 AND o.status = 'unknown']], a.name)[1]
      assert.equal(0, tonumber(unknowns.n))
    end
    -- the faults did happen and the lookups resolved them
    local resolved = w:query("SELECT count(*) AS n FROM orders WHERE resolved_at IS NOT NULL")[1]
    assert.is_true(tonumber(resolved.n) > 0, "no unknown outcome was ever resolved")
    assert_within_limits(w)
  end)
end)

describe("vibex run with its streams dropped", function()
  local w
  setup(function() w = live.world { accounts = ACCOUNTS, seed = 3 } end)
  teardown(function() if w then w:close() end end)

  local function kline_stats(st)
    local out = {}
    for _, m in pairs(st.market or {}) do
      for sym, s in pairs(m.symbols) do out[sym] = s["1m"] end
    end
    return out
  end

  it("keeps the decision cycle off REST, backfills missed candles and records a fill made while away once", function()
    w:start()
    w:wait_running()
    w:wait_decisions(4)
    local k0 = w:kline_calls()
    assert.is_true(k0 >= 6, "the history fill should use REST klines") -- 3 symbols x 2 intervals
    w:wait_decisions(10)
    assert.equal(k0, w:kline_calls(), "a decision cycle called REST klines")

    -- the market stream drops and the venue's clock moves 3 minutes on meanwhile
    local before = kline_stats(w:state())
    w.fake.ctl("ws", { faults = { { kind = "drop", target = "market", advance_ms = 180000 } } })
    local st = w:wait_state(function(s)
      for _, m in pairs(s.market or {}) do
        if (m.reconnects or 0) < 1 then return false end
      end
      local now = kline_stats(s)
      for sym, k in pairs(now) do
        if not (k.last_open and before[sym] and k.last_open >= before[sym].last_open + 180000) then return false end
      end
      return true
    end, "the market stream to reconnect and catch up", 30000)
    for sym, k in pairs(kline_stats(st)) do
      assert.equal(0, k.missing, sym .. ": candles missing after the reconnect")
      assert.equal(0, k.gaps, sym .. ": a gap in the buffer")
    end
    local k1 = w:kline_calls()
    assert.is_true(k1 > k0, "the missed candles were not fetched")
    assert.is_true(k1 - k0 <= 12, ("%d REST kline calls for one reconnect"):format(k1 - k0))
    w:wait_decisions(14)
    assert.equal(k1, w:kline_calls(), "a decision cycle called REST klines after the reconnect")

    -- the listen key expires: the user stream comes back on a new one
    w.fake.ctl("ws", { faults = { { kind = "expire_key", account = "v1" } } })
    assert.is_true(h.wait_until(function()
      return w.fake.ctl("ws", {}).open.user == 2 and w:log_text("trading"):find("listen key expired", 1, true) ~= nil
    end, 20000, 50))

    -- a fill while the user stream is away: hold prices, find a resting stop, drop the stream, trigger the stop
    w:freeze(true)
    local stop
    assert.is_true(h.wait_until(function()
      for _, o in ipairs(w:venue(true).accounts.v1.open_orders) do
        if o.type == "STOP_MARKET" then stop = o return true end
      end
    end, 30000, 100), "no resting stop to trigger")
    w:faults { { method = "POST", path = "/fapi/v1/listenKey", kind = "status", status = 503, count = 4 } }
    w.fake.ctl("ws", { faults = { { kind = "drop", target = "user" } } })
    assert.is_true(h.wait_until(function() return w.fake.ctl("ws", {}).open.user < 2 end, 5000, 5))
    local px = tonumber(stop.stopPrice)
    w.fake.ctl("price", { symbol = stop.symbol, price = stop.side == "SELL" and px * 0.99 or px * 1.01 })
    local filled
    for _, o in ipairs(w:venue(true).accounts.v1.all_orders) do
      if o.clientOrderId == stop.clientOrderId then filled = o end
    end
    assert.equal("FILLED", filled.status)
    assert.is_true(w.fake.ctl("ws", {}).open.user < 2, "the fill happened while the stream was connected")
    local function fills()
      return tonumber(w:query("SELECT count(*) AS n FROM fills WHERE client_order_id = $1", stop.clientOrderId)[1].n)
    end
    assert.is_true(h.wait_until(function() return fills() >= 1 end, 30000, 100), "the fill made while away was not recorded")
    task.sleep(2000)
    assert.equal(1, fills())
    assert.equal("filled", w:query("SELECT status FROM orders WHERE client_order_id = $1", stop.clientOrderId)[1].status)
    w:wait_idle()
    assert.equal(0, w:stop())
    w:wait_consistent(10000, false, "after the stream faults and a clean stop")
  end)
end)

describe("vibex run with an account that cannot start", function()
  local w
  setup(function()
    w = live.world { accounts = {
      { name = "badkeys", keys = "bad", symbols = { "BTCUSDT" } },
      { name = "down", keys = "v1", symbols = { "BTCUSDT" }, base_url = "http://127.0.0.1:9", ws_url = "ws://127.0.0.1:9" },
    } }
  end)
  teardown(function() if w then w:close() end end)

  it("shows it failed with the reason and the fix, retries where the cause can pass, and counts no cycle", function()
    w:start()
    local st = w:wait_state(function(s)
      local b, d = s.accounts and s.accounts.badkeys, s.accounts and s.accounts.down
      return b and b.status == "failed" and d and d.status == "failed" and (d.attempts or 0) >= 2
    end, "both accounts to fail, the unreachable one twice", 30000)
    local b, d = st.accounts.badkeys, st.accounts.down
    assert.truthy(b.reason:find("refused the account's keys", 1, true), b.reason)
    assert.truthy(b.fix:find("credentials", 1, true), b.fix)
    assert.is_nil(b.retry_at) -- keys do not fix themselves
    assert.truthy(d.reason:find("cannot be reached", 1, true), d.reason)
    assert.truthy(d.retry_at)
    assert.equal(0, b.decisions)
    assert.equal(0, d.decisions)
    local errors = w:log_text("errors")
    assert.truthy(errors:find("account badkeys cannot start", 1, true), errors)
    assert.truthy(errors:find("Fix: check accounts.badkeys.exchange.credentials", 1, true), errors)
    assert.is_nil(errors:find("not-a-key", 1, true)) -- the key itself is never logged
    -- the status command says the same, and exits 3 for a failed account
    local out, _, code = h.vibex({ "status", w.config }, { env = w.env })
    assert.equal(3, code)
    assert.truthy(out:find("badkeys failed: ", 1, true), out)
    assert.truthy(out:find("fix: check accounts.badkeys.exchange.credentials", 1, true), out)
    assert.equal(0, w:stop())
    assert.equal(0, w:decisions("badkeys") + w:decisions("down"))
  end)

  it("is refused by vibex check when a strategy names a script that does not exist", function()
    local cfg = w.dir .. "/missing.lua"
    h.write(cfg, [[return { strategies = { s = { rules = "no_such_rules" } },
      accounts = { { name = "p", exchange = { venue = "sim" }, symbols = { "BTCUSDT" }, strategy = "s" } } }]])
    local _, err, code = h.vibex({ "check", cfg }, { env = w.env })
    assert.equal(2, code)
    assert.truthy(err:find('strategies.s.rules: no script "no_such_rules"', 1, true), err)
  end)
end)
