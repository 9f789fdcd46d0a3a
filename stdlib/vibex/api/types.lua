--- vibex.api.types — the JSON Schemas (2020-12, as OpenAPI 3.1 uses them)
-- the API's routes are declared with, a validator for request bodies and
-- query values against them, and the JSON encoding of answers.
--
-- One source: a route's schema is what the OpenAPI document says, what a
-- request body is checked against, and (in the tests) what every answer is
-- validated against by an independent validator.
local json = require "vibex.json"
local time = require "vibex.time"

local M = {}

-- ---- builders --------------------------------------------------------------------------------------

function M.str(o) o = o or {}; o.type = "string"; return o end
function M.int(o) o = o or {}; o.type = "integer"; return o end
function M.num(o) o = o or {}; o.type = "number"; return o end
function M.bool(o) o = o or {}; o.type = "boolean"; return o end
function M.enum(values, o) o = o or {}; o.type = "string"; o.enum = values; return o end
function M.arr(items, o) o = o or {}; o.type = "array"; o.items = items; return o end
function M.ref(name) return { ["$ref"] = "#/components/schemas/" .. name } end
-- The patterns schemas use (ECMA regular expressions in the document), each
-- with the check this validator runs for it.
local PATTERNS = {
  ["^-?[0-9]+(\\.[0-9]+)?$"] = function(v) return v:match("^%-?%d+$") or v:match("^%-?%d+%.%d+$") end,
  ["^0x[0-9a-fA-F]{40}$"] = function(v) return #v == 42 and v:match("^0x%x+$") end,
  ["^0x[0-9a-fA-F]+$"] = function(v) return v:match("^0x%x+$") end,
  ["^[A-Z0-9]{2,30}$"] = function(v) return #v >= 2 and #v <= 30 and v:match("^[A-Z0-9]+$") end,
}
M.DECIMAL = "^-?[0-9]+(\\.[0-9]+)?$"
M.ADDRESS = "^0x[0-9a-fA-F]{40}$"
M.HEX = "^0x[0-9a-fA-F]+$"
M.SYMBOL = "^[A-Z0-9]{2,30}$"

--- A decimal string: money and quantities never travel as JSON numbers.
function M.dec(o) o = o or {}; o.type = "string"; o.pattern = M.DECIMAL; return o end
function M.time(o) o = o or {}; o.type = "string"; o.format = "date-time"; return o end
function M.nullable(s)
  local c = {}
  for k, v in pairs(s) do c[k] = v end
  if c.type then c.type = { c.type, "null" } else return { anyOf = { s, { type = "null" } } } end
  return c
end

--- An object: props {name = schema}, required names; no other keys unless open.
function M.obj(props, required, o)
  o = o or {}
  o.type = "object"
  o.properties = props
  if required and #required > 0 then o.required = required end
  if o.additionalProperties == nil then o.additionalProperties = false end
  return o
end

--- A page of a list: items, and the cursor of the next page (null at the end).
function M.page(item)
  return M.obj({ items = M.arr(item), next_cursor = M.nullable(M.str { description = "pass as ?cursor= for the next page" }) },
    { "items", "next_cursor" })
end

-- ---- validation ------------------------------------------------------------------------------------

local function type_ok(t, v)
  if t == "null" then return v == nil or v == json.null end
  if t == "string" then return type(v) == "string" end
  if t == "boolean" then return type(v) == "boolean" end
  if t == "number" then return type(v) == "number" end
  if t == "integer" then return type(v) == "number" and v == math.floor(v) end
  if t == "array" then return type(v) == "table" and (next(v) == nil or #v > 0) end
  if t == "object" then return type(v) == "table" and (next(v) == nil or #v == 0) end
  return true
end

local validate

local function check_object(s, v, path, components)
  for _, k in ipairs(s.required or {}) do
    if v[k] == nil then return nil, ("%s.%s: required"):format(path, k) end
  end
  for k, x in pairs(v) do
    local ps = s.properties and s.properties[k]
    if not ps and s.additionalProperties == false then
      local known = {}
      for name in pairs(s.properties or {}) do known[#known + 1] = name end
      table.sort(known)
      return nil, ("%s.%s: unknown field (known: %s)"):format(path, tostring(k), table.concat(known, ", "))
    end
    if ps then
      local ok, err = validate(ps, x, path .. "." .. tostring(k), components)
      if not ok then return nil, err end
    end
  end
  return true
end

--- Check v against schema s. true | nil, "path: what is wrong".
function validate(s, v, path, components)
  path = path or "$"
  if s["$ref"] then
    local name = s["$ref"]:match("[^/]+$")
    return validate(components[name], v, path, components)
  end
  if s.anyOf then
    local first
    for _, alt in ipairs(s.anyOf) do
      local ok, err = validate(alt, v, path, components)
      if ok then return true end
      first = first or err
    end
    return nil, first
  end
  local types = type(s.type) == "table" and s.type or { s.type }
  if s.type then
    local ok = false
    for _, t in ipairs(types) do if type_ok(t, v) then ok = true break end end
    if not ok then return nil, ("%s: expected %s, found %s"):format(path, table.concat(types, " or "), type(v) == "table" and "object" or type(v)) end
  end
  if v == nil or v == json.null then return true end
  if s.enum then
    local ok = false
    for _, e in ipairs(s.enum) do if e == v then ok = true break end end
    if not ok then return nil, ("%s: %s is not one of %s"):format(path, tostring(v), table.concat(s.enum, ", ")) end
  end
  if type(v) == "string" then
    if s.pattern and not assert(PATTERNS[s.pattern], "no check for pattern " .. s.pattern)(v) then
      return nil, ("%s: %q does not have the expected form (%s)"):format(path, v, s.description or s.pattern)
    end
    if s.minLength and #v < s.minLength then return nil, ("%s: shorter than %d characters"):format(path, s.minLength) end
    if s.maxLength and #v > s.maxLength then return nil, ("%s: longer than %d characters"):format(path, s.maxLength) end
    if s.format == "date-time" and not M.parse_time(v) then return nil, ("%s: %q is not a date-time"):format(path, v) end
  elseif type(v) == "number" then
    if s.minimum and v < s.minimum then return nil, ("%s: below the minimum %s"):format(path, tostring(s.minimum)) end
    if s.maximum and v > s.maximum then return nil, ("%s: above the maximum %s"):format(path, tostring(s.maximum)) end
    if s.exclusiveMinimum and v <= s.exclusiveMinimum then return nil, ("%s: must be above %s"):format(path, tostring(s.exclusiveMinimum)) end
  elseif type(v) == "table" then
    if s.type == "array" or (type(s.type) == "table" and #v > 0) then
      if s.maxItems and #v > s.maxItems then return nil, ("%s: more than %d items"):format(path, s.maxItems) end
      for i, x in ipairs(v) do
        local ok, err = validate(s.items or {}, x, ("%s[%d]"):format(path, i - 1), components)
        if not ok then return nil, err end
      end
    else
      return check_object(s, v, path, components)
    end
  end
  return true
end
M.validate = validate

-- ---- encoding --------------------------------------------------------------------------------------

-- lua-cjson 2.1 writes an empty table as {}: lists go through M.list, which
-- marks an empty one so it is written as [].
local EMPTY = "\1[]\1"
function M.list(t) return (t == nil or next(t) == nil) and EMPTY or t end

--- The JSON text of an answer.
function M.encode(v)
  local s, err = json.encode(v)
  if not s then return nil, err end
  return (s:gsub('"\\u0001%[%]\\u0001"', "[]"))
end

--- "2026-12-07", "2026-12-07T03:10:00Z", "2026-12-07T03:10:00.123Z" or
--- epoch milliseconds -> epoch ms | nil.
function M.parse_time(s)
  if type(s) == "number" then return s end
  s = tostring(s)
  if s:match("^%d+$") and #s >= 10 then return tonumber(s) end
  local d, rest = s:match("^(%d%d%d%d%-%d%d%-%d%d)(.*)$")
  local day = d and time.date_ms(d)
  if not day then return nil end
  if rest == "" then return day end
  local h, mi, sec, frac = rest:match("^T(%d%d):(%d%d):(%d%d)(%.?%d*)Z$")
  if not h then return nil end
  h, mi, sec = tonumber(h), tonumber(mi), tonumber(sec)
  if h > 23 or mi > 59 or sec > 60 then return nil end
  local ms = frac ~= "" and frac ~= "." and math.floor(tonumber("0" .. frac) * 1000 + 0.5) or 0
  return day + ((h * 60 + mi) * 60 + sec) * 1000 + ms
end

--- Epoch ms -> "2026-12-07T03:10:00.123Z" (nil stays nil).
function M.iso(ms)
  if type(ms) ~= "number" or ms ~= ms then return nil end
  local s = math.floor(ms / 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. (".%03dZ"):format(math.floor(ms - s * 1000))
end

return M
