--- vibex.scripts — hot-reloaded strategy scripts.
--
--   local reg = scripts.registry{dir = "scripts",
--                                exports = {prompt = {render = 2}, policy = {plan = 3}}}
--   reg:load_all()                       -- errors are logged and returned
--   reg:watch()                          -- reload on change (editor-safe)
--   local messages = reg:call("prompt", "render", ctx)
--
-- Each script is a Lua file returning a table of functions, run in the
-- sandbox (vibex.sandbox). A change is compiled, run under the script
-- budget and checked (syntax, that it returns a table, and that it exports
-- the functions its role needs, taking no more arguments than the runtime
-- passes) before it replaces the running version; a script that fails
-- keeps the previous version running and the reason is logged with file
-- and line. Callers look the module up at call time (reg:get / reg:call),
-- so the next use after a reload runs the new code while a call already
-- running finishes on the old one. State that must survive a reload
-- belongs in the `state` table each script sees as a global: it is owned
-- by the registry, not by the script.
--
-- Every call runs under the budget (vibex.sandbox.run) and hands back plain
-- data. A call that fails: when the version that failed never completed a
-- call and an earlier version did, that earlier version is put back; after
-- max_failures failures in a row the script is disabled (reg:call raises,
-- reg:disabled(name) says why) until its file changes.
local sandbox = require "vibex.sandbox"
local runtime = require "vibex.runtime"
local fswatch = require "vibex.fswatch"
local log = require "vibex.log"

local M = {}

local Registry = {}
Registry.__index = Registry

-- {fname = arity} from {fname = arity} or {"fname", …} (arity unknown: any)
local function normalise_exports(exports)
  local out = {}
  for name, fns in pairs(exports or {}) do
    local t = {}
    for k, v in pairs(fns) do
      if type(k) == "number" then t[v] = t[v] or false else t[k] = v end
    end
    out[name] = t
  end
  return out
end

--- A registry of strategy scripts in opts.dir, compiled into sandboxes and reloaded when they change
--- (opts: dir, exports, limits, max_failures).
---@param opts table dir, exports, limits, max_failures
---@return table registry
function M.registry(opts)
  opts = opts or {}
  if type(opts.dir) ~= "string" then error("scripts.registry{dir = …}: dir is required", 2) end
  return setmetatable({
    dir = opts.dir:gsub("/+$", ""),
    exports = normalise_exports(opts.exports),
    extra = opts.extra or {},
    limits = opts.limits or sandbox.LIMITS.script,
    max_failures = opts.max_failures or 3,
    entries = {},     -- name -> {module, version, path, loaded_at, source_hash, good}
    good = {},        -- name -> the newest entry that completed a call
    failures = {},    -- name -> failures in a row
    version_seq = {}, -- name -> the newest version number given
    disabled_why = {}, -- name -> why the script is disabled
    states = {},      -- name -> state table (survives reloads)
    errors = {},      -- name -> last error (nil when the current file loaded)
    listeners = {},
    reloads = 0,
  }, Registry)
end

--- What each script must export: {name = {fname = arity}}. Scripts already
-- loaded are checked again at their next reload.
function Registry:set_exports(exports) self.exports = normalise_exports(exports) end

--- Budgets for calls from now on: {time_ms, memory_mb}, max_failures.
function Registry:set_limits(limits, max_failures)
  if limits then self.limits = limits end
  if max_failures then self.max_failures = max_failures end
end

local function hash(s)
  local h = 5381
  for i = 1, #s do h = (h * 33 + s:byte(i)) % 4294967296 end
  return ("%08x"):format(h)
end

-- a function's declared arity against what the runtime passes
local function arity_problem(fn, fname, arity)
  if not arity then return nil end
  local info = debug.getinfo(fn, "u")
  if not info or info.isvararg or not info.nparams then return nil end
  if info.nparams > arity then
    return ("'%s' takes %d arguments but is called with %d"):format(fname, info.nparams, arity)
  end
end

--- Compile and check one script. Returns the module, or nil and a message
--- naming file and line.
function Registry:compile(name, source, path)
  local state = self.states[name]
  if not state then state = {}; self.states[name] = state end
  local extra = { state = state, script_name = name }
  for k, v in pairs(self.extra) do extra[k] = v end
  local env = sandbox.env { name = path, extra = extra }
  local fn, err = sandbox.compile(source, "@" .. path, env)
  if not fn then return nil, err end
  -- loading gets five times a call's time: it runs once per edit, and a
  -- busy machine must not refuse a good file
  local load_limits = { time_ms = self.limits.time_ms * 5, memory_mb = self.limits.memory_mb }
  local ok, mod, kind = sandbox.run(load_limits, fn)
  if not ok then
    if kind ~= "error" then return nil, ("%s: loading it %s"):format(path, mod) end
    return nil, tostring(mod)
  end
  if type(mod) ~= "table" or debug.getmetatable(mod) ~= nil then
    return nil, ("%s: must return a plain table of functions, returned %s"):format(path,
      type(mod) == "table" and "a table with a metatable" or type(mod))
  end
  local want = self.exports[name] or {}
  local names = {}
  for fname in pairs(want) do names[#names + 1] = fname end
  table.sort(names)
  for _, fname in ipairs(names) do
    local f = rawget(mod, fname)
    if type(f) ~= "function" then
      return nil, ("%s: must export a function '%s' (found %s)"):format(path, fname, type(f))
    end
    local bad = arity_problem(f, fname, want[fname])
    if bad then return nil, ("%s: %s"):format(path, bad) end
  end
  local copy = {}
  for k, v in next, mod do copy[k] = v end -- raw: no metamethod of the script's runs later
  return copy
end

local function notify(self, name, entry, err)
  for _, fn in ipairs(self.listeners) do
    local ok, lerr = pcall(fn, name, entry, err)
    if not ok then log.error("scripts: reload listener failed: " .. tostring(lerr)) end
  end
end

--- (Re)load one script from its file. Returns true, or nil and the error
--- (the previous version, if any, stays in place).
function Registry:reload(name)
  local path = self.dir .. "/" .. name .. ".lua"
  local source, rerr = runtime.read_file(path)
  local old = self.entries[name]
  if not source then
    local msg = ("%s: cannot read (%s)%s"):format(path, tostring(rerr), old and "; keeping the loaded version" or "")
    self.errors[name] = msg
    log.warn("script not reloaded: " .. msg, { script = name })
    notify(self, name, nil, msg)
    return nil, msg
  end
  local h = hash(source)
  if old and old.source_hash == h then return true end -- touched, not changed
  local mod, err = self:compile(name, source, path)
  if not mod then
    self.errors[name] = err
    log.error("script not reloaded, " .. (old and ("keeping version " .. old.version) or "no version loaded") .. ": " .. err,
      { script = name, path = path })
    notify(self, name, nil, err)
    return nil, err
  end
  local entry = { module = mod, version = (self.version_seq[name] or 0) + 1, path = path,
                  loaded_at = runtime.wall_ms(), source_hash = h }
  self.version_seq[name] = entry.version
  self.entries[name] = entry
  self.errors[name] = nil
  self.disabled_why[name], self.failures[name] = nil, 0
  self.reloads = self.reloads + 1
  log.info(("script %s loaded (version %d)"):format(name, entry.version), { script = name, path = path, hash = h })
  notify(self, name, entry, nil)
  return true
end

--- Load every *.lua file in the directory. Returns the number loaded and a
--- list of errors.
function Registry:load_all()
  local names, err = runtime.listdir(self.dir)
  if not names then return 0, { err } end
  table.sort(names)
  local n, errs = 0, {}
  for _, file in ipairs(names) do
    local name = file:match("^([%w_%-]+)%.lua$")
    if name then
      local ok, e = self:reload(name)
      if ok then n = n + 1 else errs[#errs + 1] = e end
    end
  end
  return n, errs
end

--- The current module of a script (nil if never loaded).
function Registry:get(name)
  local e = self.entries[name]
  return e and e.module
end

function Registry:version(name)
  local e = self.entries[name]
  return e and e.version
end

-- What a script returns is checked to be plain data and handed on as it
-- is, not copied (a copy of a context is ~1,000 values each cycle): a
-- script that keeps a table it returned and changes it at its next call
-- changes what the runtime holds of the earlier call.
local PLAIN_RESULT = { keep = sandbox.opaque, root = "result", copy = false }

local function plain_results(...)
  local n = select("#", ...)
  local out = { ... }
  for i = 1, n do
    local c, path, msg = sandbox.plain(out[i], PLAIN_RESULT)
    if path then error(("returned %s at %s"):format(msg, path), 0) end
    out[i] = c
  end
  return unpack(out, 1, n)
end

--- Why a script is disabled (nil when it is not).
function Registry:disabled(name) return self.disabled_why[name] end

-- a call failed: count it, put the last good version back, disable at the limit
function Registry:failed(name, e, msg)
  local n = (self.failures[name] or 0) + 1
  self.failures[name] = n
  local good = self.good[name]
  local reverted
  if good and good ~= e then
    self.entries[name] = good
    reverted = good.version
  end
  if n >= self.max_failures and not reverted then
    self.disabled_why[name] = ("%d failures in a row, the last: %s"):format(n, msg)
    log.error(("script %s disabled after %d failures in a row; it runs again when its file changes: %s")
      :format(name, n, msg), { script = name, path = e.path, version = e.version })
  else
    log.error(("script %s failed%s: %s"):format(name,
      reverted and (" (version %d put back, the last to complete a call)"):format(reverted) or
        (" (%d of %d before it is disabled)"):format(n, self.max_failures), msg),
      { script = name, path = e.path, version = e.version })
  end
  return reverted
end

--- Call script `name`'s function `fname` with the arguments, under the
--- budget; the module is looked up now, so a reload between calls takes
--- effect at the next call. Returns the results as plain data; raises a
--- message naming the script when the call fails or the script is disabled.
function Registry:call(name, fname, ...)
  local e = self.entries[name]
  if not e then error(("script '%s' is not loaded%s"):format(name, self.errors[name] and (": " .. self.errors[name]) or ""), 2) end
  if self.disabled_why[name] then
    error(("script '%s' is disabled (%s); fix %s and save it"):format(name, self.disabled_why[name], e.path), 0)
  end
  local fn = e.module[fname]
  if type(fn) ~= "function" then error(("script '%s' has no function '%s'"):format(name, fname), 2) end
  local res = { sandbox.run(self.limits, function(...) return plain_results(fn(...)) end, ...) }
  if not res[1] then
    local msg = ("%s: %s %s"):format(e.path, fname, res[3] == "error" and ("failed: " .. tostring(res[2])) or res[2])
    local reverted = self:failed(name, e, msg)
    if reverted then msg = msg .. (" (version %d put back)"):format(reverted) end
    error(msg, 0)
  end
  self.failures[name] = 0
  self.good[name] = e
  return unpack(res, 2, table.maxn(res))
end

--- fn(name, entry_or_nil, err_or_nil) after every reload attempt.
function Registry:on_reload(fn) self.listeners[#self.listeners + 1] = fn end

--- Watch the directory and reload changed scripts.
function Registry:watch(debounce_ms)
  if self.watcher then return self.watcher end
  local w, err = fswatch.watch(self.dir, function(names)
    for _, file in ipairs(names) do
      if file == "*" then self:load_all(); break end
      local name = file:match("^([%w_%-]+)%.lua$")
      if name then self:reload(name) end
    end
  end, debounce_ms or 20)
  if not w then return nil, err end
  self.watcher = w
  return w
end

function Registry:close()
  if self.watcher then self.watcher:close(); self.watcher = nil end
end

return M
