--- vibex.fswatch — watch a directory; fn(names) runs in a new task for each
--- debounced batch of changes ("*" in names means: rescan everything).
--
--   local w = fswatch.watch("scripts", function(names) … end, 20)
--   w:close()
local core = require "vibex.core.fswatch"

local M = {}

--- Call fn(paths) when files under dir change, after debounce_ms (20) of quiet; returns the watch (w:close()).
---@param dir string
---@param fn function
---@param debounce_ms number|nil
---@return userdata watch
function M.watch(dir, fn, debounce_ms)
  if type(fn) ~= "function" then error("fswatch.watch(dir, fn, debounce_ms): fn must be a function", 2) end
  return core.watch(dir, fn, debounce_ms or 20)
end

return M
