-- Hostile configs and scripts, through the binary: `vibex check` on
-- configs that loop, allocate, recurse, cycle or reach for the process, and
-- `vibex run` with a strategy script edited into one hostile form after
-- another while another account trades next to it. Each is reported with
-- its cause; the other account keeps deciding; memory stays bounded; a
-- SIGTERM ends the process in order and fast.
local h = require "helpers"
local live = require "live"
local process = require "vibex.process"
local runtime = require "vibex.runtime"
local task = require "vibex.task"

-- peak resident memory of a process so far, in MB (from /proc)
local function peak_rss_mb(pid)
  local text = runtime.read_file(("/proc/%d/status"):format(pid)) or ""
  local kb = tonumber(text:match("VmHWM:%s*(%d+)") or "0")
  return kb / 1024
end

-- `vibex check` on a config text, with its peak RSS from /usr/bin/time
local function check(text, env)
  local dir = h.tmpdir()
  local cfg = dir .. "/vibex.lua"
  h.write(cfg, text)
  local t0 = runtime.wall_ms()
  local out, err, code = h.vibex({ "-f", "%M", h.bin, "check", cfg },
    { file = "/usr/bin/time", env = env or { VIBEX_ENV = "testing" }, timeout_ms = 20000 })
  local rss_kb = tonumber(err:match("(%d+)%s*$") or "0")
  return out .. err, code, runtime.wall_ms() - t0, rss_kb / 1024, dir
end

local VALID_TAIL = [[
  accounts = { { name = "a", exchange = { venue = "sim" }, symbols = { "BTCUSDT" } } } }
]]

describe("hostile configs through vibex check", function()
  local cases = {
    { "an endless loop", "while true do end", "ran over its time budget" },
    { "a loop inside pcall", "while true do pcall(function() while true do end end) end", "ran over its time budget" },
    { "a load-made chunk", "load('while true do end')()", "ran over its time budget" },
    { "an error whose __tostring loops", "error(setmetatable({}, {__tostring = function() while true do end end}))",
      "ran over its time budget" },
    { "an allocation bomb", "local t = {} while true do t[#t + 1] = ('x'):rep(65536) .. #t end", "budget" },
    { "one enormous string", "local s = ('x'):rep(2^30)", "memory budget" },
    { "deep recursion", "local function f() return 1 + f() end f()", "stack overflow" },
    { "a pathological pattern", "local x = (('a'):rep(40)):find(('a-'):rep(40) .. 'b')", "ran over its time budget" },
    { "io", "io.open('/tmp/x', 'w')", "global 'io'" },
    { "os.execute", "os.execute('touch /tmp/pwned')", "field 'execute'" },
    { "ffi", "require('ffi')", "require 'ffi' is not allowed" },
    { "debug", "debug.sethook()", "global 'debug'" },
    { "log settings", "require('vibex.log').configure { dir = '/tmp/vibex-pwned-logs' }", "field 'configure'" },
    { "the budget module", "require('vibex.core.budget')", "is not allowed" },
  }
  for _, c in ipairs(cases) do
    it("reports " .. c[1] .. " with its cause, in time, in bounded memory", function()
      local text, code, ms, rss = check(c[2] .. "\nreturn {" .. VALID_TAIL)
      assert.is_not.equal(0, code, text)
      assert.truthy(text:find(c[3], 1, true), text)
      assert.is_nil(text:find("stack traceback", 1, true), text)
      assert.is_true(ms < 8000, ("%s took %d ms"):format(c[1], ms))
      assert.is_true(rss < 450, ("%s peaked at %.0f MB"):format(c[1], rss))
    end)
  end
  assert.is_nil(runtime.stat("/tmp/vibex-pwned-logs"))

  local data_cases = {
    { "a table that contains itself", "local p = {} p.self = p\nreturn { strategies = { s = { params = p } }, ",
      "strategies.s.params.self: a cycle" },
    { "tables nested 10,000 deep", "local t = {} local d = t for i = 1, 10000 do d.x = {} d = d.x end\n" ..
      "return { strategies = { s = { params = t } }, ", "nested deeper than 32 levels" },
    { "a boolean key", "return { [true] = 1, ", "boolean used as a key" },
    { "a throwing metatable", "return { strategies = setmetatable({}, { __index = function() error('boom') end }), ",
      "strategies: a table with a metatable" },
    { "a function value", "return { strategies = { s = { params = { f = print } } }, ", "strategies.s.params.f: a function" },
    { "a huge value", "return { strategies = { s = { params = { x = ('x'):rep(3000000) } } }, ", "a string of 3000000 bytes" },
  }
  for _, c in ipairs(data_cases) do
    it("reports " .. c[1] .. " as a config error with its path", function()
      local text, code = check(c[2] .. VALID_TAIL)
      assert.is_not.equal(0, code, text)
      assert.truthy(text:find(c[3], 1, true), text)
      assert.is_nil(text:find("stack traceback", 1, true), text)
    end)
  end

  it("ends on SIGTERM within a second while a config spins", function()
    local dir = h.tmpdir()
    h.write(dir .. "/vibex.lua", "while true do end")
    local p = assert(process.spawn { file = h.bin, args = { "check", dir .. "/vibex.lua" }, stderr = "pipe",
                                     env = { VIBEX_ENV = "testing", VIBEX_CONFIG_BUDGET_MS = "60000" } })
    task.sleep(400)
    local t0 = runtime.wall_ms()
    p:kill("TERM")
    local code, errtext
    task.timeout(5000, function()
      errtext = p:read_all("stderr")
      code = p:wait()
    end)
    local ms = runtime.wall_ms() - t0
    assert.is_not_nil(code)
    assert.is_true(ms < 1000, ("exited %d ms after SIGTERM"):format(ms))
    assert.truthy((errtext or ""):find("shutdown signal", 1, true), errtext)
  end)
end)

local HOSTILE = {
  { "an endless loop in decide", "local M = {} function M.decide() while true do end end return M",
    "ran over its time budget" },
  { "an endless loop while loading", "while true do end return {}", "loading it ran over its time budget" },
  { "a loop inside pcall", "local M = {} function M.decide() while true do pcall(function() while true do end end) end end return M",
    "ran over its time budget" },
  { "a load-made chunk", "local M = {} function M.decide() load('while true do end')() end return M",
    "ran over its time budget" },
  { "an error whose __tostring loops",
    "local M = {} function M.decide() error(setmetatable({}, {__tostring = function() while true do end end})) end return M",
    "ran over its time budget" },
  { "an allocation bomb", "local M = {} function M.decide() local t = {} while true do t[#t + 1] = ('x'):rep(65536) .. #t end end return M",
    "budget" },
  { "deep recursion", "local M = {} local function f() return 1 + f() end function M.decide() return f() end return M",
    "stack overflow" },
  { "a pathological pattern", "local M = {} function M.decide() return (('a'):rep(40)):find(('a-'):rep(40) .. 'b') end return M",
    "ran over its time budget" },
  { "a cyclic result", "local M = {} function M.decide() local t = {} t.t = t return t end return M", "a cycle" },
  { "ffi", "local ffi = require('ffi') return {}", "require 'ffi' is not allowed" },
  { "os.execute", "os.execute('touch /tmp/vibex-pwned') return {}", "field 'execute'" },
  { "log settings", "require('vibex.log').configure { dir = '/tmp/vibex-pwned-logs' } return {}", "field 'configure'" },
  { "a missing function", "return { decide_later = function() end }", "must export a function 'decide'" },
  { "the wrong arity", "return { decide = function(a, b, c, d) end }", "'decide' takes 4 arguments but is called with 2" },
}

describe("hostile scripts under vibex run", function()
  local w
  setup(function()
    local dir = h.tmpdir()
    w = live.world {
      accounts = {
        { name = "calm", keys = "v1", symbols = { "BTCUSDT" }, strategy = "calm" },
        { name = "wild", keys = "v1", symbols = { "ETHUSDT" }, strategy = "wild" },
        { name = "doomed", keys = "v1", symbols = { "BTCUSDT" }, strategy = "doomed" },
      },
      strategies = { calm = dir .. "/calm", wild = dir .. "/wild", doomed = dir .. "/doomed" },
      runtime = "script_budget_ms = 200, script_memory_mb = 32, script_max_failures = 3",
    }
    w.script_dir = dir
    -- doomed: loads, then never returns from decide; no earlier version to fall back to
    h.write(dir .. "/doomed/doomed.lua", "local M = {} function M.decide() while true do end end return M")
  end)
  teardown(function() if w then w:close() end end)

  local function app_log() return runtime.read_file(w.dir .. "/logs/app.log") or "" end

  it("reports each hostile edit, keeps the other account deciding, and stops fast on SIGTERM", function()
    w:start()
    local pid = w.proc:pid()
    w:wait_running()
    assert(h.wait_until(function() return w:decisions("calm") >= 2 and w:decisions("wild") >= 2 end, 60000, 100))
    local t_start, calm_start = runtime.wall_ms(), w:decisions("calm")
    local seen_from = #app_log()
    for i, c in ipairs(HOSTILE) do
      h.write(w.script_dir .. "/wild/wild.lua", c[2] .. ("\n-- edit %d\n"):format(i))
      local ok = h.wait_until(function()
        local tail = app_log():sub(seen_from + 1)
        return tail:find("wild", 1, true) and tail:find(c[3], 1, true) and
          (tail:find("not reloaded", 1, true) or tail:find("failed", 1, true))
      end, 20000, 50)
      assert(ok, c[1] .. ": not reported; log since the edit:\n" .. app_log():sub(seen_from + 1, seen_from + 3000))
      seen_from = #app_log()
      assert.is_true(peak_rss_mb(pid) < 500, ("%s: RSS peaked at %.0f MB"):format(c[1], peak_rss_mb(pid)))
    end
    -- the calm account decided on schedule all along (one cycle a second)
    local secs = (runtime.wall_ms() - t_start) / 1000
    local calm = w:decisions("calm") - calm_start
    assert.is_true(calm >= secs * 0.6, ("calm decided %d times in %.1f s"):format(calm, secs))
    local errs = w:query([[SELECT count(*) AS n FROM decisions d JOIN accounts a USING (account_id)
      WHERE a.name = 'calm' AND d.error IS NOT NULL]])
    assert.equal(0, tonumber(errs[1].n))
    -- a hostile config saved while it runs: refused with its cause, the running config stays
    local cfg_text = runtime.read_file(w.config)
    for _, bad in ipairs { { "while true do end\n", "ran over its time budget" },
                           { "local t = {} while true do t[#t + 1] = ('x'):rep(65536) .. #t end\n", "budget" },
                           { "local p = {} p.p = p\n", "a cycle" } } do
      local from, calm_before = #app_log(), w:decisions("calm")
      local text = bad[1] .. cfg_text
      if bad[2] == "a cycle" then text = cfg_text:gsub("^return {", "local p = {} p.p = p\nreturn { zz = p,") end
      h.write(w.config, text)
      assert(h.wait_until(function() return app_log():sub(from + 1):find(bad[2], 1, true) end, 20000, 50),
        "hostile config not reported: " .. app_log():sub(from + 1, from + 2000))
      assert(h.wait_until(function() return w:decisions("calm") >= calm_before + 2 end, 20000, 50),
        "calm stopped deciding after a hostile config")
      assert.is_true(peak_rss_mb(pid) < 500, ("RSS peaked at %.0f MB"):format(peak_rss_mb(pid)))
    end
    h.write(w.config, cfg_text)
    -- the wild account went on with its last good version between edits
    assert.truthy(app_log():find("version 1 put back", 1, true))
    assert.is_nil(runtime.stat("/tmp/vibex-pwned"))
    assert.is_nil(runtime.stat("/tmp/vibex-pwned-logs"))
    -- doomed: three failures, disabled, said in the log and the diary
    assert(h.wait_until(function() return app_log():find("script doomed disabled after 3 failures", 1, true) end, 20000, 100),
      "doomed was not disabled")
    assert(h.wait_until(function()
      local rows = w:query([[SELECT count(*) AS n FROM diary_entries d JOIN accounts a USING (account_id)
        WHERE a.name = 'doomed' AND d.body LIKE '%rules script doomed was disabled%']])
      return tonumber(rows[1].n) >= 1
    end, 20000, 100), "no diary entry for the disabled script")
    -- a fixed file brings it back
    h.write(w.script_dir .. "/doomed/doomed.lua", live.FLIP)
    assert(h.wait_until(function() return app_log():find("script doomed loaded (version 2)", 1, true) end, 20000, 50))
    -- SIGTERM with a hostile script in place: orderly and fast
    h.write(w.script_dir .. "/wild/wild.lua", HOSTILE[1][2] .. "\n-- last\n")
    task.sleep(500)
    local t0 = runtime.wall_ms()
    local code = w:stop()
    local ms = runtime.wall_ms() - t0
    assert.equal(0, code)
    assert.is_true(ms < 1000, ("exited %d ms after SIGTERM"):format(ms))
    assert.truthy(app_log():find("shutting down (SIGTERM)", 1, true))
  end)
end)
