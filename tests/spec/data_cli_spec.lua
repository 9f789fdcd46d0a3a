-- vibex data import / list, through the binary: candle files into the
-- database (freqtrade's JSON layout, CSV), what is stored, and its holes.
local h = require "helpers"
local json = require "vibex.json"
local datasets = require "vibex.data"
local paper = require "vibex.exchange.paper"
local vtime = require "vibex.time"

describe("vibex data", function()
  it("imports freqtrade JSON and CSV files, says what is stored and where the holes are", function()
    local dir = h.tmpdir()
    local cfg = dir .. "/vibex.lua"
    h.write(cfg, ("return { runtime = { log_dir = %q, data_dir = %q } }"):format(dir .. "/logs", dir .. "/data"))
    -- before the migrations: a clear refusal naming the fix
    local _, err, code = h.vibex { "data", "list", cfg }
    assert.equal(2, code)
    assert.matches("run `vibex migrate up " .. cfg .. "` first", err, 1, true)
    h.migrate(cfg)

    -- 300 five-minute candles with candles 101..110 missing
    local rows = datasets.generate("BTCUSDT", paper.spec("BTCUSDT"), 300, 300000, vtime.date_ms("2026-02-01"), 3)
    local list = {}
    for i, r in ipairs(rows) do
      if i <= 100 or i > 110 then
        list[#list + 1] = { r.open_time, tonumber(r.open), tonumber(r.high), tonumber(r.low), tonumber(r.close), tonumber(r.volume) }
      end
    end
    local file = dir .. "/BTC_USDT_USDT-5m-futures.json"
    h.write(file, json.encode(list))
    local out
    out, err, code = h.vibex { "data", "import", file, "--config", cfg }
    assert.equal(0, code, err)
    assert.equal(file .. ": 290 candles of BTCUSDT 5m, 290 new\n", out)
    out = h.vibex { "data", "import", file, "--config", cfg }
    assert.equal(file .. ": 290 candles of BTCUSDT 5m, 0 new\n", out) -- importing again adds nothing

    h.write(dir .. "/eth.csv", "date,open,high,low,close,volume\n2026-02-01 00:00,3000,3010,2990,3005,12\n" ..
                               "2026-02-01 01:00,3005,3020,3000,3015,9\n2026-02-01 02:00,3015,3016,2980,2990,14\n")
    out, err, code = h.vibex { "data", "import", dir .. "/eth.csv", "--symbol", "ethusdt", "--interval", "1h", "--config", cfg }
    assert.equal(0, code, err)
    assert.equal(dir .. "/eth.csv: 3 candles of ETHUSDT 1h, 3 new\n", out)

    out, err, code = h.vibex { "data", "list", cfg }
    assert.equal(0, code, err)
    assert.matches("BTCUSDT +5m +290 +2026%-02%-01 00:00 +2026%-02%-02 00:55 +10\n", out)
    assert.matches("hole: 10 candles missing after " .. os.date("!%Y-%m-%d %H:%M", (rows[100].open_time) / 1000) ..
                   ", before " .. os.date("!%Y-%m-%d %H:%M", (rows[111].open_time) / 1000), out, 1, true)
    assert.matches("ETHUSDT +1h +3 ", out)
    local stored = json.decode((h.vibex { "data", "list", cfg, "--json" }))
    assert.equal(2, #stored)
    assert.same({ symbol = "BTCUSDT", interval = "5m", count = 290, first_ms = rows[1].open_time,
                  last_ms = rows[300].open_time, missing = 10,
                  holes = { { after_ms = rows[100].open_time, before_ms = rows[111].open_time, missing = 10 } } }, stored[1])
    assert.same({}, stored[2].holes)

    -- bad input: the file and line, or the option, and exit 2; nothing stored from it
    h.write(dir .. "/bad.csv", "date,open,high,low,close\n2026-02-01 00:00,1,2,x,1.5\n")
    _, err, code = h.vibex { "data", "import", dir .. "/bad.csv", "--symbol", "S", "--interval", "5m", "--config", cfg }
    assert.equal(2, code)
    assert.matches("bad.csv:2: low \"x\" is not a number", err, 1, true)
    _, err, code = h.vibex { "data", "import", dir .. "/eth.csv", "--config", cfg }
    assert.equal(2, code)
    assert.matches("its name carries no symbol; give --symbol", err, 1, true)
    _, err, code = h.vibex { "data", "import", file, "--interval", "7x", "--config", cfg }
    assert.equal(2, code)
    assert.matches("--interval 7x is not an interval", err, 1, true)
    assert.equal(2, #json.decode((h.vibex { "data", "list", cfg, "--json" })))
  end)
end)
