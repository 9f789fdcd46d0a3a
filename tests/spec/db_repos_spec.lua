-- The repositories on a real PostgreSQL: exact round trips, idempotence,
-- soft deletes, history, and a million candles in and in again.
local h = require "helpers"
local db = require "vibex.db"
local migrate = require "vibex.db.migrate"
local task = require "vibex.task"

describe("repositories", function()
  local cluster, pool, repo

  setup(function()
    cluster = h.postgres()
    pool = db.pool { conninfo = cluster.conninfo, size = 3 }
    assert(migrate.up(pool))
    repo = db.repos { pool = pool }
  end)
  teardown(function()
    pool:close()
    cluster:stop()
  end)

  it("keeps accounts by name and hides soft-deleted ones", function()
    local id = assert(repo.accounts:ensure { name = "alpha", venue = "aster", mode = "live" })
    assert.equal(id, assert(repo.accounts:ensure { name = "alpha", venue = "aster", mode = "live" }))
    assert.equal("live", assert(repo.accounts:get("alpha")).mode)
    assert(repo.accounts:ensure { name = "gone" })
    assert(repo.accounts:delete("gone"))
    assert.is_nil(repo.accounts:get("gone"))
    local names = {}
    for _, a in ipairs(assert(repo.accounts:list())) do names[#names + 1] = a.name end
    assert.same({ "alpha" }, names)
    assert.equal(1, #assert(pool:query("select 1 from accounts where name = 'gone'"))) -- still there underneath
  end)

  it("keeps strategies and one current assignment per account", function()
    assert(repo.accounts:ensure { name = "strat" })
    assert(repo.strategies:ensure { name = "ema-cross", scripts = { policy = "ema_cross" }, params = { fast = 12 } })
    assert(repo.strategies:ensure { name = "llm-safe", scripts = { prompt = "prompt" } })
    assert(repo.strategies:assign("strat", "ema-cross"))
    assert(repo.strategies:assign("strat", "llm-safe"))
    assert.equal("llm-safe", assert(repo.strategies:current("strat")).name)
    local hist = assert(repo.strategies:history("strat"))
    assert.equal(2, #hist)
    assert.is_number(hist[1].unassigned_at)
    assert.is_nil(hist[2].unassigned_at)
    assert.equal('{"fast": 12}', assert(pool:query("select params from strategies where name = 'ema-cross'"))[1].params)
  end)

  it("records orders, their transitions and fills exactly", function()
    assert(repo.accounts:ensure { name = "ord" })
    local o = { account = "ord", client_order_id = "vx-o-1", symbol = "BTCUSDT", side = "buy", type = "limit",
                quantity = "0.012", price = "60000.10", time_in_force = "GTC" }
    assert(repo.orders:insert(o))
    assert(repo.orders:insert(o)) -- idempotent
    assert(repo.orders:update("vx-o-1", { status = "new", venue_order_id = 991, venue_time_ms = 1795514400000 }))
    assert(repo.orders:update("vx-o-1", { status = "filled", executed_quantity = "0.012", average_price = "60000.10",
                                          venue_time_ms = 1795514400500 }))
    -- a late, older update does not move it back
    assert(repo.orders:update("vx-o-1", { status = "new", venue_time_ms = 1795514400100 }))
    -- nor does a final status ever become an open one again, whatever its time
    assert(repo.orders:update("vx-o-1", { status = "new", executed_quantity = "0", venue_time_ms = 1795514409999 }))
    local got = assert(repo.orders:get("vx-o-1"))
    assert.equal("filled", got.status)
    assert.equal("0.012", got.executed_quantity)
    assert.equal("60000.10", got.price)
    assert.equal("991", got.venue_order_id)
    local ev = assert(repo.orders:events("vx-o-1"))
    assert.same({ "pending", "new", "filled" }, { ev[1].status, ev[2].status, ev[3].status })
    assert.equal(0, #assert(repo.orders:open("ord")))
    local f = { client_order_id = "vx-o-1", trade_id = 5001, symbol = "BTCUSDT", side = "buy",
                price = "60000.10", quantity = "0.012", fee = "0.28800048", fee_asset = "USDT", time_ms = 1795514400500 }
    assert(repo.fills:record("ord", f))
    assert(repo.fills:record("ord", f)) -- the same trade from the stream and from REST
    local fills = assert(repo.fills:for_order("vx-o-1"))
    assert.equal(1, #fills)
    assert.equal("0.28800048", fills[1].fee)
    assert.equal(1795514400500, fills[1].filled_at)
  end)

  it("keeps one current position with its history, and closes it softly", function()
    assert(repo.accounts:ensure { name = "pos" })
    assert(repo.positions:upsert { account = "pos", symbol = "ETHUSDT", quantity = "1.5", entry_price = "3000.25",
                                   leverage = "5", exit_plan = '{"stop":"2900"}' })
    assert(repo.positions:upsert { account = "pos", symbol = "ETHUSDT", quantity = "2.0", entry_price = "3010.125" })
    local cur = assert(repo.positions:current("pos"))
    assert.equal(1, #cur)
    assert.equal("2.0", cur[1].quantity)
    assert.equal("5", cur[1].leverage)
    assert.equal('{"stop": "2900"}', cur[1].exit_plan)
    assert(repo.positions:close("pos", "ETHUSDT"))
    assert.equal(0, #assert(repo.positions:current("pos")))
    local hist = assert(repo.positions:history("pos", "ETHUSDT"))
    assert.same({ "1.5", "2.0", "0" }, { hist[1].quantity, hist[2].quantity, hist[3].quantity })
    assert.equal(3, #assert(pool:query("select 1 from audit_log where table_name = 'positions'")))
  end)

  it("records decisions once per cycle, diary entries, funding, snapshots and metrics", function()
    assert(repo.accounts:ensure { name = "dec" })
    local d = { account = "dec", cycle_key = "2026-11-24T10:00Z", model = "m1", provider = "fake",
                prompt = { { role = "user", content = "hi" } }, raw_answer = "{}", parsed = { action = "hold" },
                valid = true, tokens_in = 120, tokens_out = 8, latency_ms = 812.5, cost = "0.000123", variant = "A" }
    assert(repo.decisions:record(d))
    d.tokens_out = 9
    assert(repo.decisions:record(d))
    local got = assert(repo.decisions:get("dec", "2026-11-24T10:00Z"))
    assert.equal(9, got.tokens_out)
    assert.equal("0.000123", got.cost)
    assert.equal('{"action": "hold"}', got.parsed)
    assert.equal(1, #assert(repo.decisions:recent("dec")))
    assert(repo.diary:add { account = "dec", author = "agent", body = "held: no edge", tags = { "hold", "btc" } })
    assert(repo.diary:add { account = "dec", author = "user", body = "watch funding", tags = { "funding" } })
    assert.equal(1, #assert(repo.diary:list("dec", { tag = "btc" })))
    local all = assert(repo.diary:list("dec"))
    assert.equal(2, #all)
    assert(repo.diary:delete(all[1].diary_entry_id))
    assert.equal(1, #assert(repo.diary:list("dec")))
    local fp = { account = "dec", symbol = "BTCUSDT", amount = "-0.01234567", rate = "0.0001", time_ms = 1795500000000 }
    assert(repo.ledger:funding(fp))
    assert(repo.ledger:funding(fp))
    assert.equal("-0.01234567", assert(pool:query("select amount from funding_payments"))[1].amount)
    assert.equal(1, #assert(pool:query("select 1 from funding_payments")))
    assert(repo.ledger:snapshot { account = "dec", equity = "10012.345", wallet_balance = "10000" })
    assert(repo.ledger:metrics { account = "dec", window_name = "7d", sharpe = "1.25", max_drawdown = "0.031", trades = 4 })
    assert.equal("10012.345", assert(pool:query("select equity from account_snapshots"))[1].equity)
  end)

  it("saves and loads a paper account's state", function()
    assert(repo.accounts:ensure { name = "paper1" })
    assert.is_nil(repo.ledger:paper_load("paper1"))
    local paper = require("vibex.exchange").sim { balance = 5000 }
    paper:tick("ETHUSDT", 3000, 1000)
    assert(paper:place { symbol = "ETHUSDT", side = "BUY", type = "MARKET", quantity = 1, decision = "p", leg = 1 })
    paper:tick("ETHUSDT", 3001, 2000)
    assert(repo.ledger:paper_save("paper1", paper:snapshot()))
    assert(repo.ledger:paper_save("paper1", paper:snapshot())) -- one row per account
    local back = require("vibex.exchange").sim { balance = 1 }
    assert(back:restore(assert(repo.ledger:paper_load("paper1"))))
    assert.equal(paper:balances()[1].balance, back:balances()[1].balance)
    assert.equal("1", back:positions("ETHUSDT")[1].positionAmt)
  end)

  it("ingests a million candles with COPY, and the same range again without duplicates", function()
    local n, t0, step = 1000000, 1500000000000, 60000
    local rows = {}
    for i = 1, n do
      local p = 100 + (i % 1000) * 0.01
      rows[i] = { open_time = t0 + (i - 1) * step, open = p, high = p + 0.5, low = p - 0.5, close = p + 0.25,
                  volume = i % 97 + 0.1, quote_volume = "1234.5678", trades = i % 50, close_time = t0 + i * step - 1 }
      if i % 100000 == 0 then task.yield() end -- building the input is the test's work, not the loop's
    end
    assert.equal(n, assert(repo.candles:copy("XRPUSDT", "1m", rows)))
    -- the same range plus ten new candles: only the new ones go in
    for i = n + 1, n + 10 do
      rows[i] = { open_time = t0 + (i - 1) * step, open = 1, high = 1, low = 1, close = 1, volume = 1, close_time = t0 + i * step - 1 }
    end
    assert.equal(10, assert(repo.candles:copy("XRPUSDT", "1m", rows)))
    assert.equal(n + 10, assert(pool:query("select count(*)::int as n from candles where symbol = 'XRPUSDT'"))[1].n)
    local r = assert(repo.candles:range("XRPUSDT", "1m", t0, t0 + 2 * step))
    assert.equal(3, #r)
    assert.equal(t0, r[1].open_time)
    assert.equal(100.01, r[1].open)
    local exact = assert(repo.candles:range("XRPUSDT", "1m", t0, t0, { exact = true }))
    assert.equal("100.01", exact[1].open)
    assert.equal("1234.5678", exact[1].quote_volume)
    local gaps = assert(repo.candles:gaps("XRPUSDT", "1m", t0 - 2 * step, t0 + step, step))
    assert.equal(2, #gaps)
    assert.equal(t0 - 2 * step, gaps[1].open_time)
  end)
end)
