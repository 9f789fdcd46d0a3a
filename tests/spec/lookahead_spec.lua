-- No look-ahead in a replay: changing every candle from time T on changes
-- no decision made up to T. Two `vibex run`s of one config, each on its own
-- candle file (the same up to T, different after), as separate processes;
-- their decision rows are compared in their databases.
local h = require "helpers"
local json = require "vibex.json"
local runtime = require "vibex.runtime"
local datasets = require "vibex.data"
local paper = require "vibex.exchange.paper"
local vtime = require "vibex.time"

local N, CUT = 900, 600 -- candles in the file; the first one that changes

local function write_candles(path, rows)
  local out = {}
  for i, r in ipairs(rows) do
    out[i] = { r.open_time, tonumber(r.open), tonumber(r.high), tonumber(r.low), tonumber(r.close), tonumber(r.volume) }
  end
  h.write(path, json.encode(out))
end

local function config(dir, file)
  return ([[return {
  runtime = { log_dir = %q, data_dir = %q },
  replay = { interval = "5m", warmup = 100, files = { BTCUSDT = %q } },
  strategies = { ema = { rules = "peek", dir = %q } },
  accounts = { { name = "la", mode = "paper", exchange = { venue = "sim" }, symbols = { "BTCUSDT" },
                 decision_interval_s = 900, strategy = "ema", fallback = { policy = "rules" },
                 risk = { max_leverage = 3, max_position_notional = 1000, max_total_notional = 1000 },
                 paper = { starting_balance = 10000, fee_rate = 0.0004 } } },
}]]):format(dir .. "/logs", dir .. "/data", file, dir .. "/strategies")
end

-- A rule that says what it saw: the price and indicators at each decision,
-- so any candle it should not have seen shows in its rationale.
local PEEK = [[
local M = {}
function M.decide(ctx)
  local out = {}
  for _, s in ipairs(ctx.symbols) do
    local now = s.short and s.short.now or {}
    out[#out + 1] = { symbol = s.symbol, action = "hold", confidence = 0.5,
                      rationale = ("price %s ema20 %s rsi14 %s"):format(tostring(s.price), tostring(now.ema20), tostring(now.rsi14)) }
  end
  return { decisions = out }
end
return M
]]

-- decisions of the run in dir: cycle_key -> "parsed|valid"
local function decisions(dir)
  local out, err, code = h.vibex({ "-e", [[
    local h = assert(db.open{data_dir = ...})
    local rows = assert(h.pool:query("SELECT cycle_key, parsed::text AS p, valid FROM decisions ORDER BY cycle_key"))
    for _, r in ipairs(rows) do print(r.cycle_key .. "\t" .. tostring(r.valid) .. "\t" .. r.p) end
    h.close()]], dir .. "/data" })
  assert(code == 0, err)
  local by = {}
  for key, rest in out:gmatch("([^\t\n]+)\t([^\n]*)") do by[key] = rest end
  return by
end

-- The candles of both worlds: the same up to T, mirrored after it.
local function worlds()
  local rows = datasets.generate("BTCUSDT", paper.spec("BTCUSDT"), N, 300000, vtime.date_ms("2026-03-01"), 5)
  local changed = {}
  for i, r in ipairs(rows) do
    if i < CUT then
      changed[i] = r
    else -- a different future: every price after T moved, the trend reversed
      local k = {}
      for f, v in pairs(r) do k[f] = v end
      local p0 = tonumber(rows[CUT - 1].close)
      for _, f in ipairs { "open", "high", "low", "close" } do
        k[f] = ("%.1f"):format(2 * p0 - tonumber(r[f]))
      end
      k.high, k.low = k.low, k.high -- mirrored: the high is now the low
      changed[i] = k
    end
  end
  return rows, changed, rows[CUT].open_time
end

local function compare(runs, T)
  local upto = vtime.iso(T)
  local before, after_differ = 0, 0
  for key, a in pairs(runs.a) do
    local b = runs.b[key]
    if key <= upto then
      before = before + 1
      assert.equal(a, b, "the decision of cycle " .. key .. " (before T = " .. upto .. ") changed with the future")
    elseif a ~= b then
      after_differ = after_differ + 1
    end
  end
  assert.is_true(before > 100, "decisions before T: " .. before)
  -- the future did change: decisions after T are not all the same
  assert.is_true(after_differ > 0, "no decision after T differs: the changed candles were not used")
end

local function prepare(base, name, data)
  local dir = base .. "/" .. name
  assert(runtime.mkdir_p(dir))
  write_candles(dir .. "/btc.json", data)
  assert(runtime.mkdir_p(dir .. "/strategies"))
  h.write(dir .. "/strategies/peek.lua", PEEK)
  h.write(dir .. "/cfg.lua", config(dir, dir .. "/btc.json"))
  return dir
end

describe("a replay", function()
  it("decides nothing up to T from candles after T", function()
    local base = h.tmpdir()
    local rows, changed, T = worlds()
    local runs = {}
    for name, data in pairs { a = rows, b = changed } do
      local dir = prepare(base, name, data)
      h.migrate(dir .. "/cfg.lua")
      local out, err, code = h.vibex({ "run", dir .. "/cfg.lua" }, { timeout_ms = 120000 })
      assert(code == 0, err .. out)
      assert.matches("Paper replay finished", out, 1, true)
      runs[name] = decisions(dir)
    end
    compare(runs, T)
  end)

  it("in vibex backtest as well (decisions read from its decisions.tsv)", function()
    local base = h.tmpdir()
    local rows, changed, T = worlds()
    local runs = {}
    for name, data in pairs { a = rows, b = changed } do
      local dir = prepare(base, name, data)
      local out, err, code = h.vibex({ "backtest", dir .. "/cfg.lua", "--no-db", "--out", dir .. "/out" }, { timeout_ms = 120000 })
      assert(code == 0, err .. out)
      local by = {}
      local f = assert(io.open(dir .. "/out/decisions.tsv"))
      f:read("*l") -- the header
      for line in f:lines() do
        local cols = {}
        for c in (line .. "\t"):gmatch("([^\t]*)\t") do cols[#cols + 1] = c end
        by[cols[2]] = cols[12] .. "\t" .. cols[11] -- valid, parsed
      end
      f:close()
      runs[name] = by
    end
    compare(runs, T)
  end)
end)
