--- vibex.inspect — readable text for any Lua value (the REPL prints with it).
--
-- Tables are printed with sorted keys, indentation, a depth limit and
-- cycle markers. Values under keys that name secrets (api_key, secret,
-- signature, token, password, …) are shown as "***".
local log = require "vibex.core.log"

local M = {}

local function is_identifier(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

local function fmt_number(n)
  if n ~= n then return "nan" end
  if n == math.huge then return "inf" end
  if n == -math.huge then return "-inf" end
  if n == math.floor(n) and math.abs(n) < 2 ^ 53 then return ("%d"):format(n) end
  for p = 15, 17 do
    local s = ("%." .. p .. "g"):format(n)
    if tonumber(s) == n then return s end
  end
  return tostring(n)
end

local function sort_keys(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local function render(v, opts, depth, seen, out, indent)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = ("%q"):format(v):gsub("\\\n", "\\n")
  elseif t == "number" then
    out[#out + 1] = fmt_number(v)
  elseif t ~= "table" then
    out[#out + 1] = tostring(v)
  elseif seen[v] then
    out[#out + 1] = "<cycle>"
  elseif depth >= opts.depth then
    out[#out + 1] = "{…}"
  else
    local mt = getmetatable(v)
    if mt and mt.__tostring and not opts.raw then
      out[#out + 1] = tostring(v)
      return
    end
    seen[v] = true
    local keys, n = {}, #v
    for k in pairs(v) do
      if not (type(k) == "number" and k >= 1 and k <= n and k == math.floor(k)) then keys[#keys + 1] = k end
    end
    table.sort(keys, sort_keys)
    local total = n + #keys
    if total == 0 then
      out[#out + 1] = "{}"
      seen[v] = nil
      return
    end
    local inner = indent .. "  "
    local short = total <= 8 and depth > 0
    out[#out + 1] = "{"
    local count = 0
    local function item(k, val, show_key)
      count = count + 1
      if count > opts.max_items then return false end
      out[#out + 1] = short and (count > 1 and ", " or " ") or ("\n" .. inner)
      if show_key then
        out[#out + 1] = is_identifier(k) and k or ("[" .. (type(k) == "string" and ("%q"):format(k) or tostring(k)) .. "]")
        out[#out + 1] = " = "
      end
      if type(k) == "string" and log.is_secret_key(k) and val ~= nil and type(val) ~= "table" then
        out[#out + 1] = '"***"'
      else
        render(val, opts, depth + 1, seen, out, inner)
      end
      if not short then out[#out + 1] = "," end
      return true
    end
    local more = true
    for i = 1, n do more = item(i, v[i], false); if not more then break end end
    if more then
      for _, k in ipairs(keys) do more = item(k, v[k], true); if not more then break end end
    end
    if not more then out[#out + 1] = (short and ", " or ("\n" .. inner)) .. ("… (%d more)"):format(total - opts.max_items) end
    out[#out + 1] = short and " }" or ("\n" .. indent .. "}")
    seen[v] = nil
  end
end

--- inspect(value, {depth = 6, max_items = 200, raw = false}) -> string
---@param v any
---@param opts table|nil depth, max_items, raw
---@return string text
function M.inspect(v, opts)
  opts = opts or {}
  opts.depth = opts.depth or 6
  opts.max_items = opts.max_items or 200
  local out = {}
  render(v, opts, 0, {}, out, "")
  return table.concat(out)
end

--- Print any number of values, inspected, separated by tabs.
---@param ... any
function M.pp(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = M.inspect((select(i, ...))) end
  io.stdout:write(table.concat(parts, "\t"), "\n")
  io.stdout:flush()
end

return setmetatable(M, { __call = function(_, ...) return M.inspect(...) end })
