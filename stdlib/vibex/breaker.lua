--- vibex.breaker — circuit breakers around any call.
--
--   local b = breaker.new{name = "aster", failure_threshold = 5, window_ms = 60000,
--                         cooldown_ms = 30000, half_open_max = 1}
--   local res, err = b:call(http.request, {url = …})
--
-- Closed: calls pass and failures are counted over a rolling window; at the
-- threshold the breaker opens. Open: calls return nil, "circuit open: …"
-- at once, until the cool-down ends. Half-open: up to half_open_max probe
-- calls pass; success_threshold successes close it, a failure re-opens it.
-- A call fails when it raises (the error is re-raised after recording) or
-- returns nil/false first (the nil, err convention); pass
-- `is_failure = function(...) end` to judge results yourself (e.g. only
-- HTTP 5xx). State changes are logged and exported as metrics.
local ffi = require "ffi"
local runtime = require "vibex.core.runtime"

require "vibex.cdef" -- the declarations (one registry, checked against the headers at build time)
local C = ffi.C

local STATES = { [0] = "closed", "open", "half_open" }

local Breaker = {}
Breaker.__index = Breaker

local function open_error(self)
  return ("circuit open: %s (retry in %.1f s)"):format(self.name, C.vx_breaker_retry_in(self.ptr) / 1000)
end

local function default_is_failure(...)
  local first = ...
  return first == nil or first == false
end

local function finish(self, allowed, ok, ...)
  local failed = not ok or self.is_failure(...)
  C.vx_breaker_record(self.ptr, allowed, failed and 0 or 1)
  if not ok then error((...), 0) end
  return ...
end

--- Call fn(...) through the breaker. Returns fn's results, or nil and
--- "circuit open: <name> (retry in N s)", "circuit_open" when refused.
function Breaker:call(fn, ...)
  local allowed = C.vx_breaker_allow(self.ptr)
  if allowed == 0 then return nil, open_error(self), "circuit_open" end
  return finish(self, allowed, pcall(fn, ...))
end

--- For calls that are not a single function: local ok, token = b:allow();
--- …; b:record(token, success)
function Breaker:allow()
  local allowed = C.vx_breaker_allow(self.ptr)
  if allowed == 0 then return nil, open_error(self) end
  return allowed
end
function Breaker:record(token, success) C.vx_breaker_record(self.ptr, token, success and 1 or 0) end

function Breaker:state() return STATES[C.vx_breaker_state(self.ptr)] end
function Breaker:retry_in_ms() return C.vx_breaker_retry_in(self.ptr) end
function Breaker:reset() C.vx_breaker_reset(self.ptr) end

local M = {}
local by_name = {}

--- Create a breaker, or return the existing one of that name (so reloaded
--- code keeps its breaker's state).
---@param o table name, failure_threshold, min_calls, window_ms, cooldown_ms, half_open_max, success_threshold
---@return table breaker
function M.new(o)
  if type(o) ~= "table" or type(o.name) ~= "string" then
    error("breaker.new{name = …}: a name is required", 2)
  end
  local existing = by_name[o.name]
  if existing then
    if o.is_failure then existing.is_failure = o.is_failure end
    return existing
  end
  local opts = ffi.new("vx_breaker_opts", {
    failure_threshold = o.failure_threshold or 0, min_calls = o.min_calls or 0,
    window_ms = o.window_ms or 0, cooldown_ms = o.cooldown_ms or 0,
    half_open_max = o.half_open_max or 0, success_threshold = o.success_threshold or 0,
  })
  local err = ffi.new("char[256]")
  local ptr = C.vx_breaker_new(runtime.ptr(), o.name, opts, err, 256)
  if ptr == nil then error("breaker.new: " .. ffi.string(err), 2) end
  local b = setmetatable({ name = o.name, ptr = ffi.gc(ptr, C.vx_breaker_free),
                           is_failure = o.is_failure or default_is_failure }, Breaker)
  by_name[o.name] = b
  return b
end

--- The breaker registered under name, or nil.
---@param name string
---@return table|nil breaker
function M.get(name) return by_name[name] end

--- Every registered breaker, by name.
---@return table breakers by name
function M.all()
  local out = {}
  for name, b in pairs(by_name) do out[#out + 1] = { name = name, state = b:state() } end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

return M
