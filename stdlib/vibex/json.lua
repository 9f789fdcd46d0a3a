--- vibex.json — JSON through lua-cjson.
--
--   json.decode(s)          -> value | nil, "json: <reason> at character N near '…'"
--   json.encode(v)          -> string | nil, err
--   json.null               -- the value JSON null decodes to
--
-- Exchange decimals stay exact: Aster and Binance send prices, quantities
-- and balances as JSON *strings* ("price":"0.12340"), and decode leaves
-- strings as strings. Keep them that way: compare and round them with
-- vibex.decimal (or the exchange adapter's formatting), never through
-- tonumber(), and send the string you got. A JSON *number* becomes a Lua
-- double (exact for integers up to 2^53, such as millisecond timestamps
-- and order ids); encode writes doubles with 14 significant digits (the most
-- lua-cjson 2.1 allows), so money must travel as strings, never as numbers.
local cjson = require "cjson.safe"

local encoder = cjson.new()
encoder.encode_number_precision(14) -- the most lua-cjson 2.1 allows
encoder.encode_sparse_array(true, 1, 1) -- sparse arrays become objects, not errors
encoder.encode_invalid_numbers(false)

local decoder = cjson.new()
decoder.decode_invalid_numbers(false) -- NaN / Infinity are not JSON

local M = {}
M.null = cjson.null

local function excerpt(s, pos)
  local from = math.max(1, pos - 10)
  return (s:sub(from, pos + 10):gsub("%c", " "))
end

--- Decode a JSON text. Returns the value, or nil and a message that says
--- what was wrong and where.
---@param s string JSON text
---@return any|nil value
---@return string|nil err
function M.decode(s)
  if type(s) ~= "string" then
    return nil, "json: expected a string to decode, got " .. type(s)
  end
  local v, err = decoder.decode(s)
  if v == nil and err then
    local pos = tonumber(err:match("character (%d+)"))
    local reason = err:gsub(" at character %d+$", "")
    if pos then
      return nil, ("json: %s at character %d near '%s'"):format(reason, pos, excerpt(s, pos))
    end
    return nil, "json: " .. err
  end
  return v
end

--- An empty table that encodes as [] rather than {}.
M.empty_array = setmetatable({}, { __newindex = function() error("json.empty_array is read-only", 2) end })

--- Encode a Lua value. Tables with only consecutive integer keys from 1 are
--- arrays; json.empty_array encodes as [].
---@param v any
---@return string|nil text
---@return string|nil err
function M.encode(v)
  if v == M.empty_array then return "[]" end
  local s, err = encoder.encode(v)
  if not s then return nil, "json: " .. tostring(err) end
  return s
end

local function sorted_into(v, out, depth)
  if depth > 100 then error("json.encode_sorted: nested deeper than 100 (a cycle?)", 3) end
  if type(v) ~= "table" or v == M.empty_array then
    local s, err = M.encode(v)
    if not s then error(err, 3) end
    out[#out + 1] = s
    return
  end
  local n, count = #v, 0
  for _ in pairs(v) do count = count + 1 end
  if count > 0 and count == n then
    out[#out + 1] = "["
    for i = 1, n do
      if i > 1 then out[#out + 1] = "," end
      sorted_into(v[i], out, depth + 1)
    end
    out[#out + 1] = "]"
    return
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    if i > 1 then out[#out + 1] = "," end
    out[#out + 1] = encoder.encode(k)
    out[#out + 1] = ":"
    local x = v[k]
    if x == nil then x = v[tonumber(k)] end
    sorted_into(x, out, depth + 1)
  end
  out[#out + 1] = "}"
end

--- Encode with object keys sorted: the same value gives the same text in
-- every process (plain encode follows the table's hash order, which
-- differs between runs). What scripts encode goes this way, so a prompt is
-- the same text whenever its data is the same, and a recorded model answer
-- (vibex.llm.replay) is found again.
---@param v any
---@return string|nil text
---@return string|nil err
function M.encode_sorted(v)
  local out = {}
  local ok, err = pcall(sorted_into, v, out, 0)
  if not ok then return nil, tostring(err) end
  return table.concat(out)
end

--- True if `s` is a plain decimal number in string form ("-12.340", "5").
---@param s any
---@return boolean
function M.is_decimal_string(s)
  return type(s) == "string" and s:match("^%-?%d+%.?%d*$") ~= nil
end

return M
