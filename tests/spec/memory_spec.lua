-- What a long run keeps: `vibex backtest` of examples/backtest.lua through
-- the binary, its paper account on the simulated venue deciding every 5
-- minutes for ~22,000 cycles (3 symbols, 5m and 1h candles, the EMA-cross
-- rules, orders, fills, stops and targets all along), as its own process. The backtest
-- samples its own resident memory at 10,000 cycles and at the end; after
-- that warm-up the process must not grow with the cycles it runs. `make
-- bench` runs the same for 100,000 cycles and holds it to < 5 MB.
local h = require "helpers"
local json = require "vibex.json"
local runtime = require "vibex.runtime"

local HOME = runtime.home()
-- Under `make asan` the sanitizer keeps freed memory in a quarantine (to
-- catch a use after free), which is RSS that grows with the run's malloc
-- traffic whatever the process keeps; this one process runs without it,
-- so that what is measured is what vibex keeps (no effect on other builds).
local NO_QUARANTINE = "quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
local ASAN_OPTIONS = os.getenv("ASAN_OPTIONS") and (os.getenv("ASAN_OPTIONS") .. ":" .. NO_QUARANTINE) or NO_QUARANTINE

describe("memory over a long run", function()
  it("stays flat after the warm-up: a backtest of 22,000 cycles grows < 2 MB after its 10,000th", function()
    local dir = h.tmpdir()
    -- the shipped example, its EMA-cross account, with 77 days of generated 5m candles
    local out, err, code = h.vibex({ "backtest", HOME .. "/examples/backtest.lua", "--accounts", "ema", "--no-db", "--json",
                                     "--out", dir .. "/out", "--set", "replay.candles=22200" },
                                   { timeout_ms = 600000, cwd = dir, env = { ASAN_OPTIONS = ASAN_OPTIONS },
                                     file = require("vibex.core.runtime").realpath(h.bin) })
    assert.equal(0, code, tostring(err) .. tostring(out))
    local rep = json.decode(out)
    assert.is_true(rep.cycles >= 21000, "cycles: " .. tostring(rep.cycles))
    local m = rep.memory
    assert.is_table(m, "the report has the process's memory")
    assert.equal(10000, m.growth_from_cycles)
    assert.equal(3, #m.samples)   -- at 1,000 and 10,000 cycles and at the end
    -- trades happened all along: the windows that hold recent orders filled and turned over
    assert.is_true(rep.accounts[1].trades > 500, "trades: " .. tostring(rep.accounts[1].trades))
    print(("\n    memory: RSS %.1f MB at cycle 10000, %.1f MB at cycle %d (%+.2f MB), peak %.1f MB")
      :format(m.samples[2].rss / 1048576, m.rss_mb, rep.cycles, m.growth_mb, m.peak_mb))
    assert.is_true(m.growth_mb < 2, ("grew %.2f MB from cycle 10000 to %d"):format(m.growth_mb, rep.cycles))
  end)
end)
