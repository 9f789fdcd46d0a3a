--- vibex.process — child processes on the loop (for tools, tests, benches).
--
--   local p = process.spawn{file = "initdb", args = {"-D", dir}, stdout = "pipe"}
--   local line = p:read_line()        -- waits; nil, "eof" at the end
--   local out  = p:read_all()         -- waits until stdout closes
--   local code, signal = p:wait()
--   p:kill("TERM")
local core = require "vibex.core.process"
local task = require "vibex.task"

local await = task.await
local M = {}

local proto
local live = setmetatable({}, { __mode = "k" })

--- spawn{file=, args={}, env={NAME=value} (added to the inherited env), cwd=,
--- stdout="pipe"|"inherit"|"ignore" (pipe), stderr=… (inherit)}
---@param opts table file, args, env, cwd, stdout, stderr
---@return userdata|nil proc
---@return string|nil err
function M.spawn(opts)
  local p, err = core.spawn(opts)
  if not p then return nil, err end
  live[p] = true
  if not proto then
    proto = getmetatable(p).__index
    local read_line, read_all, wait = proto.read_line, proto.read_all, proto.wait
    proto.read_line = function(self, stream) return await(read_line(self, stream)) end
    proto.read_all = function(self, stream) return await(read_all(self, stream)) end
    proto.wait = function(self) return await(wait(self)) end
  end
  return p
end

--- Signal every child this runtime spawned that may still run (the test
--- runner does this at the end, so a failed spec leaves no server behind).
---@param sig string|nil "TERM" by default
function M.kill_all(sig)
  for p in pairs(live) do pcall(p.kill, p, sig or "TERM") end
end

--- Run a command to completion: stdout, exit code, signal (stderr inherited
--- unless opts.stderr says otherwise).
---@param file string
---@param args string[]|nil
---@param opts table|nil
---@return string|nil stdout
---@return integer|nil code
---@return integer|nil signal
function M.run(file, args, opts)
  opts = opts or {}
  opts.file, opts.args = file, args
  local p, err = M.spawn(opts)
  if not p then return nil, err end
  local out = p:read_all()
  local code, sig = p:wait()
  return out, code, sig
end

--- Find an executable on PATH (or return nil).
---@param name string
---@return string|nil path
function M.which(name)
  if name:find("/") then return name end
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    local f = io.open(dir .. "/" .. name, "r")
    if f then f:close(); return dir .. "/" .. name end
  end
  return nil
end

return M
