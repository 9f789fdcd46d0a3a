--- What vibex processes keep, measured from outside (/proc/PID/status), for
--- `make bench`:
---   * a backtest of 100,000 decision cycles (examples/backtest.lua's EMA-cross
---     account: 3 symbols, 5m and 1h, trading all along): its RSS after the
---     10,000th cycle and at the end (target: < 5 MB of growth);
---   * `vibex run` with one live account on 3 symbols and 2 intervals against
---     the fake Aster venue, deciding 5 times a second: peak RSS (target <= 30 MB);
---   * `make run` (examples/paper.lua): peak RSS (target <= 50 MB);
---   * baseline: an idle vibex process (the runtime and its libraries).
package.path = "tests/support/?.lua;" .. package.path
local h = require "helpers"
local json = require "vibex.json"
local process = require "vibex.process"
local runtime = require "vibex.runtime"
local task = require "vibex.task"

local M = {}
local MB = 1048576

local function status(pid)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  local rss, hwm = s:match("VmRSS:%s*(%d+)"), s:match("VmHWM:%s*(%d+)")
  return rss and tonumber(rss) * 1024, hwm and tonumber(hwm) * 1024
end

-- Run a vibex command to its end, polling its peak RSS (VmHWM only grows:
-- the last reading before the exit is the peak within a poll interval).
local BIN = require("vibex.core.runtime").realpath(h.bin) or h.bin   -- commands below run in other directories

local function peak_of(args, opts)
  local p = assert(process.spawn { file = BIN, args = args, env = opts.env, cwd = opts.cwd, stdout = "pipe",
                                   stderr = "ignore" })
  local peak, done = 0, false
  local poller = task.spawn(function()
    while not done do
      local _, hwm = status(p:pid())
      if hwm and hwm > peak then peak = hwm end
      task.sleep(20)
    end
  end)
  local out = p:read_all()
  local code = p:wait()
  done = true
  poller:join()
  return peak, code, out
end

function M.run(row, _, _, quick)
  local dir = h.tmpdir()
  -- baseline: an idle process
  local idle = assert(process.spawn { file = h.bin, args = { "-e", "require('vibex.task').sleep(1500)" },
                                      stdout = "ignore", stderr = "ignore" })
  task.sleep(1000)
  local idle_rss = status(idle:pid()) or 0
  idle:wait()
  row("idle vibex process (baseline)", ("%.1f"):format(idle_rss / MB), "MB RSS", "the runtime and its libraries")

  -- 1. a long backtest
  local cycles = quick and 20000 or 100000
  local peak, code, out = peak_of({ "backtest", runtime.home() .. "/examples/backtest.lua", "--accounts", "ema", "--no-db",
    "--json", "--out", dir .. "/out", "--set", "replay.candles=" .. (cycles + 150) }, { cwd = dir })
  local rep = code == 0 and json.decode(out) or nil
  if rep and rep.memory and rep.memory.growth_mb then
    local m = rep.memory
    local ok = m.growth_mb < 5 * (rep.cycles - m.growth_from_cycles) / 90000
    row(("backtest, %d cycles: RSS growth after cycle %d"):format(rep.cycles, m.growth_from_cycles),
      ("%+.2f"):format(m.growth_mb), "MB",
      ("%.1f MB at cycle %d -> %.1f MB at the end; peak %.1f MB; target < 5 MB per 90k cycles: %s")
        :format(m.samples[2].rss / MB, m.growth_from_cycles, m.rss_mb, peak / MB, ok and "ok" or "MISSED"))
  else
    row("backtest memory", "failed", "", ("exit %s"):format(tostring(code)))
  end

  -- 2. vibex run, one live account, 3 symbols x 2 intervals, against the fake venue
  local live = require "live"
  local w = live.world { accounts = { { name = "solo", keys = "v1", symbols = { "BTCUSDT", "ETHUSDT", "XRPUSDT" } } },
                         interval = 0.2 }
  local p = w:start()
  w:wait_running(60000)
  local seconds = quick and 20 or 60
  local lpeak, t_end = 0, task.now() + seconds * 1000
  while task.now() < t_end do
    local _, hwm = status(p:pid())
    if hwm and hwm > lpeak then lpeak = hwm end
    task.sleep(200)
  end
  local decisions = w:query("SELECT count(*) AS n FROM decisions")[1].n
  local lcode = w:stop()
  w:close()
  row("vibex run, 1 live account, 3 symbols x 2 intervals: peak", ("%.1f"):format(lpeak / MB), "MB RSS",
    ("%s decisions in %d s against the fake Aster venue, exit %s; target <= 30 MB: %s")
      :format(tostring(decisions), seconds, tostring(lcode), lpeak <= 30 * MB and "ok" or "MISSED"))

  -- 3. make run: the paper demo
  local pdir = dir .. "/paper"
  assert(runtime.mkdir_p(pdir))
  local text = assert(runtime.read_file(runtime.home() .. "/examples/paper.lua"))
  h.write(pdir .. "/paper.lua", text)
  local _, mcode = peak_of({ "migrate", "up", "paper.lua" }, { cwd = pdir })
  local ppeak, pcode = peak_of({ "run", "paper.lua" }, { cwd = pdir })
  row("make run (examples/paper.lua): peak", ("%.1f"):format(ppeak / MB), "MB RSS",
    ("exit %s (migrate %s); target <= 50 MB: %s"):format(tostring(pcode), tostring(mcode),
      ppeak <= 50 * MB and "ok" or "MISSED"))
end

return M
