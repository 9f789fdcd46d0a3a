-- `vibex backtest` through the binary, as separate processes: a strategy
-- whose trades are known in advance yields exactly those trades, fees and
-- PnL in every report file and in the database; two runs of one config are
-- two runs with nothing mixed; recorded model answers make a re-run the
-- same run (same digest) and a strict run with a missing answer fails
-- naming the cycle; a sweep ranks its combinations and a failing one fails
-- alone; the HTML report renders in headless Chromium.
local h = require "helpers"
local json = require "vibex.json"
local runtime = require "vibex.runtime"
local process = require "vibex.process"
local vtime = require "vibex.time"
local task = require "vibex.task"

local START = vtime.date_ms("2026-02-01")
local IV = 300000
local N, WARMUP, FEE = 140, 20, 0.0005

-- BTCUSDT candles: close_i = 50000 + 10 i (i from 1); candle 80 falls and
-- closes at 49900 (a stop at 50000 fires), then the climb goes on.
local DIP = 80
local function close_of(i) return i == DIP and 49900 or 50000 + 10 * i end
local function candles()
  local rows = { "open_time,open,high,low,close,volume" }
  for i = 1, N do
    local close, open = close_of(i), i == 1 and 49990 or close_of(i - 1)
    rows[#rows + 1] = ("%d,%.1f,%.1f,%.1f,%.1f,100"):format(START + (i - 1) * IV, open, math.max(open, close) + 5,
      math.min(open, close) - 5, close)
  end
  return table.concat(rows, "\n") .. "\n"
end

-- Trades by cycle: open long at 10, close at 20; open short at 30, close
-- at 40; open long at 50 with a stop at 50000 (hit by candle 80). Every
-- open needs a stop: the others' are far away.
local SCRIPTED = [[
local M = {}
function M.decide(ctx, params)
  local s = ctx.symbols[1]
  local d = { symbol = s.symbol, action = "hold", confidence = 0.9, rationale = "wait" }
  local c = ctx.cycle
  if c == 10 or c == 50 then
    d = { symbol = s.symbol, action = "open_long", size_usd = 1000, leverage = 1, confidence = 0.9, rationale = "scripted",
          stop_loss = c == 50 and 50000 or 45000 }
  elseif c == 30 then
    d = { symbol = s.symbol, action = "open_short", size_usd = 1000, leverage = 1, confidence = 0.9, rationale = "scripted",
          stop_loss = 55000 }
  elseif c == 20 or c == 40 then
    d = { symbol = s.symbol, action = "close", confidence = 0.9, rationale = "scripted" }
  end
  return { decisions = { d } }
end
return M
]]

local function config(dir, extra)
  return ([[return {
  runtime = { log_dir = %q, data_dir = %q },
  replay = { interval = "5m", warmup = %d, files = { BTCUSDT = %q }, funding_rate = 0 },
  strategies = { scripted = { rules = "scripted", dir = %q, intervals = { "5m", "1h" } } },
  accounts = { { name = "known", exchange = { venue = "sim" }, symbols = { "BTCUSDT" },
                 decision_interval_s = 300, strategy = "scripted", fallback = { policy = "rules" },
                 risk = { max_leverage = 3, max_position_notional = 5000, max_total_notional = 5000, min_confidence = 0.5,
                          max_orders_per_minute = 100 },
                 paper = { starting_balance = 10000, fee_rate = %s } } },
  %s
}]]):format(dir .. "/logs", dir .. "/data", WARMUP, dir .. "/btc.csv", dir .. "/strategies", tostring(FEE), extra or "")
end

local function setup(extra)
  local dir = h.tmpdir()
  h.write(dir .. "/btc.csv", candles())
  assert(runtime.mkdir_p(dir .. "/strategies"))
  h.write(dir .. "/strategies/scripted.lua", SCRIPTED)
  h.write(dir .. "/cfg.lua", config(dir, extra))
  return dir
end

local function read(path)
  local f = assert(io.open(path, "rb"), "missing " .. path)
  local s = f:read("*a")
  f:close()
  return s
end

local function csv_rows(path)
  local lines = {}
  for line in read(path):gmatch("[^\n]+") do lines[#lines + 1] = line end
  local cols, out = {}, {}
  for c in lines[1]:gmatch("[^,]+") do cols[#cols + 1] = c end
  for i = 2, #lines do
    local r, k = {}, 0
    for v in (lines[i] .. ","):gmatch("([^,]*),") do k = k + 1; r[cols[k]] = v end
    out[#out + 1] = r
  end
  return out
end

local function sql(dir, query)
  local out, err, code = h.vibex({ "-e", [[
    local h = assert(db.open{data_dir = (...)})
    local rows, list = assert(h.pool:query(select(2, ...))), {}
    for i, r in ipairs(rows) do list[i] = r end
    print(require("vibex.json").encode(list))
    h.close()]], dir .. "/data", query })
  assert(code == 0, err)
  return json.decode(out)
end

local function near(want, got, what)
  assert(math.abs(want - tonumber(got)) < 1e-6, ("%s: want %.8f, got %s"):format(what, want, tostring(got)))
end

describe("vibex backtest", function()
  it("yields exactly the trades, fees and PnL of a strategy known in advance, in every file and the database", function()
    local dir = setup()
    h.migrate(dir .. "/cfg.lua")
    local out, err, code = h.vibex({ "backtest", dir .. "/cfg.lua", "--out", dir .. "/out" }, { timeout_ms = 120000 })
    assert(code == 0, err .. out)
    assert.matches("account known", out, 1, true)
    assert.matches("run 1 recorded", out, 1, true)
    for _, f in ipairs { "report.json", "trades.csv", "fills.csv", "equity.csv", "report.html", "decisions.tsv", "diary.tsv" } do
      assert.is_truthy(runtime.exists(dir .. "/out/" .. f), f)
    end
    -- the expected trades: the context's cycle c (its count starts at 2: the
    -- cycles run before this one, plus one) decides at the close of candle WARMUP + c - 1;
    -- a market order fills there with the venue's 2 bps adverse slippage,
    -- rounded away to the tick (0.1); the stop fills at its price the same way
    local function buy(p) return math.ceil(p * 1.0002 * 10 - 1e-6) / 10 end
    local function sell(p) return math.floor(p * 0.9998 * 10 + 1e-6) / 10 end
    local function px(c) return close_of(WARMUP + c - 1) end
    local q = 0.019 -- 1000 USD at ~50 300, the venue's step 0.001, rounded down
    local want = {
      { side = "long", entry = buy(px(10)), exit = sell(px(20)), reason = "signal" },
      { side = "short", entry = sell(px(30)), exit = buy(px(40)), reason = "signal" },
      { side = "long", entry = buy(px(50)), exit = sell(close_of(DIP)), reason = "stop" },
    }
    local trades = csv_rows(dir .. "/out/trades.csv")
    assert.equal(#want, #trades, read(dir .. "/out/trades.csv"))
    local total_net, total_fees = 0, 0
    for i, w in ipairs(want) do
      local t = trades[i]
      assert.equal(w.side, t.side)
      assert.equal(w.reason, t.reason, "trade " .. i)
      near(q, t.quantity, "trade " .. i .. " quantity")
      near(w.entry, t.entry_price, "trade " .. i .. " entry")
      near(w.exit, t.exit_price, "trade " .. i .. " exit")
      local pnl = (w.side == "long" and 1 or -1) * (w.exit - w.entry) * q
      local fees = (w.entry + w.exit) * q * FEE
      near(pnl, t.pnl, "trade " .. i .. " pnl")
      near(fees, t.fees, "trade " .. i .. " fees")
      near(pnl - fees, t.net, "trade " .. i .. " net")
      total_net, total_fees = total_net + pnl - fees, total_fees + fees
    end
    local rep = json.decode(read(dir .. "/out/report.json"))
    local a = rep.accounts[1]
    assert.equal(3, a.trades)
    assert.equal(1, a.wins)
    near(total_net, a.net, "total net")
    near(total_fees, a.fees, "fees")
    near(10000 + total_net, a.final_equity, "final equity")
    assert.same({ signal = 2, stop = 1, target = 0, liquidation = 0 }, a.reasons)
    assert.equal(N - WARMUP, a.decisions.cycles)
    assert.equal(5, a.decisions.taken)
    assert.equal(6, #csv_rows(dir .. "/out/fills.csv"))
    -- the database has the same, under the run
    local db = sql(dir, [[SELECT (SELECT count(*) FROM backtest_trades WHERE run_id = 1) AS trades,
      (SELECT sum(net) FROM backtest_trades WHERE run_id = 1)::float8 AS net,
      (SELECT count(*) FROM fills WHERE run_id = 1) AS fills, (SELECT count(*) FROM decisions WHERE run_id = 1) AS decisions,
      (SELECT count(*) FROM orders WHERE run_id = 1 AND decision_id IS NOT NULL) AS orders,
      (SELECT kind || '/' || outcome FROM runs WHERE run_id = 1) AS run]])
    assert.equal("backtest/completed", db[1].run)
    assert.equal(3, tonumber(db[1].trades))
    near(total_net, db[1].net, "net in the database")
    assert.equal(6, tonumber(db[1].fills))
    assert.equal(N - WARMUP, tonumber(db[1].decisions))
    assert.is_true(tonumber(db[1].orders) >= 6)
    -- show reads it back
    local sout, serr, scode = h.vibex { "backtest", "show", "1", "--config", dir .. "/cfg.lua", "--json" }
    assert(scode == 0, serr)
    local shown = json.decode(sout)
    assert.equal(3, #shown.trades)
    assert.equal("stop", shown.trades[3].reason)
  end)

  it("keeps two runs of one config apart, compares them, and deletes one", function()
    local dir = setup()
    h.migrate(dir .. "/cfg.lua")
    local digests = {}
    for i = 1, 2 do
      local out, err, code = h.vibex({ "backtest", dir .. "/cfg.lua", "--json", "--out", dir .. "/out" .. i },
        { timeout_ms = 120000 })
      assert(code == 0, err)
      local rep = json.decode(out)
      assert.equal(i, rep.run_id)
      digests[i] = rep.digest
    end
    assert.equal(digests[1], digests[2])
    local rows = sql(dir, [[SELECT run_id, count(*) AS n FROM decisions GROUP BY run_id ORDER BY run_id]])
    assert.equal(2, #rows)
    assert.equal(tonumber(rows[1].n), tonumber(rows[2].n))
    local f = sql(dir, [[SELECT run_id, count(*) AS n FROM fills GROUP BY run_id ORDER BY run_id]])
    assert.equal(6, tonumber(f[1].n))
    assert.equal(6, tonumber(f[2].n))
    local out, err, code = h.vibex { "backtest", "compare", "1", "2", "--config", dir .. "/cfg.lua" }
    assert(code == 0, err)
    assert.matches("the same order stream", out, 1, true)
    local lout, _, lcode = h.vibex { "backtest", "list", dir .. "/cfg.lua" }
    assert.equal(0, lcode)
    assert.matches("completed", lout, 1, true)
    local _, derr, dcode = h.vibex { "backtest", "delete", "1", "--config", dir .. "/cfg.lua" }
    assert(dcode == 0, derr)
    local left = sql(dir, [[SELECT (SELECT count(*) FROM decisions WHERE run_id = 1) AS d1,
      (SELECT count(*) FROM decisions WHERE run_id = 2) AS d2, (SELECT count(*) FROM runs WHERE run_id = 1) AS r1]])
    assert.equal(0, tonumber(left[1].d1))
    assert.equal(N - WARMUP, tonumber(left[1].d2))
    assert.equal(0, tonumber(left[1].r1))
    local _, nerr, ncode = h.vibex { "backtest", "show", "1", "--config", dir .. "/cfg.lua" }
    assert.equal(1, ncode)
    assert.matches("no backtest run 1", nerr, 1, true)
  end)

  it("answers a re-run from the recorded model answers: the same digest; strict fails on a miss naming the cycle", function()
    local fake = h.fake_llm { key = "sk-bt", models = { ["m-bt"] = { mode = "good" } } }
    local ok, e = pcall(function()
      local dir = setup(([[llm = { default = "fake", providers = { { name = "fake", kind = "openai", base_url = %q,
        model = "m-bt", api_key = env "FAKE_KEY", max_retries = 0 } } },]]):format(fake.base .. "/v1"))
      h.write(dir .. "/.env", "FAKE_KEY=sk-bt\n")
      assert(runtime.chmod == nil or runtime.chmod(dir .. "/.env", 384))
      -- the model decides (the prompt script), the rules only as fallback
      local cfg = read(dir .. "/cfg.lua"):gsub('rules = "scripted",', 'rules = "scripted", prompt = "prompt",')
      h.write(dir .. "/cfg.lua", cfg)
      h.migrate(dir .. "/cfg.lua")
      local stop_at = vtime.iso(START + 60 * IV)
      local out1, err1, code1 = h.vibex({ "backtest", dir .. "/cfg.lua", "--json", "--set", "llm.replay=record", "--to", stop_at,
        "--out", dir .. "/o1" }, { timeout_ms = 120000 })
      assert(code1 == 0, err1)
      local r1 = json.decode(out1)
      assert.is_true(r1.accounts[1].model.calls > 0)
      fake.stop() -- the model is gone: only the record can answer
      local out2, err2, code2 = h.vibex({ "backtest", dir .. "/cfg.lua", "--json", "--set", "llm.replay=strict", "--to", stop_at,
        "--out", dir .. "/o2" }, { timeout_ms = 120000 })
      assert(code2 == 0, err2)
      local r2 = json.decode(out2)
      assert.equal(r1.digest, r2.digest)
      assert.equal(r1.accounts[1].final_equity, r2.accounts[1].final_equity)
      assert.equal(r1.accounts[1].decisions.by_source.model, r2.accounts[1].decisions.by_source.model)
      -- replaying run 1 by its id works the same
      local out3, err3, code3 = h.vibex({ "backtest", dir .. "/cfg.lua", "--json", "--set", "llm.replay=1", "--to", stop_at,
        "--out", dir .. "/o3" }, { timeout_ms = 120000 })
      assert(code3 == 0, err3)
      assert.equal(r1.digest, json.decode(out3).digest)
      -- past the recorded range: no answer, and the run names the cycle (keyed by its close time)
      local _, err4, code4 = h.vibex({ "backtest", dir .. "/cfg.lua", "--set", "llm.replay=strict", "--out", dir .. "/o4" },
        { timeout_ms = 120000 })
      assert.equal(1, code4)
      local last = err4:match("vibex: backtest: [^\n]*") or err4
      assert.matches("no recorded model answer for account known, cycle " .. vtime.iso(START + 61 * IV), last, 1, true)
      local failed = sql(dir, "SELECT outcome FROM runs WHERE run_id = 4")
      assert.equal("failed", failed[1].outcome)
    end)
    fake.stop()
    assert(ok, e)
  end)

  it("keeps the model answers it paid for when it is killed half way", function()
    local fake = h.fake_llm { key = "sk-bt", models = { ["m-slow"] = { mode = "slow", delay_ms = 150 } } }
    local ok, e = pcall(function()
      local dir = setup(([[llm = { default = "fake", providers = { { name = "fake", kind = "openai", base_url = %q,
        model = "m-slow", api_key = env "FAKE_KEY", max_retries = 0 } } },]]):format(fake.base .. "/v1"))
      h.write(dir .. "/.env", "FAKE_KEY=sk-bt\n")
      local cfg = read(dir .. "/cfg.lua"):gsub('rules = "scripted",', 'rules = "scripted", prompt = "prompt",')
      h.write(dir .. "/cfg.lua", cfg)
      h.migrate(dir .. "/cfg.lua")
      local p = assert(process.spawn { file = h.bin, stdout = "ignore", stderr = "ignore",
        args = { "backtest", dir .. "/cfg.lua", "--set", "llm.replay=record", "--out", dir .. "/o" } })
      local function stored() return tonumber(sql(dir, "SELECT count(*) AS n FROM llm_answers")[1].n) end
      assert.is_true(h.wait_until(function() return #fake.log() >= 5 end, 60000, 100), "the model was not asked")
      p:kill("KILL")
      task.timeout(10000, function() return p:wait() end)
      local asked = #fake.log()
      -- every answer the model gave before the kill is in the record (the last may have been in flight)
      assert.is_true(stored() >= asked - 1, ("%d answers stored, %d asked"):format(stored(), asked))
      local run = sql(dir, "SELECT outcome FROM runs WHERE kind = 'backtest'")
      assert.equal(1, #run)
      assert.is_nil(run[1].outcome) -- left running by a dead process; nothing else of it was written
      -- the list finds its process gone and says so
      local out, err, code = h.vibex { "backtest", "list", dir .. "/cfg.lua", "--json" }
      assert.equal(0, code, err)
      local listed = json.decode(out)
      assert.equal("crashed", listed[1].outcome)
      assert.matches("killed or crashed", listed[1].error, 1, true)
    end)
    fake.stop()
    assert(ok, e)
  end)

  it("sweeps every combination in worker processes, ranked; a failing combination fails alone", function()
    local dir = setup()
    local out, err, code = h.vibex({ "backtest", dir .. "/cfg.lua", "--no-db", "--json", "--jobs", "2", "--rank", "return",
      "--sweep", "params.size=1,2", "--sweep", "risk.max_leverage=2,0", "--out", dir .. "/sweep" }, { timeout_ms = 180000 })
    assert(code == 0, err .. out)
    local res = json.decode(out)
    assert.equal(4, res.combinations)
    assert.equal(2, #res.ranked)
    assert.equal(2, #res.failed)
    for _, f in ipairs(res.failed) do
      assert.equal("risk.max_leverage=0", f.parameters[2])
      assert.equal(2, f.code)
      assert.matches("max_leverage", f.error, 1, true)
    end
    assert.is_true(res.ranked[1].score >= res.ranked[2].score)
    local text, terr, tcode = h.vibex({ "backtest", dir .. "/cfg.lua", "--no-db", "--sweep", "params.size=1,2",
      "--walk-forward", "2", "--out", dir .. "/wf" }, { timeout_ms = 180000 })
    assert(tcode == 0, terr .. text)
    assert.matches("walk-forward, 2 folds", text, 1, true)
    assert.matches("mean sharpe", text, 1, true)
  end)

  it("refuses bad input with what, where and how to fix it, and exit 2", function()
    local dir = setup()
    local cases = {
      { { "backtest", dir .. "/missing.lua" }, "cannot read config" },
      { { "backtest", dir .. "/cfg.lua", "--set", "nonsense" }, "is not KEY=VALUE" },
      { { "backtest", dir .. "/cfg.lua", "--set", "risk.max_leverage=0" }, "max_leverage" },
      { { "backtest", dir .. "/cfg.lua", "--accounts", "nobody" }, "no account \"nobody\"" },
      { { "backtest", dir .. "/cfg.lua", "--set", "rules=absent" }, "strategies.scripted.rules: no script \"absent\"" },
      { { "backtest", dir .. "/cfg.lua", "--no-db", "--from", "someday" }, "--from \"someday\" is not a date" },
      { { "backtest", "show" }, "missing argument" },
    }
    for _, c in ipairs(cases) do
      local _, err, code = h.vibex(c[1])
      assert.equal(2, code, table.concat(c[1], " ") .. ": " .. err)
      assert.matches(c[2], err, 1, true)
    end
  end)

  it("writes a report.html that renders in headless Chromium with its charts and no console errors", function()
    local chromium = process.which("chromium")
    assert(chromium, "chromium is not installed (make deps installs it)")
    local dir = setup()
    local _, err, code = h.vibex({ "backtest", dir .. "/cfg.lua", "--no-db", "--out", dir .. "/out" }, { timeout_ms = 120000 })
    assert(code == 0, err)
    local url = "file://" .. dir .. "/out/report.html"
    local flags = { "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=" .. dir .. "/chrome" }
    local args = { "--enable-logging=stderr", "--v=0", "--dump-dom", url }
    for i = #flags, 1, -1 do table.insert(args, 1, flags[i]) end
    local dom, log_text, dcode = h.vibex(args, { file = chromium, timeout_ms = 90000 })
    assert.equal(0, dcode, log_text)
    assert.matches('data-rendered="yes"', dom, 1, true)
    local charts = 0
    for pts in dom:gmatch('data%-points="(%d+)"') do
      assert.is_true(tonumber(pts) > 10)
      charts = charts + 1
    end
    assert.equal(3, charts) -- equity, drawdown, BTCUSDT with its trades
    assert.matches("<circle", dom, 1, true) -- exits marked on the price chart
    assert.is_nil(log_text:match("Uncaught[^\n]*"))
    assert.is_nil(log_text:match("CONSOLE[^\n]*[Ee]rror[^\n]*"))
    -- a screenshot, kept as the test's artifact
    local shot = (os.getenv("VIBEX_ARTIFACTS") or "build/artifacts") .. "/backtest-report.png"
    assert(runtime.mkdir_p(runtime.dirname(shot)))
    local sargs = { "--hide-scrollbars", "--window-size=1200,1600", "--screenshot=" .. shot, url }
    for i = #flags, 1, -1 do table.insert(sargs, 1, flags[i]) end
    local _, serr, scode = h.vibex(sargs, { file = chromium, timeout_ms = 90000 })
    assert.equal(0, scode, serr)
    local st = runtime.stat(shot)
    assert.is_true(st and st.size > 10000, "screenshot " .. shot)
  end)
end)
