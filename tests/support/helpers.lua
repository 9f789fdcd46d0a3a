--- helpers for specs: fake servers, temp dirs, running vibex as a user would.
local process = require "vibex.process"
local task = require "vibex.task"
local runtime = require "vibex.runtime"

local M = {}

M.build = os.getenv("BUILD") or "build/release"
M.bin = os.getenv("VIBEX_BIN") or "./vibex"

--- Start tests/support/httpd; returns {port, base, proc}.
function M.httpd()
  local p = assert(process.spawn { file = M.build .. "/tests/httpd" })
  local line = assert(task.timeout(10000, function() return p:read_line() end))
  local port = assert(tonumber(line:match("LISTENING (%d+)")), "httpd did not start: " .. tostring(line))
  return { port = port, base = "http://127.0.0.1:" .. port, proc = p,
           stop = function() p:kill("TERM"); task.timeout(5000, function() return p:wait() end) end }
end

--- A V3 agent-wallet test identity for the fake venue (a throwaway key).
M.ASTER_V3 = { user = "0x63DD5aCC6b1aa0f563956C0e534DD30B6dcF7C4e", signer = "0x21cF8Ae13Bb72632562c6Fff438652Ba1a151bb0",
               private_key = "4fd0a42218f3eae43a6ce26d22544e986139a01e5b34a62db53757ffca81bae1" }

--- Start the fake Aster venue (tests/support/fake_aster) with `setup` (the
-- body of POST /_fake/setup). Returns {port, base, ws, proc, ctl(path, body),
-- state(), log(), stop()}.
-- Start a fake server script that prints "LISTENING <port>"; returns the
-- handle with ctl(path, body), state(), log() and stop().
local function fake_server(script, what)
  local http = require "vibex.http"
  local json = require "vibex.json"
  local p = assert(process.spawn { file = "python3", args = { script } })
  local line = assert(task.timeout(15000, function() return p:read_line() end))
  local port = assert(tonumber(line:match("LISTENING (%d+)")), what .. " did not start: " .. tostring(line))
  local f = { port = port, base = "http://127.0.0.1:" .. port, ws = "ws://127.0.0.1:" .. port, proc = p }
  function f.ctl(path, body)
    local res = assert(http.request { method = "POST", url = f.base .. "/_fake/" .. path, body = json.encode(body or {}) })
    assert(res.status == 200, "fake control " .. path .. " failed: " .. res.body)
    return json.decode(res.body)
  end
  function f.state() return json.decode(assert(http.get(f.base .. "/_fake/state")).body) end
  function f.log() return json.decode(assert(http.get(f.base .. "/_fake/log")).body) end
  function f.stop()
    p:kill("TERM")
    task.timeout(5000, function() return p:wait() end)
  end
  return f
end

function M.fake_aster(setup)
  local f = fake_server("tests/support/fake_aster/server.py", "fake venue")
  if setup then f.ctl("setup", setup) end
  return f
end

--- Start the fake LLM provider (tests/support/fake_llm): OpenAI at
-- f.base .. "/v1", Anthropic at f.base; setup = {key, models = {name = {mode, sequence, delay_ms}}}.
function M.fake_llm(setup)
  local f = fake_server("tests/support/fake_llm/server.py", "fake LLM")
  f.ctl("setup", setup or {})
  return f
end

--- A private PostgreSQL server for one spec file, in a fresh temporary
-- directory (fsync off: tests only). Returns the vibex.db.cluster handle
-- (conninfo, stop, restart); stop it in teardown.
function M.postgres()
  local cluster = require "vibex.db.cluster"
  local dir = M.tmpdir()
  local c = assert(cluster.start { dir = dir .. "/pg", fast = true })
  local stop = c.stop
  function c.stop(self, mode)
    local ok, err = stop(self, mode)
    if not mode then process.run("rm", { "-rf", dir }) end
    return ok, err
  end
  return c
end

local counter = 0
function M.tmpdir()
  counter = counter + 1
  local dir = ("/tmp/vibex-spec-%d-%d"):format(runtime.pid(), counter)
  process.run("rm", { "-rf", dir })
  assert(runtime.mkdir_p(dir))
  return dir
end

function M.write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

--- Run vibex with args; returns stdout, stderr, exit code.
function M.vibex(args, opts)
  opts = opts or {}
  local p = assert(process.spawn { file = opts.file or M.bin, args = args, stderr = "pipe", env = opts.env, cwd = opts.cwd })
  local out, err, code
  task.timeout(opts.timeout_ms or 30000, function()
    local errt = task.spawn(function() return p:read_all("stderr") end)
    out = p:read_all()
    local _, e = errt:join()
    err = e
    code = p:wait()
  end)
  if code == nil then p:kill("KILL") end
  return out or "", err or "", code
end

--- `vibex migrate up CONFIG` (creates the config's local database), asserting success.
function M.migrate(cfg)
  local out, err, code = M.vibex { "migrate", "up", cfg }
  assert(code == 0, "vibex migrate up failed: " .. tostring(err) .. tostring(out))
  return out
end

--- Wait until pred() is true, polling every `every` ms, up to timeout_ms.
function M.wait_until(pred, timeout_ms, every)
  local deadline = task.now() + (timeout_ms or 5000)
  while task.now() < deadline do
    if pred() then return true end
    task.sleep(every or 10)
  end
  return pred()
end

return M
