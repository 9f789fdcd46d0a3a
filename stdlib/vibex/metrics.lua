--- vibex.metrics — counters, gauges and histograms with labels, exposed in
--- the Prometheus text format.
--
--   local orders = metrics.counter("vibex_orders_total", "Orders sent", {"venue", "side"})
--   orders:labels("aster", "BUY"):inc()
--   local lat = metrics.histogram("vibex_http_seconds", "HTTP latency", {"venue"})
--   lat:labels("aster"):observe(0.012)
--   local up = metrics.gauge("vibex_up", "1 while running"); up:set(1)
--   print(metrics.render())
--
-- A series handle is a pointer to C memory: `inc` compiles to one add, so
-- keep the handle (look it up once) on hot paths.
local ffi = require "ffi"
local core = require "vibex.core.metrics"

require "vibex.cdef" -- the declarations (one registry, checked against the headers at build time)
local C = ffi.C
local cast = ffi.cast
local series_ptr = ffi.typeof("vx_series_head*")

local Series = {}
function Series.inc(s, n) s.value = s.value + (n or 1) end
function Series.dec(s, n) s.value = s.value - (n or 1) end
function Series.add(s, n) s.value = s.value + n end
function Series.set(s, v) s.value = v end
function Series.get(s) return s.value end
function Series.observe(s, v) C.vx_metric_observe(s, v) end
--- Histogram: observe the seconds elapsed since `t0_ns` (task.hrtime()).
function Series.observe_since(s, t0_ns, now_ns) C.vx_metric_observe(s, (now_ns - t0_ns) / 1e9) end
function Series.count(s) return tonumber(s.count) end
function Series.sum(s) return s.sum end
ffi.metatype("vx_series_head", { __index = Series })

local Family = {}
Family.__index = Family

--- The series for these label values (cached per family).
function Family:labels(...)
  local n = select("#", ...)
  local key
  if n == 1 then key = tostring((...)) else key = table.concat({ ... }, "\31") end
  local s = self.cache[key]
  if not s then
    s = cast(series_ptr, core.series(self.handle, ...))
    self.cache[key] = s
  end
  return s
end

local function register(kind, name, help, labels, buckets)
  if type(name) ~= "string" then error("metrics." .. kind .. "(name, help, labels): name must be a string", 3) end
  local handle, nlabels = core.family(kind, name, help or "", labels, buckets)
  if nlabels == 0 then return cast(series_ptr, core.series(handle)) end
  return setmetatable({ handle = handle, name = name, cache = {} }, Family)
end

local M = {}

--- counter(name, help, labels?) -> series (no labels) or family
---@param name string
---@param help string
---@param labels string[]|nil
---@return table series_or_family
function M.counter(name, help, labels) return register("counter", name, help, labels) end
--- gauge(name, help, labels?) -> series (no labels) or family
---@param name string
---@param help string
---@param labels string[]|nil
---@return table series_or_family
function M.gauge(name, help, labels) return register("gauge", name, help, labels) end
--- histogram(name, help, labels?, buckets?) -> series or family; buckets are
--- ascending upper bounds (default: latency buckets from 0.5 ms to 120 s)
---@param name string
---@param help string
---@param labels string[]|nil
---@param buckets number[]|nil
---@return table series_or_family
function M.histogram(name, help, labels, buckets) return register("histogram", name, help, labels, buckets) end

--- The whole registry in Prometheus text exposition format.
---@return string text
M.render = core.render

return M
