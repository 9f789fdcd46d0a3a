-- vibex data download against the fake venue, through the binary: paging,
-- a rate-limit answer in the middle, an interrupted download resumed.
local h = require "helpers"
local json = require "vibex.json"
local process = require "vibex.process"
local task = require "vibex.task"
local vtime = require "vibex.time"

local DAY = 86400

local function fresh_db()
  local dir = h.tmpdir()
  local cfg = dir .. "/vibex.lua"
  h.write(cfg, ("return { runtime = { log_dir = %q, data_dir = %q } }"):format(dir .. "/logs", dir .. "/data"))
  h.migrate(cfg)
  return cfg
end

local function stored(cfg)
  local out, err, code = h.vibex { "data", "list", cfg, "--json" }
  assert(code == 0, err)
  local by = {}
  for _, r in ipairs(json.decode(out)) do by[r.symbol .. " " .. r.interval] = r end
  return by
end

describe("vibex data download", function()
  local fake
  -- two whole days of 1-minute candles, ending at the last midnight but one
  local from = os.date("!%Y-%m-%d", os.time() - 3 * DAY)
  local to = os.date("!%Y-%m-%d", os.time() - DAY)
  local N = 2 * 1440

  setup(function() fake = h.fake_aster() end)
  teardown(function() fake.stop() end)

  it("pages the venue's klines into the database, waiting out a rate limit in the middle", function()
    local cfg = fresh_db()
    fake.ctl("faults", { clear = true })
    fake.ctl("faults", { faults = { { kind = "status", status = 429, retry_after = 1, skip = 1, count = 1,
                                      method = "GET", path = "/fapi/", match = "interval=1m" } } })
    local out, err, code = h.vibex({ "data", "download", "--symbols", "BTCUSDT,ethusdt", "--interval", "1m",
      "--from", from, "--to", to, "--base-url", fake.base, "--config", cfg }, { timeout_ms = 120000 })
    assert.equal(0, code, err)
    assert.equal(1, fake.state().faults_fired)
    assert.matches("BTCUSDT 1m: 1500 candles stored", out, 1, true)
    assert.matches(("BTCUSDT 1m: done, %d new candles from %sT00:00:00Z"):format(N, from), out, 1, true)
    assert.matches(("ETHUSDT 1m: done, %d new candles"):format(N), out, 1, true)
    assert.matches("no holes", out, 1, true)
    local s = stored(cfg)
    assert.equal(N, s["BTCUSDT 1m"].count)
    assert.equal(0, s["BTCUSDT 1m"].missing)
    assert.equal(N, s["ETHUSDT 1m"].count)
    -- again: nothing to fetch
    out = h.vibex { "data", "download", "--symbols", "BTCUSDT", "--interval", "1m", "--from", from, "--to", to,
                    "--base-url", fake.base, "--config", cfg }
    assert.matches("resuming after", out, 1, true)
    assert.matches("done, 0 new candles", out, 1, true)
  end)

  it("resumes an interrupted download where it stopped", function()
    local cfg = fresh_db()
    fake.ctl("faults", { clear = true })
    -- the second page hangs: the first is stored, then the process is killed
    fake.ctl("faults", { faults = { { latency_ms = 20000, skip = 1, count = 1, method = "GET", path = "/fapi/",
                                      match = "interval=1m" } } })
    local p = assert(process.spawn { file = h.bin, stderr = "pipe", args = { "data", "download", "--symbols", "BTCUSDT",
      "--interval", "1m", "--from", from, "--to", to, "--base-url", fake.base, "--config", cfg } })
    local line = task.timeout(60000, function() return p:read_line() end)
    local page_end = vtime.iso(vtime.date_ms(from) + 1499 * 60000)
    assert.equal("BTCUSDT 1m: 1500 candles stored, up to " .. page_end, line)
    p:kill("KILL")
    task.timeout(10000, function() return p:wait() end)
    assert.equal(1500, stored(cfg)["BTCUSDT 1m"].count)
    fake.ctl("faults", { clear = true })
    local out, err, code = h.vibex({ "data", "download", "--symbols", "BTCUSDT", "--interval", "1m", "--from", from,
      "--to", to, "--base-url", fake.base, "--config", cfg }, { timeout_ms = 120000 })
    assert.equal(0, code, err)
    assert.matches("BTCUSDT 1m: resuming after " .. page_end, out, 1, true)
    assert.matches(("done, %d new candles"):format(N - 1500), out, 1, true)
    assert.equal(N, stored(cfg)["BTCUSDT 1m"].count)
  end)

  it("downloads funding settlements and mark klines into the database and files; a backtest on the database uses them", function()
    local dir = h.tmpdir()
    local cfg = dir .. "/bt.lua"
    h.write(cfg, ([[return {
      runtime = { log_dir = %q, data_dir = %q },
      replay = { interval = "5m", source = "database", warmup = 60 },
      strategies = { ema = { rules = "ema_cross", params = { fast = 5, slow = 13, size_usd = 300, leverage = 2 } } },
      accounts = { { name = "db", exchange = { venue = "sim" }, symbols = { "BTCUSDT" }, decision_interval_s = 300,
                     strategy = "ema", fallback = { policy = "rules" },
                     risk = { max_leverage = 3, max_position_notional = 2000, max_total_notional = 2000 } } },
    }]]):format(dir .. "/logs", dir .. "/data"))
    h.migrate(cfg)
    fake.ctl("faults", { clear = true })
    local out, err, code = h.vibex({ "data", "download", "--symbols", "BTCUSDT", "--interval", "5m", "--from", from,
      "--to", to, "--funding", "--mark", "--out", dir .. "/files", "--base-url", fake.base, "--config", cfg },
      { timeout_ms = 120000 })
    assert.equal(0, code, err .. out)
    local candles = N / 5
    assert.matches(("BTCUSDT 5m: done, %d new candles"):format(candles), out, 1, true)
    assert.matches(("BTCUSDT 5m mark: done, %d new candles"):format(candles), out, 1, true)
    assert.matches("BTCUSDT funding: done, 6 new settlements", out, 1, true)
    local function rows(name)
      local f = assert(io.open(dir .. "/files/" .. name), name)
      local v = json.decode(f:read("*a"))
      f:close()
      return v
    end
    assert.equal(candles, #rows("BTC_USDT_USDT-5m-futures.json"))
    assert.equal(candles, #rows("BTC_USDT_USDT-5m-mark.json"))
    local fr = rows("BTC_USDT_USDT-8h-funding_rate.json")
    assert.equal(6, #fr)
    assert.equal(0, fr[1][1] % 28800000)
    -- the backtest reads all three from the database
    local bout, berr, bcode = h.vibex({ "backtest", cfg, "--json", "--out", dir .. "/bt" }, { timeout_ms = 120000 })
    assert.equal(0, bcode, berr)
    local rep = json.decode(bout)
    assert.equal("database", rep.source)
    assert.equal(6, rep.fed.funding_settlements.BTCUSDT)
    assert.equal(candles, rep.fed.mark_candles.BTCUSDT)
    assert.equal(candles - 60, rep.cycles)
    -- again: everything is there already
    out = h.vibex { "data", "download", "--symbols", "BTCUSDT", "--interval", "5m", "--from", from, "--to", to,
                    "--funding", "--mark", "--base-url", fake.base, "--config", cfg }
    assert.matches("BTCUSDT funding: done, 0 new settlements", out, 1, true)
    assert.matches("BTCUSDT 5m mark: done, 0 new candles", out, 1, true)
  end)

  it("refuses bad arguments with the option and exit 2", function()
    local _, err, code = h.vibex { "data", "download", "--symbols", "BTCUSDT", "--interval", "7x", "--from", from }
    assert.equal(2, code)
    assert.matches("--interval 7x is not a venue interval", err, 1, true)
    _, err, code = h.vibex { "data", "download", "--symbols", "BTCUSDT", "--interval", "1m", "--from", "yesterday" }
    assert.equal(2, code)
    assert.matches("--from yesterday is not a date", err, 1, true)
    _, err, code = h.vibex { "data", "download", "--interval", "1m", "--from", from }
    assert.equal(2, code)
    assert.matches("missing option '--symbols'", err, 1, true)
  end)
end)
