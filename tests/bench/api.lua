--- The control plane under load, as a user runs it: `vibex run` on a paper
-- replay (one account, 3 symbols x 2 intervals, a decision every second)
-- with api.enabled, a private PostgreSQL, and wrk (64 connections, 2
-- threads) from a second process. Figures: requests/s of a typical read
-- route (GET /api/v1/accounts, authenticated) beside a static file from the
-- same server (/app.css, no Lua); and the decision cycle's own time
-- (vibex's "decision cycle" log lines, model excluded) with no load and
-- while wrk runs: the API must not slow trading measurably.
local json = require "vibex.json"
local process = require "vibex.process"
local runtime = require "vibex.runtime"
local task = require "vibex.task"
local http = require "vibex.http"

local M = {}
local TOKEN = "bench-token-5d1c0e"

local function config(dir)
  return ([[return {
  runtime = { log_dir = %q, data_dir = %q, log_level = "info" },
  database = { url = env "DATABASE_URL" },
  replay = { interval = "5m", candles = 8000, seed = 5, speed = 300, warmup = 150 },
  strategies = { ["ema-cross"] = { rules = "ema_cross", intervals = { "5m", "1h" },
                                   params = { fast = 12, slow = 26, size_usd = 400, leverage = 2 } } },
  accounts = { { name = "bench", exchange = { venue = "sim" }, symbols = { "BTCUSDT", "ETHUSDT", "XRPUSDT" },
                 decision_interval_s = 300, strategy = "ema-cross", fallback = { policy = "rules" },
                 risk = { max_leverage = 3, max_position_notional = 2000, max_total_notional = 5000, max_orders_per_minute = 100 } } },
  api = { enabled = true, port = 0, token = env "VIBEX_API_TOKEN", max_connections = 4096 },
}]]):format(dir .. "/logs", dir .. "/data")
end

local function wrk(url, seconds)
  local p = process.spawn { file = "wrk", args = { "-t2", "-c64", "-d" .. seconds .. "s", "--latency", "-H", "Authorization: Bearer " .. TOKEN, url },
                            stderr = "pipe" }
  if not p then return nil end
  local out = p:read_all() or ""
  p:wait()
  local rps = tonumber(out:match("Requests/sec:%s+([%d%.]+)"))
  local p99 = out:match("99%%%s+([%d%.]+%a+)")
  local non2xx = tonumber(out:match("Non%-2xx or 3xx responses: (%d+)")) or 0
  return rps, p99, non2xx
end

-- overhead_ms of the decision cycles logged between t0 and t1 (wall ms),
-- and the same without the record step (the database write at the end,
-- after the orders are on the wire)
local function cycles(dir, t0, t1)
  local out, decide = {}, {}
  for line in io.lines(dir .. "/logs/trading.log") do
    if line:find('"decision cycle"', 1, true) then
      local e = json.decode(line)
      local y, mo, d, h, mi, s, ms = e.ts:match("(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.(%d+)Z")
      local t = os.time { year = tonumber(y), month = tonumber(mo), day = tonumber(d), hour = tonumber(h), min = tonumber(mi), sec = tonumber(s) }
      -- os.time reads local time; the process runs in UTC here (TZ unset) or the offset cancels between t0 and t1
      local wall = (t + (os.time() - os.time(os.date("!*t")))) * 1000 + tonumber(ms)
      if wall >= t0 and wall < t1 then
        out[#out + 1] = tonumber(e.overhead_ms)
        decide[#decide + 1] = tonumber(e.overhead_ms) - (tonumber(e.steps_ms:match("record=([%d%.]+)")) or 0)
      end
    end
  end
  table.sort(out)
  table.sort(decide)
  return out, decide
end

local function pct(list, p)
  if #list == 0 then return 0 end
  return list[math.max(1, math.ceil(#list * p))]
end

function M.run(row, fmt, _, quick)
  if not process.run("sh", { "-c", "command -v wrk >/dev/null" }) then
    row("api under load", "-", "", "wrk is not installed: run `make deps`")
    return
  end
  local dir = ("/tmp/vibex-bench-api-%d"):format(runtime.pid())
  process.run("rm", { "-rf", dir })
  assert(runtime.mkdir_p(dir))
  local cluster = require "vibex.db.cluster"
  local pg = assert(cluster.start { dir = dir .. "/pg", fast = true })
  local url = ("postgresql:///vibex?host=%s&user=vibex"):format(pg.conninfo:match("host=(%S+)"))
  local f = assert(io.open(dir .. "/cfg.lua", "w"))
  f:write(config(dir))
  f:close()
  f = assert(io.open(dir .. "/.env", "w"))
  f:write("VIBEX_API_TOKEN=" .. TOKEN .. "\n")
  f:close()
  process.run("chmod", { "600", dir .. "/.env" })
  local bin = os.getenv("VIBEX_BIN") or "./vibex"
  local env = { DATABASE_URL = url, VIBEX_ENV = "testing" }
  local p = process.spawn { file = bin, args = { "migrate", "up", dir .. "/cfg.lua" }, env = env, stdout = "ignore", stderr = "ignore" }
  p:wait()
  local run = assert(process.spawn { file = bin, args = { "run", dir .. "/cfg.lua" }, env = env, stdout = "ignore", stderr = "ignore" })
  local base
  for _ = 1, 600 do
    local text = runtime.read_file(dir .. "/data/state.json")
    local st = text and json.decode(text)
    if st and st.api and st.api.url and st.accounts and st.accounts.bench and (st.accounts.bench.decisions or 0) > 0 then base = st.api.url break end
    task.sleep(100)
  end
  if not base then
    row("api under load", "-", "", "vibex run did not start (see " .. dir .. "/logs)")
  else
    local secs = quick and 4 or 10
    task.sleep(2000) -- past the first cycles
    local q0 = runtime.wall_ms()
    task.sleep(secs * 1000)
    local q1 = runtime.wall_ms()
    local api_rps, api_p99, api_bad = wrk(base .. "/api/v1/accounts", secs)
    local l1 = runtime.wall_ms()
    local static_rps, static_p99 = wrk(base .. "/app.css", secs)
    task.sleep(1500) -- the log lines reach the file
    local quiet, quiet_d = cycles(dir, q0, q1)
    local loaded, loaded_d = cycles(dir, q1, l1)
    row("API: GET /api/v1/accounts, 64 connections", fmt(api_rps or 0), "req/s",
        ("p99 %s, %d non-2xx; wrk -t2 -c64 on the same 2-core machine"):format(tostring(api_p99), api_bad or -1))
    row("  baseline: a static file from the same server", fmt(static_rps or 0), "req/s",
        ("p99 %s; ratio %.2fx of static"):format(tostring(static_p99), (api_rps or 0) / math.max(1, static_rps or 1)))
    local d0, d1 = pct(quiet_d, 0.5), pct(loaded_d, 0.5)
    row("decision to orders sent, no API load (median)", ("%.2f"):format(d0), "ms",
        ("p95 %.2f ms over %d cycles (3 symbols x 2 intervals, model and record excluded)"):format(pct(quiet_d, 0.95), #quiet_d))
    row("decision to orders sent, during the API load", ("%.2f"):format(d1), "ms",
        ("p95 %.2f ms; median ratio %.2fx of no load"):format(pct(loaded_d, 0.95), d0 > 0 and d1 / d0 or 0))
    local m0, m1 = pct(quiet, 0.5), pct(loaded, 0.5)
    row("whole cycle, no load (median)", ("%.2f"):format(m0), "ms",
        ("p95 %.2f ms; its record built in the cycle, committed behind it; target < 1 ms: %s")
          :format(pct(quiet, 0.95), m0 < 1 and "ok" or "MISSED"))
    row("whole cycle, loaded (median)", ("%.2f"):format(m1), "ms",
        ("p95 %.2f ms; median ratio %.2fx of no load"):format(pct(loaded, 0.95), m0 > 0 and m1 / m0 or 0))
    local res = http.request { method = "GET", url = base .. "/metrics", headers = { Authorization = "Bearer " .. TOKEN } }
    row("  /metrics still answers after the load", res and tostring(res.status) or "no", "", "")
    local body = res and res.body or ""
    local sum = tonumber(body:match('vibex_agent_record_seconds_sum{account="bench"} ([%d%.e%-+]+)'))
    local count = tonumber(body:match('vibex_agent_record_seconds_count{account="bench"} ([%d%.e%-+]+)'))
    if sum and count and count > 0 then
      row("  the record's commit behind the cycle (mean)", ("%.2f"):format(sum / count * 1000), "ms",
          ("%d commits (vibex_agent_record_seconds), off the cycle's path"):format(count))
    end
  end
  run:kill("TERM")
  task.timeout(30000, function() return run:wait() end)
  pg:stop()
  if not os.getenv("VIBEX_BENCH_KEEP") then process.run("rm", { "-rf", dir }) end
end

return M
