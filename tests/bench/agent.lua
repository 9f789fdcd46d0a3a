--- The agent's own cost: the runtime's overhead per decision cycle with
-- the model's latency taken out (3 symbols x 2 intervals, recorded in a
-- real PostgreSQL), and the cycles per second one runtime sustains across
-- 20 paper accounts on replayed data with a fast fake model (the fake LLM
-- process on 127.0.0.1). Baselines from the same run: the model round trip
-- alone, a one-row insert, and the fake model's own ceiling (bare calls
-- from 20 tasks at once).
package.path = "tests/support/?.lua;" .. package.path
local h = require "helpers"
local db = require "vibex.db"
local migrate = require "vibex.db.migrate"
local config_schema = require "vibex.config_schema"
local S = require "vibex.schema"
local scripts = require "vibex.scripts"
local agent = require "vibex.agent"
local replay = require "vibex.agent.replay"
local llm = require "vibex.llm"
local secret = require "vibex.secret"
local runtime = require "vibex.runtime"
local task = require "vibex.task"
local log = require "vibex.log"
local datasets = require "vibex.data"
local paper = require "vibex.exchange.paper"
local vtime = require "vibex.time"

local M = {}

local percentile = require("vibex.ab.report").percentile   -- nearest rank

local function make_config(base, accounts)
  local raw = { llm = { providers = { { name = "fast", kind = "openai", base_url = base .. "/v1", model = "m-bench",
                                         api_key = secret.new("B", "sk-bench"), max_retries = 0 } } },
                accounts = accounts }
  local cfg, errs = S.validate(config_schema.config, raw, { data = { environment = "testing" } })
  assert(cfg, errs and errs[1] and (errs[1].path .. ": " .. errs[1].message))
  return cfg
end

local function account(name)
  return { name = name, exchange = { venue = "sim" }, symbols = { "BTCUSDT", "ETHUSDT", "XRPUSDT" }, llm = "fast",
           decision_interval_s = 300, strategy = { intervals = { "5m", "1h" } },
           risk = { max_orders_per_minute = 100, max_position_notional = 2000, max_total_notional = 5000 } }
end

function M.run(row, fmt, _, quick)
  log.configure { level = "error", console_level = "error" }
  local cluster = h.postgres()
  local pool = db.pool { conninfo = cluster.conninfo, size = 4 }
  assert(migrate.up(pool))
  local repos = db.repos { pool = pool }
  local fake = h.fake_llm { key = "sk-bench", models = { ["m-bench"] = { mode = "good" } } }
  local reg = scripts.registry { dir = runtime.home() .. "/scripts" }
  reg:load_all()
  local ok, err = pcall(function()
    -- 1. overhead per cycle, model excluded ------------------------------------------
    local cfg = make_config(fake.base, { account("solo") })
    assert(repos.accounts:ensure { name = "solo" })
    local ag = agent.new { config = cfg, repos = repos, scripts = reg, getenv = function() end, venue = paper.venue,
                          data_dir = h.tmpdir() }
    local a = ag:add_account(cfg.accounts[1])
    local data = {}
    for _, sym in ipairs(cfg.accounts[1].symbols) do
      data[sym] = datasets.generate(sym, paper.spec(sym), 2000, 300000, vtime.date_ms("2026-01-01"), 5)
    end
    local i = 0
    local function advance()
      i = i + 1
      for sym, rows in pairs(data) do
        local k = rows[i]
        a.sim:candle(sym, k, 300000)
        a.market:push(sym, { open_time = k.open_time, open = tonumber(k.open), high = tonumber(k.high),
                             low = tonumber(k.low), close = tonumber(k.close), volume = tonumber(k.volume) })
      end
    end
    for _ = 1, 400 do advance() end
    local n = quick and 100 or 500
    local over, model, steps = {}, {}, {}
    for _ = 1, n do
      advance()
      local rec = assert(ag:cycle("solo"))
      over[#over + 1], model[#model + 1] = rec.overhead_ms, rec.model_ms
      for k, v in pairs(rec.step_ms) do if k ~= "model" then steps[k] = (steps[k] or 0) + v end end
    end
    local p50 = percentile(over, 0.5)
    row("agent cycle overhead, model excluded (p50)", ("%.2f"):format(p50), "ms",
        ("3 symbols x 2 intervals, the record committed to PostgreSQL behind the cycle; target < 1 ms: %s"):format(p50 < 1 and "ok" or "MISSED"))
    row("  p90 / p99", ("%.2f / %.2f"):format(percentile(over, 0.9), percentile(over, 0.99)), "ms")
    local parts = {}
    for _, k in ipairs { "market", "account", "context", "prompt", "validate", "policy", "risk", "execute", "record" } do
      if steps[k] then parts[#parts + 1] = ("%s %.2f"):format(k, steps[k] / n) end
    end
    row("  per step (mean ms)", "", "", table.concat(parts, ", "))
    row("  baseline: the model round trip alone (p50)", ("%.2f"):format(percentile(model, 0.5)), "ms",
        "fake LLM on 127.0.0.1")
    local ins = {}
    for k = 1, 200 do
      local t0 = task.hrtime()
      assert(repos.diary:add { account = "solo", author = "user", body = "bench " .. k })
      ins[#ins + 1] = (task.hrtime() - t0) / 1e6
    end
    row("  baseline: one-row insert (p50)", ("%.2f"):format(percentile(ins, 0.5)), "ms", "the cycle is recorded as one pipelined transaction of ~8 rows")
    ag:close()

    -- 2. cycles per second, 20 paper accounts on a replay --------------------------------
    local accs = {}
    for k = 1, 20 do
      accs[k] = account(("p%02d"):format(k))
      assert(repos.accounts:ensure { name = accs[k].name })
    end
    local cfg2 = make_config(fake.base, accs)
    local ag2 = agent.new { config = cfg2, repos = repos, scripts = reg, getenv = function() end, venue = paper.venue,
                           data_dir = h.tmpdir() }
    for _, acc in ipairs(cfg2.accounts) do ag2:add_account(acc) end
    local candles = quick and 160 or 400
    local run = assert(replay.new { agent = ag2, accounts = cfg2.accounts,
                                    config = { interval = "5m", candles = candles, seed = 9, warmup = 100, speed = "max",
                                               start = "2026-01-01", funding_rate = 0.0001 } })
    local t0 = task.hrtime()
    local summary = assert(run:run())
    local dt = (task.hrtime() - t0) / 1e9
    row("agent cycles, 20 paper accounts on a replay", fmt(summary.cycles / dt), "/s",
        ("%d cycles, %d candles, each cycle a model call and a recorded decision"):format(summary.cycles, summary.candles))
    ag2:close()
    -- the fake model's own ceiling: bare calls from 20 tasks at once
    local c = llm.client(cfg2.llm.providers[1])
    local msgs = { { role = "user", content = "### BTCUSDT\ncurrent_price = 100\nAnswer in JSON." } }
    local calls = quick and 400 or 2000
    local t1 = task.hrtime()
    local ts = {}
    for k = 1, 20 do
      ts[k] = task.spawn(function() for _ = 1, calls / 20 do assert(c:chat { messages = msgs, json = true }) end end)
    end
    task.join_all(ts)
    local rate = calls / ((task.hrtime() - t1) / 1e9)
    row("  baseline: bare model calls, 20 at once", fmt(rate), "/s",
        ("the fake model's ceiling; cycles reach %.0f%% of it"):format(100 * summary.cycles / dt / rate))
  end)
  fake.stop()
  pool:close()
  cluster:stop()
  if not ok then error(err, 0) end
end

return M
