--- make bench — runtime core figures, each beside a baseline measured in
--- the same run (plain Lua loop, plain coroutines, curl --parallel).
--- Usage: vibex tests/bench/run.lua [--quick] [--only=core|ta|talib|memory|exchange|db|sim|agent|sandbox|backtest|api]
local task = require "vibex.task"
local http = require "vibex.http"
local metrics = require "vibex.metrics"
local breaker = require "vibex.breaker"
local process = require "vibex.process"
local runtime = require "vibex.runtime"

local quick, only = false, nil
for _, a in ipairs(arg or {}) do
  if a == "--quick" then quick = true elseif a:match("^%-%-only=") then only = a:sub(8) end
end
local scale = quick and 0.1 or 1

local function now_s() return tonumber(task.hrtime()) / 1e9 end

local function row(name, value, unit, note)
  print(("%-44s %14s %-10s %s"):format(name, value, unit, note or ""))
end

local function fmt(n)
  if n >= 1e6 then return ("%.2fM"):format(n / 1e6) end
  if n >= 1e3 then return ("%.1fk"):format(n / 1e3) end
  return ("%.1f"):format(n)
end

--- Best of `runs` timings of fn() (seconds).
local function best(runs, fn)
  local b = math.huge
  for _ = 1, runs do
    local t0 = now_s(); fn(); local dt = now_s() - t0
    if dt < b then b = dt end
  end
  return b
end

-- 1. task spawn + resume ----------------------------------------------------
local function bench_tasks()
  local ntasks, nyield = math.floor(20000 * scale), 50
  local dt = best(3, function()
    local ts = {}
    for i = 1, ntasks do
      ts[i] = task.spawn(function() for _ = 1, nyield do task.yield() end end)
    end
    for i = 1, ntasks do ts[i]:join() end
  end)
  local resumes = ntasks * (nyield + 1)
  local rate = resumes / dt
  -- baseline: bare coroutine.resume of the same shape, no loop at all
  local bdt = best(3, function()
    local cs = {}
    for i = 1, ntasks do cs[i] = coroutine.create(function() for _ = 1, nyield do coroutine.yield() end end) end
    for _ = 0, nyield do for i = 1, ntasks do coroutine.resume(cs[i]) end end
  end)
  local brate = resumes / bdt
  row("task resumes (spawn + yield x50)", fmt(rate), "/s", ("target >= 1M/s: %s"):format(rate >= 1e6 and "ok" or "MISSED"))
  row("  baseline: bare coroutine.resume", fmt(brate), "/s", ("ratio %.2fx of bare"):format(rate / brate))
  local sdt = best(3, function()
    local ts = {}
    for i = 1, ntasks do ts[i] = task.spawn(function() end) end
    for i = 1, ntasks do ts[i]:join() end
  end)
  row("task spawn + run + join", fmt(ntasks / sdt), "/s")
end

-- 2. timers -------------------------------------------------------------------
local function bench_timers()
  local ntasks, nsleep = math.floor(10000 * scale), 20
  local dt = best(3, function()
    local ts = {}
    for i = 1, ntasks do ts[i] = task.spawn(function() for _ = 1, nsleep do task.sleep(1) end end) end
    for i = 1, ntasks do ts[i]:join() end
  end)
  -- nsleep ms is the floor that the sleeps themselves impose
  row("timer callbacks (10k tasks x sleep(1) x20)", fmt(ntasks * nsleep / dt), "/s",
      ("%.0f ms wall for a %d ms floor"):format(dt * 1000, nsleep))
end

-- 3. HTTP with 64 in flight vs curl --parallel ------------------------------
local function start_httpd()
  local build = os.getenv("BUILD") or "build/release"
  local p = assert(process.spawn { file = build .. "/tests/httpd" })
  local line = assert(p:read_line())
  return tonumber(line:match("LISTENING (%d+)")), p
end

local function bench_http()
  local port, srv = start_httpd()
  local url = ("http://127.0.0.1:%d/hello"):format(port)
  local total, inflight = math.floor(20000 * scale), 64
  local function ours()
    local next_i, errors = 0, 0
    local workers = {}
    for w = 1, inflight do
      workers[w] = task.spawn(function()
        while next_i < total do
          next_i = next_i + 1
          local res = http.request { url = url }
          if not res or res.status ~= 200 then errors = errors + 1 end
        end
      end)
    end
    for w = 1, inflight do workers[w]:join() end
    assert(errors == 0, "http bench: " .. errors .. " failed requests")
  end
  ours() -- warm up connections
  local dt = best(3, ours)
  local rate = total / dt
  local curl = process.which("curl")
  if not curl then
    row("http GET, 64 in flight", fmt(rate), "req/s", "(curl not found: no baseline)")
  else
    local glob = ("http://127.0.0.1:%d/hello?i=[1-%d]"):format(port, total)
    local cdt = best(3, function()
      local _, code = process.run(curl, { "-s", "--no-progress-meter", "-Z", "--parallel-max", tostring(inflight),
                                           "-o", "/dev/null", glob }, { stderr = "ignore" })
      assert(code == 0, "curl failed: " .. tostring(code))
    end)
    local crate = total / cdt
    row("http GET, 64 in flight", fmt(rate), "req/s", ("ratio %.2fx of curl (target >= 0.5x): %s")
        :format(rate / crate, rate / crate >= 0.5 and "ok" or "MISSED"))
    row("  baseline: curl --parallel --parallel-max 64", fmt(crate), "req/s")
  end
  srv:kill("TERM"); srv:wait()
end

-- 4. metrics and breaker from Lua -------------------------------------------
local function bench_calls()
  local n = math.floor(20e6 * scale)
  local c = metrics.counter("bench_ops_total", "bench", { "kind" }):labels("x")
  local dt = best(3, function() for _ = 1, n do c:inc() end end)
  local plain = { value = 0 }
  local bdt = best(3, function() for _ = 1, n do plain.value = plain.value + 1 end end)
  row("metrics counter inc", ("%.2f"):format(dt / n * 1e9), "ns/op", ("plain Lua field add: %.2f ns"):format(bdt / n * 1e9))
  local h = metrics.histogram("bench_latency_seconds", "bench")
  local hn = math.floor(n / 4)
  local hdt = best(3, function() for i = 1, hn do h:observe(i % 100 / 1000) end end)
  row("metrics histogram observe", ("%.2f"):format(hdt / hn * 1e9), "ns/op")
  local b = breaker.new { name = "bench" }
  local f = function(x) return x end
  local bn = math.floor(n / 4)
  local brdt = best(3, function() for i = 1, bn do b:call(f, i) end end)
  local fdt = best(3, function() for i = 1, bn do f(i) end end)
  row("breaker call (closed, success)", ("%.2f"):format(brdt / bn * 1e9), "ns/op", ("plain call: %.2f ns"):format(fdt / bn * 1e9))
end

-- 5. config reload latency: file saved -> new value visible ------------------
local function bench_reload()
  local config = require "vibex.config"
  local dir = ("/tmp/vibex-bench-%d"):format(runtime.pid())
  assert(runtime.mkdir_p(dir))
  local path = dir .. "/cfg.lua"
  local function text(lev)
    return ([[return { accounts = { { name = "a", exchange = { venue = "sim" }, symbols = { "BTCUSDT" },
      risk = { max_leverage = %d } } } }]]):format(lev)
  end
  assert(runtime.write_file(path, text(1)))
  local store = config.store()
  store:apply(assert(config.load(path, { environment = "development" })))
  local seen_at
  store:subscribe("accounts.a.risk.max_leverage", function() seen_at = task.hrtime() end)
  local w = store:watch(path, { environment = "development" })
  local samples = {}
  local n = quick and 5 or 30
  for i = 1, n do
    seen_at = nil
    local t0 = task.hrtime()
    assert(runtime.write_file(path, text(1 + i % 100)))
    local deadline = task.now() + 5000
    while not seen_at and task.now() < deadline do task.sleep(1) end
    assert(seen_at, "config reload not seen within 5 s")
    samples[#samples + 1] = tonumber(seen_at - t0) / 1e6
  end
  w.close()
  os.remove(path); os.remove(dir)
  table.sort(samples)
  local med, max = samples[math.ceil(#samples / 2)], samples[#samples]
  row("config reload (save -> value visible)", ("%.1f"):format(med), "ms median",
      ("max %.1f ms over %d saves (target < 100 ms): %s"):format(max, n, max < 100 and "ok" or "MISSED"))
end

print(("vibex bench — %s, %s%s"):format(runtime.versions and runtime.versions().luajit or "LuaJIT",
  os.date("!%Y-%m-%dT%H:%M:%SZ"), quick and " (quick)" or ""))
local sections = {
  {"core", function() bench_tasks(); bench_timers(); bench_http(); bench_calls(); bench_reload() end},
  {"ta", function() dofile("tests/bench/ta.lua").run(row, fmt, best, quick) end},
  {"talib", function() dofile("tests/bench/talib.lua").run(row, fmt, best, quick) end},
  {"memory", function() dofile("tests/bench/memory.lua").run(row, fmt, best, quick) end},
  {"exchange", function() dofile("tests/bench/exchange.lua").run(row, fmt, best, quick) end},
  {"db", function() dofile("tests/bench/db.lua").run(row, fmt, best, quick) end},
  {"sim", function() dofile("tests/bench/sim.lua").run(row, fmt, best, quick) end},
  {"agent", function() dofile("tests/bench/agent.lua").run(row, fmt, best, quick) end},
  {"sandbox", function() dofile("tests/bench/sandbox.lua").run(row, fmt, best, quick) end},
  {"backtest", function() dofile("tests/bench/backtest.lua").run(row, fmt, best, quick) end},
  {"api", function() dofile("tests/bench/api.lua").run(row, fmt, best, quick) end},
}
for _, s in ipairs(sections) do
  if not only or only == s[1] then s[2]() end
end
