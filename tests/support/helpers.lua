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
