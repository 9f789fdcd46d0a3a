--- vibex.config — load, validate, watch and read the vibex config.
--
-- A config is a Lua file returning a table, run in the sandbox (no I/O, no
-- os.execute, no os.getenv). Secrets are referenced by name with
-- `env "NAME"` and resolved from the process environment, then from the
-- `.env` file next to the config. VIBEX_ENV (or `--env`) picks the
-- environment: development (default), testing or production.
--
--   local snap, errors = config.load("examples/paper.lua")   -- errors: {{path=, message=}, …}
--   config.apply(snap)                                        -- becomes the current config
--   config.get("accounts.main.risk.max_leverage")             --> 3
--   config.subscribe("accounts.main.risk", function(new, old, version) … end)
--   config.watch("examples/paper.lua", {on_applied = fn, on_error = fn})
--
-- Reads are plain table lookups on the applied snapshot. The system vibex
-- grew from put a TTL cache in front of its config; an in-process table
-- needs none, so there is none.
local S = require "vibex.schema"
local schema = require "vibex.config_schema"
local secret = require "vibex.secret"
local sandbox = require "vibex.sandbox"
local runtime = require "vibex.runtime"
local crypto = require "vibex.core.crypto"
local log = require "vibex.log"

local M = {}

M.ENVIRONMENTS = schema.ENVIRONMENTS
M.MAX_VERSIONS = 100

-- the environment the command line chose (--env); the CLI sets it
local chosen_environment

--- Set the environment in force for this process (the CLI's --env); nil clears it.
---@param name string|nil development, testing or production
function M.set_environment(name) chosen_environment = name end

--- The environment in force: explicit name, else --env, else VIBEX_ENV, else development.
---@param name string|nil
---@return string
function M.environment(name)
  name = name or chosen_environment or os.getenv("VIBEX_ENV")
  if name == nil or name == "" then return "development" end
  return name
end

local function err(path, message) return { path = path or "", message = message } end

-- .env ---------------------------------------------------------------------------

--- Parse a .env file: NAME=value lines, `export` allowed, # comments,
--- "double quoted" (with \n, \", \\ escapes) or 'single quoted' values.
--- Returns map, errors.
---@param text string
---@param path string|nil names the file in errors
---@return table vars NAME -> value
---@return table errors {{path, message}, …}
function M.parse_dotenv(text, path)
  local vars, errors = {}, {}
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = line:gsub("\r$", "")
    local body = line:match("^%s*(.-)%s*$")
    if body ~= "" and body:sub(1, 1) ~= "#" then
      body = body:gsub("^export%s+", "")
      local name, rest = body:match("^([%a_][%w_]*)%s*=%s*(.*)$")
      if not name then
        errors[#errors + 1] = err(("%s:%d"):format(path, n), "expected NAME=value")
      else
        local value
        if rest:sub(1, 1) == '"' then
          local inner = rest:match('^"(.*)"%s*$') or rest:match('^"(.*)"%s+#.*$')
          if not inner then
            errors[#errors + 1] = err(("%s:%d"):format(path, n), ("unterminated double quote in %s"):format(name))
          else
            value = inner:gsub("\\(.)", { n = "\n", ['"'] = '"', ["\\"] = "\\", t = "\t" })
          end
        elseif rest:sub(1, 1) == "'" then
          value = rest:match("^'(.*)'%s*$") or rest:match("^'(.*)'%s+#.*$")
          if not value then errors[#errors + 1] = err(("%s:%d"):format(path, n), ("unterminated single quote in %s"):format(name)) end
        else
          value = rest:gsub("%s+#.*$", "")
        end
        if value then vars[name] = value end
      end
    end
  end
  return vars, errors
end

-- merging ------------------------------------------------------------------------

local function is_plain_table(v) return type(v) == "table" and getmetatable(v) == nil end

local function named_list(v)
  if not is_plain_table(v) or #v == 0 then return false end
  for _, item in ipairs(v) do
    if not is_plain_table(item) or type(item.name) ~= "string" then return false end
  end
  return true
end

--- Deep merge `over` onto `base` (new table; neither is changed). Tables
--- merge key by key; lists of named tables (accounts, providers) merge item
--- by item on `name`; any other list replaces the base list.
local function merge(base, over)
  if over == nil then return base end
  if not is_plain_table(base) or not is_plain_table(over) then return over end
  if named_list(base) and named_list(over) then
    local out, index = {}, {}
    for i, item in ipairs(base) do out[i] = item; index[item.name] = i end
    for _, item in ipairs(over) do
      local i = index[item.name]
      if i then out[i] = merge(out[i], item) else out[#out + 1] = item end
    end
    return out
  end
  if #over > 0 or #base > 0 then return over end
  local out = {}
  for k, v in pairs(base) do out[k] = v end
  for k, v in pairs(over) do out[k] = merge(out[k], v) end
  return out
end
M.merge = merge

-- canonical text, hashing, printing --------------------------------------------

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) and (type(a) == "string" or type(a) == "number") then return a < b end
    return type(a) < type(b)
  end)
  return keys
end

--- Stable text of a validated config, secrets as <secret NAME> (their
--- values never enter the hash, the versions list or any output).
local function canonical(v, out)
  local t = type(v)
  if t == "table" then
    if secret.is_secret(v) or secret.is_ref(v) then out[#out + 1] = tostring(v); return end
    out[#out + 1] = "{"
    for _, k in ipairs(sorted_keys(v)) do
      out[#out + 1] = ("%q="):format(tostring(k))
      canonical(v[k], out)
      out[#out + 1] = ","
    end
    out[#out + 1] = "}"
  elseif t == "string" then
    out[#out + 1] = ("%q"):format(v)
  else
    out[#out + 1] = tostring(v)
  end
end

--- A value as canonical text (keys sorted): equal values, equal text.
---@param v any
---@return string text
function M.canonical_text(v)
  local parts = {}
  canonical(v, parts)
  return table.concat(parts)
end

--- sha256 of a config's canonical text (stable across processes and key order).
---@param cfg table
---@return string sha256 hex
function M.hash(cfg) return crypto.sha256(M.canonical_text(cfg)) end

--- The effective config as readable Lua, secrets masked.
---@param cfg table
---@return string lua
function M.render(cfg)
  return require("vibex.inspect").inspect(cfg, { depth = 12 })
end

-- loading ----------------------------------------------------------------------

-- The config budget: VIBEX_CONFIG_BUDGET_MS / VIBEX_CONFIG_MEMORY_MB, else
-- sandbox.LIMITS.config (a config is evaluated before any config exists).
local function config_limits()
  local d = sandbox.LIMITS.config
  local ms = tonumber(os.getenv("VIBEX_CONFIG_BUDGET_MS") or "")
  local mb = tonumber(os.getenv("VIBEX_CONFIG_MEMORY_MB") or "")
  return { time_ms = ms and ms >= 10 and ms <= 600000 and ms or d.time_ms,
           memory_mb = mb and mb >= 4 and mb <= 8192 and mb or d.memory_mb, traceback = false }
end

--- Run the config chunk in the sandbox, under the config budget (a config
--- that loops forever or allocates without end must not freeze or sink the
--- runtime), and copy what it returned into plain data inside the same
--- budget: cycles, metatables, functions, odd keys and huge values are
--- errors with a path, and nothing of the config's code runs afterwards.
local function run_chunk(source, chunkname, envname)
  local env = sandbox.env { name = (chunkname:gsub("^@", "")), config = true, extra = { environment = envname } }
  local fn, cerr = sandbox.compile(source, chunkname, env)
  if not fn then return nil, cerr end
  local limits = config_limits()
  local ok, res, kind = sandbox.run(limits, function()
    local v = fn()
    local copy, path, msg = sandbox.plain(v, { keep = secret.is_ref, max_depth = 32, max_items = 200000,
                                                max_string = 1048576 })
    if path then return { bad_path = path, bad = msg } end
    return { value = copy }
  end)
  if not ok then
    if kind == "error" then return nil, tostring(res) end
    return nil, ("%s: the config %s"):format(chunkname:gsub("^@", ""), res)
  end
  if res.bad then return nil, nil, { path = res.bad_path, message = res.bad } end
  return res.value
end

local function check_environments(envs, errors)
  if envs == nil then return {} end
  if not is_plain_table(envs) then
    errors[#errors + 1] = err("environments", ("expected a table { production = { … } }, found %s"):format(S.describe(envs)))
    return {}
  end
  for k, v in pairs(envs) do
    local known = false
    for _, e in ipairs(M.ENVIRONMENTS) do if e == k then known = true end end
    if not known then
      local hint = S.suggest(k, M.ENVIRONMENTS)
      errors[#errors + 1] = err(S.join("environments", k), "unknown environment" ..
        (hint and (" (did you mean '%s'?)"):format(hint) or " (known: development, testing, production)"))
    elseif not is_plain_table(v) then
      errors[#errors + 1] = err(S.join("environments", k), ("expected a table of overrides, found %s"):format(S.describe(v)))
    end
  end
  return envs
end

local function sort_errors(errors)
  table.sort(errors, function(a, b)
    if a.path ~= b.path then return a.path < b.path end
    return a.message < b.message
  end)
  return errors
end

local function check_environment_name(envname)
  for _, e in ipairs(M.ENVIRONMENTS) do if e == envname then return nil end end
  local hint = S.suggest(envname, M.ENVIRONMENTS)
  return { err("", ("unknown environment %q (VIBEX_ENV or --env): expected development, testing or production%s")
    :format(tostring(envname), hint and (" (did you mean %q?)"):format(hint) or "")) }
end

--- Build a snapshot from the table a config returned (merging environment
--- defaults and overrides, validating, resolving secrets). Same opts as
--- load_string. Returns snapshot | nil, errors.
---@param raw table
---@param opts table|nil environment, path
---@return table|nil snapshot
---@return table|nil errors
function M.from_table(raw, opts)
  opts = opts or {}
  local envname = M.environment(opts.environment)
  local bad_env = check_environment_name(envname)
  if bad_env then return nil, bad_env end
  if not is_plain_table(raw) then
    return nil, { err("", ("a config must return a table, found %s"):format(S.describe(raw))) }
  end
  local errors = {}
  local envs = check_environments(raw.environments, errors)
  local base = {}
  for k, v in pairs(raw) do if k ~= "environments" then base[k] = v end end
  local merged = merge(merge(schema.ENV_DEFAULTS[envname], base), envs[envname])
  local dotenv = opts.dotenv or {}
  local getenv = opts.getenv or os.getenv
  local cfg, verrors = S.validate(schema.config, merged, { data = {
    environment = envname,
    lookup_secret = function(name)
      local v = getenv(name)
      if v ~= nil and v ~= "" then return v end
      return dotenv[name], opts.dotenv_path
    end,
    -- experiments name scripts: they must exist where the runtime looks for them
    script_exists = opts.script_exists or function(name, dir)
      return runtime.stat((dir or (runtime.home() .. "/scripts")) .. "/" .. name .. ".lua") ~= nil
    end,
  } })
  for _, e in ipairs(verrors) do errors[#errors + 1] = e end
  if #errors > 0 then return nil, sort_errors(errors) end
  return {
    config = cfg,
    hash = M.hash(cfg),
    environment = envname,
    path = opts.path or "config",
    loaded_at = runtime.wall_ms(),
  }
end

--- Build a snapshot from config source text.
--- opts: environment, path (for messages), dotenv (map), dotenv_path,
--- getenv (function; default os.getenv). Returns snapshot | nil, errors.
---@param source string
---@param opts table|nil
---@return table|nil snapshot
---@return table|nil errors
function M.load_string(source, opts)
  opts = opts or {}
  local envname = M.environment(opts.environment)
  local bad_env = check_environment_name(envname)
  if bad_env then return nil, bad_env end
  local raw, rerr, bad = run_chunk(source, "@" .. (opts.path or "config"), envname)
  if rerr then return nil, { err("", rerr) } end
  if bad then return nil, { err(bad.path, bad.message) } end
  -- a caller's changes to the file's table (vibex backtest --set), validated with it
  if opts.transform and type(raw) == "table" then raw = opts.transform(raw) or raw end
  return M.from_table(raw, opts)
end

--- Load a config file (and the .env beside it). Returns snapshot | nil, errors.
---@param path string
---@param opts table|nil environment
---@return table|nil snapshot
---@return table|nil errors
function M.load(path, opts)
  opts = opts or {}
  local source, rerr = runtime.read_file(path)
  if not source then
    return nil, { err("", ("cannot read config %s: %s"):format(path, tostring(rerr))) }
  end
  local dotenv_path = runtime.dirname(path) .. "/.env"
  local dotenv, derrors = {}, {}
  local dsource = runtime.read_file(dotenv_path) -- nil when there is no .env
  if dsource then dotenv, derrors = M.parse_dotenv(dsource, dotenv_path) end
  local snap, errors = M.load_string(source, {
    environment = opts.environment, path = path, dotenv = dotenv, transform = opts.transform,
    dotenv_path = dotenv_path, getenv = opts.getenv,
  })
  if #derrors > 0 then
    errors = errors or {}
    for _, e in ipairs(derrors) do table.insert(errors, 1, e) end
    return nil, errors
  end
  if not snap then return nil, errors end
  snap.source_hash = crypto.sha256(source)
  return snap
end

--- Format errors for a person: one "path: message" line each, prefixed by file.
--- sep (default ": ") goes between path and message; logs use " -> ",
--- because the redactor masks whatever follows "api_key: " in a log line.
---@param errors table {{path, message}, …}
---@param file string|nil
---@param sep string|nil
---@return string text
function M.format_errors(errors, file, sep)
  sep = sep or ": "
  local lines = {}
  for i, e in ipairs(errors) do
    local where = e.path ~= "" and e.path or nil
    if file and where and not where:find(":%d+$") then where = file .. ": " .. where end
    lines[i] = where and (where .. sep .. e.message) or ((file and not e.message:find(file, 1, true)) and (file .. ": " .. e.message) or e.message)
  end
  return table.concat(lines, "\n")
end

-- the store: the applied config, versions, subscriptions ---------------------

local Store = {}
Store.__index = Store

--- A store holds one applied config. The module functions use a default
--- store; a second runtime (or a test) can make its own.
---@return table store
function M.store()
  return setmetatable({ current = nil, versions = {}, subs = {}, next_version = 1 }, Store)
end

local function split_path(path)
  local parts = {}
  for p in tostring(path):gmatch("[^%.]+") do parts[#parts + 1] = p end
  return parts
end

--- Look up a dotted path in a config table; list items are addressed by
--- `name` (accounts.main) or by index (accounts.1).
local function lookup(root, path)
  local node = root
  for _, key in ipairs(split_path(path)) do
    if type(node) ~= "table" or secret.is_secret(node) then return nil end
    local v = node[key]
    if v == nil then
      local idx = tonumber(key)
      if idx then
        v = node[idx]
      elseif #node > 0 then
        for _, item in ipairs(node) do
          if type(item) == "table" and item.name == key then v = item; break end
        end
      end
    end
    node = v
  end
  return node
end
M.lookup = lookup

local function deep_equal(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  if secret.is_secret(a) or secret.is_secret(b) then return secret.same(a, b) end
  for k, v in pairs(a) do if not deep_equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
M.deep_equal = deep_equal

function Store:get(path)
  if not self.current then return nil end
  if path == nil or path == "" then return self.current.config end
  return lookup(self.current.config, path)
end

--- fn(new, old, version) runs after a config is applied whose subtree at
--- `prefix` differs from the previous one. Returns a function that unsubscribes.
function Store:subscribe(prefix, fn)
  if type(fn) ~= "function" then error("config.subscribe(prefix, fn): fn must be a function", 2) end
  local sub = { prefix = prefix or "", fn = fn }
  self.subs[#self.subs + 1] = sub
  return function()
    for i, s in ipairs(self.subs) do if s == sub then table.remove(self.subs, i); return end end
  end
end

--- Make a snapshot the current config. Returns its version record; when
--- the hash equals the current one nothing changes (returns nil, "unchanged").
function Store:apply(snap)
  local old = self.current
  -- the hash names secrets without their values, so a rotated key in .env
  -- keeps the hash: compare the values too, or the new key would be ignored
  if old and old.hash == snap.hash and old.environment == snap.environment
     and deep_equal(old.config, snap.config) then
    return nil, "unchanged"
  end
  snap.version = self.next_version
  snap.applied_at = runtime.wall_ms()
  self.next_version = self.next_version + 1
  self.current = snap
  local rec = { version = snap.version, hash = snap.hash, applied_at = snap.applied_at,
                path = snap.path, environment = snap.environment }
  self.versions[#self.versions + 1] = rec
  if #self.versions > M.MAX_VERSIONS then table.remove(self.versions, 1) end
  for _, sub in ipairs({ unpack(self.subs) }) do
    local new_v = lookup(snap.config, sub.prefix)
    local old_v = old and lookup(old.config, sub.prefix)
    if not deep_equal(new_v, old_v) then
      local ok, e = pcall(sub.fn, new_v, old_v, snap.version)
      if not ok then log.error("config subscriber failed", { prefix = sub.prefix, err = tostring(e) }) end
    end
  end
  return rec
end

function Store:version() return self.current and self.current.version end
function Store:snapshot() return self.current end
function Store:list_versions()
  local out = {}
  for i, v in ipairs(self.versions) do out[i] = v end
  return out
end

--- Watch a config file (and its .env): each change is loaded and
--- validated; a valid one is applied, an invalid one is logged (channel
--- app) and the running config stays. opts: environment, on_applied(snap,
--- old), on_error(errors), debounce_ms. Returns a handle with :close().
function Store:watch(path, opts)
  opts = opts or {}
  local fswatch = require "vibex.fswatch"
  local dir, base = runtime.dirname(path), runtime.basename(path)
  local store = self
  local function reload(reason)
    local t0 = runtime.wall_ms()
    local snap, errors = M.load(path, { environment = opts.environment })
    if not snap then
      local msg = runtime.exists(path) and "config change rejected; keeping the running config"
        or "config file is gone; keeping the running config"
      log.error(msg, { file = path, version = store:version(), errors = M.format_errors(errors, nil, " -> ") })
      if opts.on_error then opts.on_error(errors) end
      return
    end
    local old = store.current
    local rec = store:apply(snap)
    if not rec then
      log.debug("config file touched, content unchanged", { file = path, reason = reason })
      return
    end
    log.info("config applied", { file = path, version = rec.version, hash = rec.hash:sub(1, 12),
                                 ms = runtime.wall_ms() - t0 })
    if opts.on_applied then opts.on_applied(snap, old) end
  end
  local w = fswatch.watch(dir, function(names)
    for _, n in ipairs(names) do
      if n == base or n == ".env" or n == "*" then return reload(n) end
    end
  end, opts.debounce_ms or 20)
  return { close = function() w:close() end, reload = reload }
end

-- the default store ------------------------------------------------------------

local default = M.store()
M.default = default
--- The value at a dotted path of the process's config ("risk.max_leverage").
---@param path string
---@return any value
function M.get(path) return default:get(path) end
--- Call fn(new, old, path) when a value under prefix changes; returns an unsubscribe function.
---@param prefix string
---@param fn function
---@return function unsubscribe
function M.subscribe(prefix, fn) return default:subscribe(prefix, fn) end
--- Make a loaded snapshot the process's config (subscribers are told what changed).
---@param snap table
---@return integer version
function M.apply(snap) return default:apply(snap) end
--- The version number of the config in force.
---@return integer version
function M.version() return default:version() end
--- The snapshot in force: {config, hash, version, environment, …}.
---@return table|nil snapshot
function M.snapshot() return default:snapshot() end
--- The versions applied in this process, oldest first.
---@return table versions
function M.versions() return default:list_versions() end
--- Reload the config file when it changes (validated first; a bad edit is refused and logged).
---@param path string
---@param opts table|nil
---@return table watch
function M.watch(path, opts) return default:watch(path, opts) end

return M
