--- vibex.scripts — hot-reloaded strategy scripts.
--
--   local reg = scripts.registry{dir = "scripts",
--                                exports = {prompt = {"render"}, policy = {"decide"}}}
--   reg:load_all()                       -- errors are logged and returned
--   reg:watch()                          -- reload on change (editor-safe)
--   local messages = reg:call("prompt", "render", ctx)
--
-- Each script is a Lua file returning a table of functions, run in the
-- sandbox (vibex.sandbox). A change is compiled and checked (syntax, and
-- that it exports the functions it must) before it replaces the running
-- version; a script that fails keeps the previous version running and the
-- reason is logged with file and line. Callers look the module up at call
-- time (reg:get / reg:call), so the next use after a reload runs the new
-- code while a call already running finishes on the old one. State that
-- must survive a reload belongs in the `state` table each script sees as a
-- global: it is owned by the registry, not by the script.
local sandbox = require "vibex.sandbox"
local runtime = require "vibex.runtime"
local fswatch = require "vibex.fswatch"
local log = require "vibex.log"

local M = {}

local Registry = {}
Registry.__index = Registry

function M.registry(opts)
  opts = opts or {}
  if type(opts.dir) ~= "string" then error("scripts.registry{dir = …}: dir is required", 2) end
  return setmetatable({
    dir = opts.dir:gsub("/+$", ""),
    exports = opts.exports or {},
    extra = opts.extra or {},
    allow = opts.allow or {},
    entries = {},     -- name -> {module, version, path, loaded_at, source_hash}
    states = {},      -- name -> state table (survives reloads)
    errors = {},      -- name -> last error (nil when the current file loaded)
    listeners = {},
    reloads = 0,
  }, Registry)
end

local function hash(s)
  local h = 5381
  for i = 1, #s do h = (h * 33 + s:byte(i)) % 4294967296 end
  return ("%08x"):format(h)
end

--- Compile and check one script. Returns the module, or nil and a message
--- naming file and line.
function Registry:compile(name, source, path)
  local state = self.states[name]
  if not state then state = {}; self.states[name] = state end
  local extra = { state = state, script_name = name }
  for k, v in pairs(self.extra) do extra[k] = v end
  local env = sandbox.env { name = path, extra = extra, allow = self.allow }
  local fn, err = sandbox.compile(source, "@" .. path, env)
  if not fn then return nil, err end
  local ok, mod = xpcall(fn, debug.traceback)
  if not ok then return nil, tostring(mod) end
  if type(mod) ~= "table" then
    return nil, ("%s: must return a table of functions, returned %s"):format(path, type(mod))
  end
  for _, fname in ipairs(self.exports[name] or {}) do
    if type(mod[fname]) ~= "function" then
      return nil, ("%s: must export a function '%s' (found %s)"):format(path, fname, type(mod[fname]))
    end
  end
  return mod
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
  local entry = { module = mod, version = (old and old.version or 0) + 1, path = path,
                  loaded_at = runtime.wall_ms(), source_hash = h }
  self.entries[name] = entry
  self.errors[name] = nil
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

--- Call script `name`'s function `fname` with the arguments; the module is
--- looked up now, so a reload between calls takes effect at the next call.
function Registry:call(name, fname, ...)
  local e = self.entries[name]
  if not e then error(("script '%s' is not loaded%s"):format(name, self.errors[name] and (": " .. self.errors[name]) or ""), 2) end
  local fn = e.module[fname]
  if type(fn) ~= "function" then error(("script '%s' has no function '%s'"):format(name, fname), 2) end
  return fn(...)
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
