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
