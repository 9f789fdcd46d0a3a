--- vibex.schema — declarative validation of nested Lua tables.
--
--   local S = require "vibex.schema"
--   local risk = S.record {
--     max_leverage = S.number { min = 1, max = 125, default = 3 },
--     mode         = S.enum { "live", "paper", default = "paper" },
--   }
--   local value, errors = S.validate(risk, input, { root = "risk" })
--
-- validate returns a normalized copy (defaults filled in) and a list of
-- errors; each error names the path (`accounts[2].risk.max_leverage`), what
-- was expected and what was found. Every error is collected, not only the
-- first. Unknown keys are rejected with a "did you mean" suggestion.
local M = {}

local Type = {}
Type.__index = Type

local function new_type(kind, o)
  o = o or {}
  o.kind = kind
  return setmetatable(o, Type)
end

-- Path helpers ---------------------------------------------------------------

local function join(path, key)
  if type(key) == "number" then return path .. "[" .. key .. "]" end
  if path == "" then return tostring(key) end
  if type(key) == "string" and not key:match("^[%a_][%w_]*$") then
    return ("%s[%q]"):format(path, key)
  end
  return path .. "." .. tostring(key)
end
M.join = join

--- A short description of a value for "found …" (never the value of a
--- secret, never more than 40 characters of a string).
local function describe(v)
  local t = type(v)
  if v == nil then return "nothing" end
  if t == "string" then
    if #v > 40 then return ("string %q…"):format(v:sub(1, 40)) end
    return ("string %q"):format(v)
  end
  if t == "number" then return ("number %s"):format(tostring(v)) end
  if t == "boolean" then return "boolean " .. tostring(v) end
  if t == "table" then
    local mt = getmetatable(v)
    if mt and mt.__describe then return mt.__describe(v) end
    if next(v) == nil then return "an empty table" end
    if rawget(v, 1) ~= nil then return "a list" end
    return "a table"
  end
  return "a " .. t
end
M.describe = describe

--- Levenshtein distance, for "did you mean".
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    local ca = a:byte(i)
    for j = 1, #b do
      local cost = ca == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- The closest of `candidates` to `word`, if it is close enough.
function M.suggest(word, candidates)
  if type(word) ~= "string" then return nil end
  local best, best_d
  for _, c in ipairs(candidates) do -- a prefix ("prod") is as good as a typo
    if #word >= 3 and c:lower():sub(1, #word) == word:lower() then return c end
  end
  for _, c in ipairs(candidates) do
    local d = distance(word:lower(), c:lower())
    if d <= math.max(2, math.floor(#c / 3)) and (not best_d or d < best_d) then best, best_d = c, d end
  end
  return best
end

-- Context ----------------------------------------------------------------------

local Ctx = {}
Ctx.__index = Ctx

function Ctx:error(path, msg)
  self.errors[#self.errors + 1] = { path = path, message = msg }
end

--- True when an error was reported at path or below it (so a cross-field
--- rule does not pile a second error onto a field that already failed).
function Ctx:has_error(path)
  for _, e in ipairs(self.errors) do
    if e.path == path or e.path:sub(1, #path + 1) == path .. "." or e.path:sub(1, #path + 1) == path .. "[" then return true end
  end
  return false
end

function Ctx:expected(path, what, v)
  self:error(path, ("expected %s, found %s"):format(what, describe(v)))
end

-- Types ------------------------------------------------------------------------

local checkers = {}

function checkers.any(_, v) return v end

function checkers.string(t, v, path, ctx)
  if type(v) ~= "string" then return ctx:expected(path, t.doc or "a string", v) end
  if t.min_len and #v < t.min_len then
    return ctx:expected(path, ("a string of at least %d characters"):format(t.min_len), v)
  end
  if t.max_len and #v > t.max_len then
    return ctx:expected(path, ("a string of at most %d characters"):format(t.max_len), v)
  end
  if t.pattern and not v:match(t.pattern) then return ctx:expected(path, t.doc or ("a string matching " .. t.pattern), v) end
  return v
end

function checkers.url(t, v, path, ctx)
  if type(v) ~= "string" then return ctx:expected(path, "a URL", v) end
  local scheme, host = v:match("^(%a[%w+.-]*)://([^/?#]+)")
  if not scheme then return ctx:expected(path, "a URL like https://host/path", v) end
  local ok = false
  for _, s in ipairs(t.schemes) do if s == scheme:lower() then ok = true end end
  if not ok then return ctx:expected(path, ("a URL with scheme %s"):format(table.concat(t.schemes, " or ")), v) end
  if host:find("@", 1, true) then
    return ctx:error(path, "URLs must not carry credentials (user:password@); reference a secret with env \"NAME\" instead")
  end
  return v
end

local function range_text(t)
  local parts = {}
  if t.min then parts[#parts + 1] = ">= " .. t.min end
  if t.gt then parts[#parts + 1] = "> " .. t.gt end
  if t.max then parts[#parts + 1] = "<= " .. t.max end
  return table.concat(parts, " and ")
end

function checkers.number(t, v, path, ctx)
  local what = t.integer and "an integer" or "a number"
  local range = range_text(t)
  if range ~= "" then what = what .. " " .. range end
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
    return ctx:expected(path, what, v)
  end
  if t.integer and v ~= math.floor(v) then return ctx:expected(path, what, v) end
  if (t.min and v < t.min) or (t.max and v > t.max) or (t.gt and v <= t.gt) then
    return ctx:expected(path, what, v)
  end
  return v
end

function checkers.boolean(_, v, path, ctx)
  if type(v) ~= "boolean" then return ctx:expected(path, "true or false", v) end
  return v
end

function checkers.enum(t, v, path, ctx)
  for _, e in ipairs(t.values) do if v == e then return v end end
  local quoted = {}
  for i, e in ipairs(t.values) do quoted[i] = ("%q"):format(e) end
  local hint = M.suggest(v, t.values)
  ctx:expected(path, "one of " .. table.concat(quoted, ", "), v)
  if hint then ctx.errors[#ctx.errors].message = ctx.errors[#ctx.errors].message .. (" (did you mean %q?)"):format(hint) end
end

local function is_list(v)
  if type(v) ~= "table" or getmetatable(v) then return false end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  for i = 1, n do if v[i] == nil then return false end end
  return true
end

function checkers.list(t, v, path, ctx)
  if not is_list(v) then return ctx:expected(path, "a list { … }", v) end
  if t.min and #v < t.min then
    return ctx:error(path, ("expected a list of at least %d item%s, found %d"):format(t.min, t.min == 1 and "" or "s", #v))
  end
  if t.max and #v > t.max then
    return ctx:error(path, ("expected a list of at most %d items, found %d"):format(t.max, #v))
  end
  local out, seen = {}, {}
  for i, item in ipairs(v) do
    local p = join(path, i)
    out[i] = M.check(t.item, item, p, ctx)
    local key = t.unique_by and type(item) == "table" and rawget(item, t.unique_by)
    if key ~= nil and key == key and key ~= false then -- NaN cannot be a table key
      if seen[key] then
        ctx:error(join(p, t.unique_by), ("duplicate %s %q (also at %s)"):format(t.unique_by, tostring(key), join(path, seen[key])))
      else
        seen[key] = i
      end
    elseif t.unique and item ~= nil and item == item then -- NaN cannot be a table key
      if seen[item] then ctx:error(p, ("duplicate %s (also at %s)"):format(describe(item), join(path, seen[item]))) end
      seen[item] = seen[item] or i
    end
  end
  return out
end

function checkers.map(t, v, path, ctx)
  if type(v) ~= "table" or getmetatable(v) then return ctx:expected(path, "a table { key = value }", v) end
  local out = {}
  for k, item in pairs(v) do
    local p = join(path, k)
    if type(k) ~= "string" then
      ctx:expected(p, "string keys", k)
    else
      if t.key then M.check(t.key, k, p, ctx) end
      out[k] = M.check(t.value, item, p, ctx)
    end
  end
  return out
end

function checkers.record(t, v, path, ctx)
  if type(v) ~= "table" or getmetatable(v) then return ctx:expected(path, t.doc or "a table { … }", v) end
  local out, errors_before = {}, #ctx.errors
  for k in pairs(v) do
    if t.fields[k] == nil then
      local p = join(path, k)
      if type(k) ~= "string" then
        ctx:error(p, "unexpected list item or non-string key in a table of named fields")
      else
        local hint = M.suggest(k, t.names)
        ctx:error(p, "unknown key" .. (hint and (" (did you mean '%s'?)"):format(hint) or
          (" (known keys: %s)"):format(table.concat(t.names, ", "))))
      end
    end
  end
  for _, name in ipairs(t.names) do
    local ft = t.fields[name]
    local fv = v[name]
    local p = join(path, name)
    if fv == nil then
      if ft.default ~= nil then
        local d = ft.default
        -- a table default goes through the type, so nested defaults fill in
        if type(d) == "table" then d = M.check(ft, d, p, ctx) end
        out[name] = d
      elseif ft.required then
        ctx:error(p, ("required field is missing (expected %s)"):format(ft.doc or ft.kind))
      end
    else
      out[name] = M.check(ft, fv, p, ctx)
    end
  end
  -- Cross-field rules run even when a field failed, so every error shows at
  -- once; a rule tripping over a field that already failed is skipped, a
  -- rule failing on valid fields is a bug in the schema and raises.
  if t.check then
    local ok, e = pcall(t.check, out, path, ctx)
    if not ok and #ctx.errors == errors_before then error(e, 0) end
  end
  return out
end

function checkers.custom(t, v, path, ctx) return t.fn(v, path, ctx) end

--- Validate v against type t at path; returns the normalized value.
function M.check(t, v, path, ctx)
  local fn = checkers[t.kind]
  if not fn then error("schema: unknown type kind " .. tostring(t.kind), 2) end
  return fn(t, v, path, ctx)
end

-- Constructors -----------------------------------------------------------------

function M.any(o) return new_type("any", o) end
function M.string(o) return new_type("string", o) end
function M.number(o) return new_type("number", o) end
function M.integer(o) o = o or {}; o.integer = true; return new_type("number", o) end
function M.boolean(o) return new_type("boolean", o) end
function M.url(o)
  o = o or {}
  o.schemes = o.schemes or { "http", "https" }
  return new_type("url", o)
end

--- S.enum { "a", "b", default = "a" }
function M.enum(o)
  local values = {}
  for i, v in ipairs(o) do values[i] = v end
  return new_type("enum", { values = values, default = o.default, required = o.required, doc = o.doc })
end

--- S.list(item, {min =, max =, unique_by = "name", unique = true, default =})
function M.list(item, o)
  o = o or {}
  o.item = item
  return new_type("list", o)
end

--- S.map(value, {key = S.string{…}})
function M.map(value, o)
  o = o or {}
  o.value = value
  return new_type("map", o)
end

--- S.record(fields, {check = function(value, path, ctx) end, doc =, required =})
function M.record(fields, o)
  o = o or {}
  o.fields = fields
  local names = {}
  for k in pairs(fields) do names[#names + 1] = k end
  table.sort(names)
  o.names = names
  return new_type("record", o)
end

--- S.custom(function(value, path, ctx) return normalized end, {doc =})
function M.custom(fn, o)
  o = o or {}
  o.fn = fn
  return new_type("custom", o)
end

--- Validate a value: normalized, errors ({path, message} list, sorted by path).
--- opts.root: path prefix; opts.data: anything the checks need (ctx.data).
function M.validate(t, v, opts)
  opts = opts or {}
  local ctx = setmetatable({ errors = {}, data = opts.data }, Ctx)
  local out = M.check(t, v, opts.root or "", ctx)
  return out, ctx.errors
end

return M
