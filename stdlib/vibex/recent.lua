--- vibex.recent — a map that keeps about the last `n` keys written, for
--- state a long run would otherwise keep forever (an order's latest stream
--- state, fills seen, client ids placed): reads and writes as a table
--- (m[k], m[k] = v), memory bounded by 2n entries.
---
---   local seen = recent.map(5000)
---   seen[key] = true; if seen[key] then ... end
---
--- Keys go in generations of n: when the current one is full it becomes the
--- old one and the one before is dropped, so a key is kept for at least n
--- writes of other keys after its own. Iteration (pairs) is not supported.
local M = {}

--- A bounded map of about the last n keys.
---@param n integer keys per generation (at least 1)
---@return table map
function M.map(n)
  if type(n) ~= "number" or n < 1 then error("recent.map: n must be a positive number", 2) end
  local cur, old, count = {}, {}, 0
  return setmetatable({}, {
    __index = function(_, k)
      local v = cur[k]
      if v == nil then v = old[k] end
      return v
    end,
    __newindex = function(_, k, v)
      if v == nil then
        cur[k], old[k] = nil, nil
        return
      end
      if cur[k] == nil then
        old[k] = nil
        count = count + 1
        if count > n then old, cur, count = cur, {}, 1 end
      end
      cur[k] = v
    end,
    __len = function() return count end,
  })
end

return M
