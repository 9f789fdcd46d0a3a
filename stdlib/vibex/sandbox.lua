--- vibex.sandbox — the environment strategy scripts and configs run in.
--
-- A sandboxed chunk sees a fresh global table with the pure parts of the
-- standard library (string without dump, table, math, bit, os.time/clock/
-- date), `print` routed to the log, and a `require` that only hands out
-- read-only views of allow-listed vibex modules. It has no io, os.execute,
-- os.exit, os.getenv, debug, package, ffi, getfenv/setfenv, dofile,
-- loadfile or bytecode loading; `load` accepts text only and keeps the
-- sandbox. The host enforces this: scripts cannot opt out.
local M = {}

local function copy(t, except)
  local c = {}
  for k, v in pairs(t) do
    if not (except and except[k]) then c[k] = v end
  end
  return c
end

local function readonly(t, name)
  return setmetatable({}, {
    __index = t,
    __newindex = function(_, k) error(("%s is read-only (tried to set '%s')"):format(name, tostring(k)), 2) end,
    __metatable = false,
  })
end

--- Modules a script may require (strategy code needs data and math, not
--- the process). Later issues extend this list.
M.allowed_modules = {
  ["vibex.json"] = true, ["vibex.log"] = true, ["vibex.inspect"] = true,
  ["vibex.metrics"] = true, ["vibex.ta"] = true,
  ["vibex.task"] = false, -- decided per sandbox (see opts.allow)
}

local safe_string = readonly(copy(string, { dump = true }), "string")
local safe_table = readonly(copy(table), "table")
local safe_math = readonly(copy(math), "math")
local safe_bit = readonly(copy(bit), "bit")
local safe_os = readonly({ time = os.time, clock = os.clock, date = os.date, difftime = os.difftime }, "os")
local safe_coroutine = readonly(copy(coroutine), "coroutine")

local function safe_getmetatable(v)
  if type(v) == "string" then return nil end -- the shared string metatable stays out of reach
  return getmetatable(v)
end

--- Build a sandbox environment.
--- opts.name: shown in print and errors; opts.extra: globals to add;
--- opts.allow: extra module names `require` may return.
function M.env(opts)
  opts = opts or {}
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    pcall = pcall, xpcall = xpcall, select = select, tonumber = tonumber,
    tostring = tostring, type = type, unpack = unpack, rawequal = rawequal,
    rawget = rawget, rawset = rawset, setmetatable = setmetatable,
    getmetatable = safe_getmetatable,
    string = safe_string, table = safe_table, math = safe_math, bit = safe_bit,
    os = safe_os, coroutine = safe_coroutine, _VERSION = _VERSION,
  }
  env._G = env
  local allow = opts.allow or {}
  env.require = function(name)
    if M.allowed_modules[name] or allow[name] then
      return readonly(require(name), name)
    end
    error(("require '%s' is not allowed in %s (allowed: vibex.json, vibex.log, vibex.inspect, vibex.metrics, vibex.ta%s)")
      :format(tostring(name), opts.name or "a sandboxed script", next(allow) and ", …" or ""), 2)
  end
  env.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    require("vibex.log").info(table.concat(parts, "\t"), { script = opts.name })
  end
  env.load = function(chunk, chunkname, mode, fenv)
    if mode ~= nil and mode ~= "t" then return nil, "load: only text chunks are allowed in the sandbox" end
    if type(chunk) ~= "string" then return nil, "load: only strings can be loaded in the sandbox" end
    return load(chunk, chunkname or "=(load)", "t", fenv or env)
  end
  env.loadstring = function(s, chunkname) return env.load(s, chunkname, "t") end
  for k, v in pairs(opts.extra or {}) do env[k] = v end
  return env
end

--- Compile text into a function running in `env`. Never accepts bytecode.
function M.compile(source, chunkname, env)
  if type(source) ~= "string" then return nil, "source must be a string" end
  if source:byte(1) == 27 then return nil, chunkname .. ": precompiled bytecode is not accepted" end
  return load(source, chunkname, "t", env)
end

return M
