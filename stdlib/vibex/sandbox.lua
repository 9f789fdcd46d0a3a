--- vibex.sandbox — the environment strategy scripts and configs run in,
-- and the budgets they run under.
--
-- A sandboxed chunk sees a fresh global table built from one allow-list
-- (M.ALLOWLIST): the pure parts of the standard library, `print` routed to
-- the log, and a `require` that hands out facades of a few vibex modules —
-- never the modules themselves. Nothing in it touches files, processes,
-- sockets, FFI, the debug library or runtime settings, and no cdata
-- pointer crosses: market data arrives as bounds-checked views
-- (vibex.sandbox.ta). tests/spec/sandbox_spec.lua walks everything
-- reachable from an environment and fails on anything not on the list.
--
-- Every call into sandboxed code goes through M.run, under a wall-clock and
-- a memory budget enforced from C (vibex.core.budget): an instruction hook
-- that the code cannot remove, whose error a `pcall` inside the sandbox
-- cannot swallow (the sandbox's pcall, xpcall and coroutine.resume re-raise
-- while the budget is tripped), with the JIT off for sandboxed functions so
-- the hook always fires; `load` in the sandbox keeps all of this. A
-- SIGINT/SIGTERM trips the budget too, so a busy script never delays a
-- shutdown. Error objects are turned into text inside the budget (their
-- __tostring is the script's code), and results cross back as plain data
-- (M.plain) so no metamethod of theirs runs outside it.
local budget = require "vibex.core.budget"

local M = {}

--- Default budgets. Scripts: each call (context, prompt, policy, rules, and
-- loading a file). Configs: evaluating the file. Both can be changed:
-- scripts by the config (scripts.budget_ms / scripts.memory_mb), configs by
-- VIBEX_CONFIG_BUDGET_MS / VIBEX_CONFIG_MEMORY_MB (they run before any config).
M.LIMITS = {
  script = { time_ms = 200, memory_mb = 64 },
  config = { time_ms = 2000, memory_mb = 256 },
}

local MAX_ERROR_TEXT = 4000

-- The shared string metatable's __index is the real `string` table, so
-- whatever is in it is reachable from any string: bytecode stays out.
string.dump = nil

-- The C pattern matcher backtracks without limit where no hook reaches:
-- while a budget is entered, find/match/gmatch/gsub run the interpreted
-- matcher of vibex.sandbox.pattern instead, which the budget can end —
-- unless the call is provably cheap: a pattern with k backtracking items
-- (*, +, -, ?, %b) costs at most about n^(k+1) * m steps on a subject of
-- n bytes, so the C matcher keeps calls under 2^26 steps (tens of ms).
-- Outside budgets the C functions run as before (one JIT-compiled load of
-- the depth decides). These are the string table's own entries, so
-- s:find(...) in a script takes the same path.
do
  local ffi = require "ffi"
  local pattern = require "vibex.sandbox.pattern"
  local depth = ffi.cast("const int *", budget.depth_address())
  local c_find, c_match, c_gmatch, c_gsub = string.find, string.match, string.gmatch, string.gsub
  local log, log2 = math.log, math.log(2)
  local items, cached = {}, 0

  -- backtracking items in p (escaped characters and %% do not count; a '-'
  -- inside a set does, which only errs on the safe side)
  local function backtracking(p)
    local k = items[p]
    if k then return k end
    local bare = c_gsub(p, "%%%%", "")
    local _, quants = c_gsub(bare, "[%*%+%-%?]", "")
    local _, escaped = c_gsub(bare, "%%[%*%+%-%?]", "")
    local _, balances = c_gsub(bare, "%%b", "")
    k = quants - escaped + balances
    if cached > 4096 then items, cached = {}, 0 end
    items[p], cached = k, cached + 1
    return k
  end

  local function cheap(s, p, plain)
    if type(s) ~= "string" or type(p) ~= "string" then return false end
    if plain then return true end
    return (backtracking(p) + 1) * log(#s + 1) / log2 + log(#p + 1) / log2 <= 26
  end

  string.find = function(s, p, init, plain)
    if depth[0] > 0 and not cheap(s, p, plain) then return pattern.find(s, p, init, plain) end
    return c_find(s, p, init, plain)
  end
  string.match = function(s, p, init)
    if depth[0] > 0 and not cheap(s, p) then return pattern.match(s, p, init) end
    return c_match(s, p, init)
  end
  string.gmatch = function(s, p)
    if depth[0] > 0 and not cheap(s, p) then return pattern.gmatch(s, p) end
    return c_gmatch(s, p)
  end
  string.gsub = function(s, p, repl, n)
    if depth[0] > 0 and not cheap(s, p) then return pattern.gsub(s, p, repl, n) end
    return c_gsub(s, p, repl, n)
  end
end

-- ---- budgets -----------------------------------------------------------------------------------

local tripped = budget.tripped
local TRIPPED = "the script's budget is exhausted"

-- pcall and friends for the sandbox: once the budget trips, what they
-- caught is raised again, so the call ends.
local function rethrow_if_tripped(...)
  if tripped() then error(TRIPPED, 0) end
  return ...
end

local function trip_reason(trip, limits)
  if trip == "time" then
    return ("ran over its time budget of %d ms (an endless loop?)"):format(limits.time_ms)
  elseif trip == "memory" then
    return ("went over its memory budget of %d MB (an allocation without end?)"):format(limits.memory_mb)
  end
  return "stopped: a shutdown signal arrived"
end

-- text of an error value; runs inside the budget (a __tostring is the script's)
local function error_text(e, co)
  local s
  if type(e) == "string" then
    s = e
  else
    local ok, t = pcall(tostring, e)
    s = ok and type(t) == "string" and t or ("(an error object of type %s)"):format(type(e))
  end
  if #s > MAX_ERROR_TEXT then s = s:sub(1, MAX_ERROR_TEXT) .. "…" end
  if co then
    local ok, tb = pcall(debug.traceback, co, s)
    if ok and type(tb) == "string" then s = tb end
  end
  return s
end

-- inside the budget: the call, and its error made text (a __tostring is the script's code)
local function body(co, traceback, ...)
  local res = { coroutine.resume(co, ...) }
  res.n = table.maxn(res)
  if not res[1] and not tripped() then res.message = error_text(res[2], traceback and co) end
  return res
end

--- Run fn(...) under a budget. limits: {time_ms, memory_mb, traceback =
-- false to leave the stack out of error messages}. The function
-- runs in a coroutine of its own (a yield out of it is an error, so it can
-- never suspend with the budget held). Returns true, results… | nil,
-- message, kind ("time" | "memory" | "signal" | "error" | "yield").
---@param limits table ms, memory_mb
---@param fn function
---@param ... any
---@return any ok_or_nil true and the results, or nil
---@return any ... the results, or message and kind
function M.run(limits, fn, ...)
  local co = coroutine.create(fn)
  local trip, ok, res = budget.pcall(limits.time_ms, limits.memory_mb * 1048576, body, co,
    limits.traceback ~= false, ...)
  if trip then return nil, trip_reason(trip, limits), trip end
  if not ok then return nil, tostring(res), "error" end
  if not res[1] then return nil, res.message or "error", "error" end
  if coroutine.status(co) ~= "dead" then
    return nil, "yielded: sandboxed code must return, not yield to the runtime", "yield"
  end
  return true, unpack(res, 2, res.n)
end

--- How many calls tripped each budget, and memory figures.
---@return table stats
function M.stats() return budget.stats() end

-- ---- plain data ---------------------------------------------------------------------------------

local function key_text(k)
  if type(k) == "string" then
    if k:match("^[%a_][%w_]*$") then return k end
    return ("[%q]"):format(#k > 40 and (k:sub(1, 40) .. "…") or k)
  end
  return ("[%s]"):format(tostring(k))
end

local function join(path, k)
  local kt = key_text(k)
  if path == "" then return kt end
  return kt:sub(1, 1) == "[" and (path .. kt) or (path .. "." .. kt)
end

--- A copy of v made only of plain data: tables without metatables whose
-- keys are strings or list indexes, strings, finite or NaN numbers,
-- booleans; opts.keep(x) names opaque values to pass as they are (secret
-- references, views). Raw access only: no metamethod runs. Cycles,
-- depth over opts.max_depth (64), more than opts.max_items (1e6) values,
-- strings over opts.max_string bytes (16 MB), and anything else are errors
-- naming the path. opts.copy = false checks the same and returns v itself
-- (no table is allocated). Returns copy | nil, path, message.
---@param v any
---@param opts table|nil max_depth, max_items, max_string, keep, root, copy
---@return any|nil copy
---@return string|nil path
---@return string|nil message
function M.plain(v, opts)
  opts = opts or {}
  local max_depth, max_items = opts.max_depth or 64, opts.max_items or 1000000
  local max_string, keep, root = opts.max_string or 16 * 1048576, opts.keep, opts.root or ""
  local copying = opts.copy ~= false
  -- stack: the tables being walked, outermost first (for cycles); keys:
  -- the key each was reached by, turned into a path only when there is an
  -- error to name (no allocation per table on the way)
  local items, memo, stack, keys = 0, {}, {}, {}
  local function path_of(depth, k)
    local path = root
    for i = 2, depth do path = join(path, keys[i]) end
    if k ~= nil then path = join(path, k) end
    return path
  end
  local getmt = debug.getmetatable
  -- x is reached by `key` from the table at depth - 1
  local function copy(x, key, depth)
    local t = type(x)
    if t == "string" then
      if #x > max_string then return nil, path_of(depth - 1, key), ("a string of %d bytes (at most %d)"):format(#x, max_string) end
      return x
    elseif t == "number" or t == "boolean" or t == "nil" then
      return x
    elseif (t ~= "table" or getmt(x) ~= nil) and keep and keep(x) then
      return x
    elseif t ~= "table" then
      return nil, path_of(depth - 1, key), ("a %s; only plain data (tables, strings, numbers, booleans) can be used here"):format(t)
    end
    local done = memo[x]
    if done then
      for i = 1, depth - 1 do
        if stack[i] == x then return nil, path_of(depth - 1, key), "a cycle: this table contains itself" end
      end
      return done
    end
    if depth > max_depth then return nil, path_of(depth - 1, key), ("nested deeper than %d levels"):format(max_depth) end
    if getmt(x) ~= nil then
      return nil, path_of(depth - 1, key), "a table with a metatable; only plain tables can be used here"
    end
    stack[depth], keys[depth] = x, key
    local out = copying and {} or x
    memo[x] = out
    -- the list part in a numeric loop (compiled; `next` is not, in this
    -- LuaJIT), then whatever else the table holds
    local n = #x
    for i = 1, n do
      local val = rawget(x, i)
      local tv = type(val)
      if tv == "number" or tv == "boolean" then
        if copying then out[i] = val end
      else
        local c, p, m = copy(val, i, depth + 1)
        if p then stack[depth] = nil; return nil, p, m end
        if copying then out[i] = c end
      end
    end
    items = items + n
    if items > max_items then stack[depth] = nil; return nil, path_of(depth - 1, key), ("more than %d values"):format(max_items) end
    local k, val = next(x, n > 0 and n or nil)
    while k ~= nil do
      items = items + 1
      if items > max_items then stack[depth] = nil; return nil, path_of(depth - 1, key), ("more than %d values"):format(max_items) end
      local kt = type(k)
      if kt == "number" then
        if k ~= k or k < 1 or k % 1 ~= 0 or k > 2 ^ 31 then
          stack[depth] = nil
          return nil, path_of(depth, k), "a number key that is not a list index (1, 2, 3, …)"
        end
      elseif kt ~= "string" then
        stack[depth] = nil
        return nil, path_of(depth - 1, key), ("a %s used as a key; keys are names or list indexes"):format(kt)
      elseif #k > 1000 then
        stack[depth] = nil
        return nil, path_of(depth - 1, key), ("a key of %d bytes"):format(#k)
      end
      local tv = type(val)
      if tv == "number" or tv == "boolean" then
        if copying then out[k] = val end
      else
        local c, p, m = copy(val, k, depth + 1)
        if p then stack[depth] = nil; return nil, p, m end
        if copying then out[k] = c end
      end
      k, val = next(x, k)
    end
    stack[depth] = nil
    return out
  end
  local c, p, m = copy(v, nil, 1)
  if p then return nil, p == "" and "(the value)" or p, m end
  return c
end

-- ---- the allow-list ----------------------------------------------------------------------------------

local readonly_names = setmetatable({}, { __mode = "k" })

-- one function for every read-only table, so the allow-list can name it
local function refuse_write(t, k)
  error(("%s is read-only (tried to set '%s')"):format(readonly_names[t] or "this table", tostring(k)), 2)
end

local function readonly(t, name)
  local r = setmetatable({}, { __index = t, __newindex = refuse_write, __metatable = false })
  readonly_names[r] = name
  return r
end

local function pick(src, names)
  local t = {}
  for _, n in ipairs(names) do t[n] = src[n] end
  return t
end

local function safe_getmetatable(v)
  if type(v) == "string" then return nil end -- the shared string metatable stays out of reach
  return getmetatable(v)
end

-- compiled sandbox functions run interpreted: the budget hook does not fire
-- inside JIT traces
local function no_jit(fn)
  if type(fn) == "function" then jit.off(fn, true) end
  return fn
end

local json = require "vibex.json"
local inspect = require "vibex.inspect"
local log = require "vibex.log"
local safe_ta = require "vibex.sandbox.ta"
local secret = require "vibex.secret"

--- Everything a sandbox may reach, in one table: globals, the library
-- tables (with their functions), and the modules `require` hands out.
-- Functions made per environment (print, require, load, loadstring, pcall,
-- xpcall, coroutine.resume) are listed in M.PER_ENV.
M.ALLOWLIST = {
  globals = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, select = select,
    tonumber = tonumber, tostring = tostring, type = type, unpack = unpack, rawequal = rawequal,
    rawget = rawget, rawset = rawset, setmetatable = setmetatable, getmetatable = safe_getmetatable,
    _VERSION = _VERSION,
  },
  string = pick(string, { "byte", "char", "find", "format", "gmatch", "gsub", "len", "lower", "match", "rep",
                          "reverse", "sub", "upper" }),
  table = pick(table, { "concat", "insert", "maxn", "remove", "sort" }),
  math = pick(math, { "abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "cosh", "deg", "exp", "floor", "fmod",
                      "frexp", "huge", "ldexp", "log", "log10", "max", "min", "modf", "pi", "pow", "rad", "random",
                      "randomseed", "sin", "sinh", "sqrt", "tan", "tanh" }),
  bit = pick(bit, { "arshift", "band", "bnot", "bor", "bswap", "bxor", "lshift", "rol", "ror", "rshift", "tobit", "tohex" }),
  os = pick(os, { "time", "clock", "date", "difftime" }),
  coroutine = pick(coroutine, { "create", "running", "status", "wrap", "yield" }),
  modules = {
    ["vibex.json"] = { encode = json.encode_sorted, decode = json.decode, null = json.null },
    ["vibex.inspect"] = { inspect = inspect.inspect },
    ["vibex.log"] = pick(log, { "debug", "info", "warn", "error" }),
    ["vibex.ta"] = safe_ta.module,
  },
  -- what configs also get: env "NAME" makes a secret reference (and what a reference carries)
  config = { env = secret.ref, ref_meta = debug.getmetatable(secret.ref("ALLOWLIST")) },
  -- the runtime's own: the write guard of every read-only table
  internal = { refuse_write = refuse_write },
  -- what views carry (reached through their metatables)
  views = { series = safe_ta.View, candles = safe_ta.CandlesView, series_meta = safe_ta.view_metatable,
            candles_meta = safe_ta.candles_metatable },
}

M.PER_ENV = { "print", "require", "load", "loadstring", "pcall", "xpcall", "coroutine.resume" }

local LIB_NAMES = { "string", "table", "math", "bit", "os", "coroutine" }
local MODULE_NAMES = {}
for name in pairs(M.ALLOWLIST.modules) do MODULE_NAMES[#MODULE_NAMES + 1] = name end
table.sort(MODULE_NAMES)

local frozen_modules = {}
for name, t in pairs(M.ALLOWLIST.modules) do frozen_modules[name] = readonly(t, name) end

--- Build a sandbox environment.
--- opts.name: shown in print and errors; opts.extra: globals to add (data,
--- or functions the caller vouches for); opts.config: add the config globals.
---@param opts table|nil
---@return table env
function M.env(opts)
  opts = opts or {}
  local env = {}
  for k, v in pairs(M.ALLOWLIST.globals) do env[k] = v end
  for _, lib in ipairs(LIB_NAMES) do
    local t = {}
    for k, v in pairs(M.ALLOWLIST[lib]) do t[k] = v end
    if lib == "coroutine" then
      t.resume = function(...) return rethrow_if_tripped(coroutine.resume(...)) end
    end
    env[lib] = readonly(t, lib)
  end
  env.pcall = function(...) return rethrow_if_tripped(pcall(...)) end
  env.xpcall = function(f, handler, ...)
    -- once tripped the handler is not run again (an error inside a handler calls the handler)
    local function guarded(e)
      if tripped() then return e end
      return handler(e)
    end
    return rethrow_if_tripped(xpcall(f, guarded, ...))
  end
  if opts.config then
    env.env = M.ALLOWLIST.config.env
  end
  env._G = env
  env.require = function(name)
    local m = frozen_modules[name]
    if m then return m end
    error(("require '%s' is not allowed in %s (allowed: %s)")
      :format(tostring(name), opts.name or "a sandboxed script", table.concat(MODULE_NAMES, ", ")), 2)
  end
  env.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    log.info(table.concat(parts, "\t"), { script = opts.name })
  end
  env.load = function(chunk, chunkname, mode, fenv)
    if mode ~= nil and mode ~= "t" then return nil, "load: only text chunks are allowed in the sandbox" end
    if type(chunk) ~= "string" then return nil, "load: only strings can be loaded in the sandbox" end
    if fenv ~= nil and type(fenv) ~= "table" then return nil, "load: the environment must be a table" end
    local fn, err = load(chunk, type(chunkname) == "string" and chunkname or "=(load)", "t", fenv or env)
    return no_jit(fn), err
  end
  env.loadstring = function(s, chunkname) return env.load(s, chunkname, "t") end
  for k, v in pairs(opts.extra or {}) do env[k] = v end
  return env
end

--- Compile text into a function running in `env`. Never accepts bytecode;
-- the function and every function it defines run with the JIT off.
---@param source string
---@param chunkname string
---@param env table
---@return function|nil fn
---@return string|nil err
function M.compile(source, chunkname, env)
  if type(source) ~= "string" then return nil, "source must be a string" end
  if source:byte(1) == 27 then return nil, chunkname .. ": precompiled bytecode is not accepted" end
  local fn, err = load(source, chunkname, "t", env)
  return no_jit(fn), err
end

--- Values scripts may hand back besides plain data: views and secret refs.
---@param x any
---@return boolean
function M.opaque(x) return safe_ta.is_view(x) or secret.is_ref(x) end

return M
