--- vibex.cli — the command line. `vibex --help` lists the commands.
local runtime = require "vibex.runtime"

local M = {}

local USAGE = [[
usage: vibex [--env ENV] COMMAND [ARGS...]

  vibex FILE.lua [ARGS...]   run a script on the loop; exit when its tasks are done
  vibex -e 'CODE' [ARGS...]  run a chunk of Lua
  vibex repl                 interactive prompt on the loop (line editing, history, completion)
  vibex test [PATHS...]      run busted specs inside the runtime (default: tests/spec)
  vibex run CONFIG           run the configured accounts until SIGINT/SIGTERM
  vibex check CONFIG         validate a config; print the effective config (secrets masked)
  vibex status [CONFIG] [--json]
                             what a running (or the last) `vibex run` of CONFIG is doing: each
                             account's state (running, starting, failed with the reason and the
                             fix), decisions, reconciliation, market data (exit 3 if one failed)
  vibex migrate [status|up|up --dry-run] [CONFIG]
                             database migrations (migrations/NNNN_name.sql); the database is
                             the config's database.url, or the local one under data_dir/pg
  vibex ab report [EXPERIMENT] [CONFIG] [--json|--csv] [--chart FILE.svg] [--version N]
                             outcomes per variant with confidence intervals and a verdict
                             (no EXPERIMENT: the experiments the database knows)
  vibex llm stats [CONFIG] [--json]
                             model calls per provider, model and variant: errors, latency,
                             tokens, cost
  vibex --version            print versions
  vibex --help               this text

Options:
  --env ENV                  development, testing or production (default: $VIBEX_ENV or development)

Environment:
  VIBEX_HOME                 where stdlib/ and scripts/ live (default: next to the binary)
]]

M.commands = {}

local function fail(msg)
  io.stderr:write("vibex: ", msg, "\n")
  return 2
end
M.fail = fail

local CANCELLED = {}
local function traceback_handler(err)
  if require("vibex.task").is_cancelled(err) then return CANCELLED end
  if type(err) ~= "string" then err = tostring(err) end
  return debug.traceback(err, 2)
end

--- Run a loaded chunk in the current (main) task; 0, or 1 after printing the error.
local function run_chunk(fn, ...)
  require("vibex.prelude").install()
  local ok, err = xpcall(fn, traceback_handler, ...)
  if not ok and err == CANCELLED then
    return runtime.shutting_down() and 0 or 1 -- stopped by SIGINT/SIGTERM: a clean exit
  end
  if not ok then
    -- drop the frames of this runner from the traceback
    err = err:gsub("\n%s*%[C%]: in function 'xpcall'.*$", "")
    io.stderr:write("vibex: ", err, "\n")
    return 1
  end
  return 0
end

local function set_arg(script, first, ...)
  local a = { [0] = script }
  for i = 1, select("#", ...) do a[i] = select(i, ...) end
  _G.arg = a
  return a
end

M.commands["-e"] = function(code, ...)
  if code == nil then return fail("-e needs a chunk of Lua code (vibex -e 'print(1)')") end
  local fn, err = load(code, "=(command line)", "t")
  if not fn then return fail(err) end
  set_arg("-e", nil, ...)
  return run_chunk(fn, ...)
end

M.commands.repl = function(...)
  if select("#", ...) > 0 then return fail("repl takes no arguments") end
  return require("vibex.repl").run()
end

M.commands.test = function(...)
  return require("vibex.testing").run({ ... })
end

M.commands.check = function(path, ...)
  if not path then return fail("check needs a config file (vibex check examples/paper.lua)") end
  if select("#", ...) > 0 then return fail("check takes one config file, got extra arguments") end
  local config = require "vibex.config"
  local snap, errors = config.load(path)
  if not snap then
    io.stderr:write(config.format_errors(errors, path), "\n")
    io.stderr:write(("vibex: %s: %d error%s (environment %s)\n"):format(path, #errors, #errors == 1 and "" or "s", config.environment()))
    return 2
  end
  io.stdout:write(("-- %s: valid for environment %s, hash %s\n"):format(path, snap.environment, snap.hash))
  io.stdout:write("return ", config.render(snap.config), "\n")
  return 0
end

M.commands.run = function(config, ...)
  if not config then return fail("run needs a config file (vibex run examples/paper.lua)") end
  if select("#", ...) > 0 then return fail("run takes one config file, got extra arguments") end
  if not runtime.stat(config) then return fail(("cannot open %s: No such file or directory"):format(config)) end
  return require("vibex.app").run(config)
end

--- vibex status [CONFIG] [--json]: the run's state file, readable.
M.commands.status = function(...)
  local path, as_json = nil, false
  for _, a in ipairs { ... } do
    if a == "--json" then as_json = true
    elseif a:sub(1, 1) == "-" then return fail(("status: unknown option '%s'"):format(a))
    elseif not path then path = a
    else return fail("status takes one config file, got more") end
  end
  local data_dir = "data"
  if path then
    local config = require "vibex.config"
    local snap, errors = config.load(path)
    if not snap then
      io.stderr:write(config.format_errors(errors, path), "\n")
      return 2
    end
    data_dir = snap.config.runtime.data_dir
  end
  local file = data_dir .. "/state.json"
  local text = runtime.read_file(file)
  if not text then return fail(("status: no run state in %s (has `vibex run%s` started?)"):format(file, path and (" " .. path) or "")) end
  if as_json then
    io.stdout:write(text, "\n")
  else
    io.stdout:write(require("vibex.status").render(require("vibex.json").decode(text) or {}, file), "\n")
  end
  local st = require("vibex.json").decode(text) or {}
  for _, a in pairs(st.accounts or {}) do if a.status == "failed" then return 3 end end
  return 0
end

-- The database of a config (its database.url, or the local one under its
-- data_dir), or the default local one without a config: handle | nil, exit code.
local function open_db(path, prefix)
  local o = {}
  if path then
    local config = require "vibex.config"
    local snap, errors = config.load(path)
    if not snap then
      io.stderr:write(config.format_errors(errors, path), "\n")
      return nil, 2
    end
    o.url, o.data_dir = snap.config.database.url, snap.config.runtime.data_dir
  end
  local h, err = require("vibex.db").open(o)
  if not h then return nil, fail((prefix or "") .. tostring(err)) end
  return h
end

--- vibex ab report [EXPERIMENT] [CONFIG] [--json|--csv] [--chart FILE] [--version N]
M.commands.ab = function(sub, ...)
  if sub ~= "report" then return fail("ab: the command is `vibex ab report [EXPERIMENT] [CONFIG] [--json|--csv] [--chart FILE.svg]`") end
  local args, o, name, path = { ... }, { format = "text" }, nil, nil
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--json" then o.format = "json"
    elseif a == "--csv" then o.format = "csv"
    elseif a == "--chart" then i = i + 1; o.chart = args[i]; if not o.chart then return fail("ab report: --chart needs a file name") end
    elseif a == "--version" then i = i + 1; o.version = tonumber(args[i]); if not o.version then return fail("ab report: --version needs a number") end
    elseif a:sub(1, 1) == "-" then return fail(("ab report: unknown option '%s'"):format(a))
    elseif a:match("%.lua$") then path = a
    elseif not name then name = a
    else return fail("ab report: one experiment at a time") end
    i = i + 1
  end
  local h, code = open_db(path)
  if not h then return code end
  local report = require "vibex.ab.report"
  local rc = 0
  if not name then
    local rows, err = report.list(h.pool)
    if not rows then rc = fail("ab report: " .. tostring(err))
    elseif #rows == 0 then io.stdout:write("no experiments in the database yet\n")
    else
      for _, r in ipairs(rows) do io.stdout:write(("%-24s version %d (%d versions)\n"):format(r.name, r.latest, r.versions)) end
    end
  else
    local r, err = report.build(h.pool, name, { version = o.version })
    if not r then
      rc = fail("ab report: " .. tostring(err))
    else
      if o.format == "json" then io.stdout:write(require("vibex.json").encode(report.data(r)), "\n")
      elseif o.format == "csv" then io.stdout:write(report.csv(r))
      else io.stdout:write(report.text(r), "\n") end
      if o.chart then
        local ok, werr = runtime.write_file(o.chart, report.svg(r))
        if not ok then rc = fail(("ab report: cannot write %s: %s"):format(o.chart, tostring(werr))) end
      end
    end
  end
  h.close()
  return rc
end

--- vibex llm stats [CONFIG] [--json]
M.commands.llm = function(sub, ...)
  if sub ~= "stats" then return fail("llm: the command is `vibex llm stats [CONFIG] [--json]`") end
  local as_json, path = false, nil
  for _, a in ipairs { ... } do
    if a == "--json" then as_json = true
    elseif a:sub(1, 1) == "-" then return fail(("llm stats: unknown option '%s'"):format(a))
    else path = a end
  end
  local h, code = open_db(path)
  if not h then return code end
  local rows, err = require("vibex.llm.stats").summary(h.pool)
  h.close()
  if not rows then return fail("llm stats: " .. tostring(err)) end
  if as_json then
    io.stdout:write(require("vibex.json").encode(rows), "\n")
  else
    io.stdout:write(require("vibex.llm.stats").text(rows), "\n")
  end
  return 0
end

--- vibex migrate [status|up] [--dry-run] [CONFIG]
M.commands.migrate = function(...)
  local action, path, dry = "status", nil, false
  for _, a in ipairs { ... } do
    if a == "status" or a == "up" then action = a
    elseif a == "--dry-run" then dry = true
    elseif a:sub(1, 1) == "-" then return fail(("migrate: unknown option '%s'"):format(a))
    elseif not path then path = a
    else return fail("migrate takes one config file, got more") end
  end
  local migrate = require "vibex.db.migrate"
  local h, open_code = open_db(path, "migrate: ")
  if not h then return open_code end
  local code = 0
  if action == "status" then
    local st, serr = migrate.status(h.pool)
    if not st then
      code = fail("migrate: " .. require("vibex.errors").message(serr))
    else
      io.stdout:write(("database %s\n"):format(h.describe))
      for _, s in ipairs(st) do
        local at = s.applied_at and os.date("!%Y-%m-%d %H:%M:%SZ", math.floor(s.applied_at / 1000)) or ""
        io.stdout:write(("  %04d  %-28s %-8s %s\n"):format(s.version, s.name, s.state, at))
        if s.state == "changed" then code = 2 end
      end
      local ok, why = migrate.check(h.pool, nil, "vibex migrate up" .. (path and " " .. path or ""))
      io.stdout:write(ok and "up to date\n" or (require("vibex.errors").message(why) .. "\n"))
    end
  else
    local done, uerr = migrate.up(h.pool, nil, { dry_run = dry })
    if not done then
      code = fail("migrate: " .. require("vibex.errors").message(uerr))
    elseif #done == 0 then
      io.stdout:write(("database %s is up to date\n"):format(h.describe))
    else
      for _, d in ipairs(done) do io.stdout:write((dry and "would apply %s\n" or "applied %s\n"):format(d.file)) end
    end
  end
  h.close()
  return code
end

local function run_file(path, ...)
  local f = io.open(path, "r")
  if not f then return fail(("cannot open %s: No such file or directory"):format(path)) end
  f:close()
  local fn, err = loadfile(path)
  if not fn then return fail(err) end
  set_arg(path, nil, ...)
  return run_chunk(fn, ...)
end

--- Entry point: vibex.cli.main(argv…) → exit code (also set on the runtime).
function M.main(...)
  local args = { ... }
  local i = 1
  while args[i] and args[i]:sub(1, 1) == "-" and args[i] ~= "-e" do
    local a = args[i]
    if a == "-h" or a == "--help" then
      io.stdout:write(USAGE)
      return runtime.exit_code(0)
    elseif a == "-v" or a == "--version" then
      local v = runtime.versions()
      io.stdout:write(("vibex %s\n%s, libuv %s, libcurl %s\n"):format(v.vibex, v.luajit, v.libuv, v.libcurl))
      return runtime.exit_code(0)
    elseif a == "--env" or a:match("^%-%-env=") then
      local env = a:match("^%-%-env=(.*)$")
      if not env then i = i + 1; env = args[i] end
      if not env or env == "" then return runtime.exit_code(fail("--env needs a value (development, testing, production)")) end
      M.env = env
    else
      return runtime.exit_code(fail(("unknown option '%s' (see vibex --help)"):format(a)))
    end
    i = i + 1
  end
  local cmd = args[i]
  if not cmd then
    io.stderr:write(USAGE)
    return runtime.exit_code(2)
  end
  local rest = { unpack(args, i + 1, table.maxn(args)) }
  local handler = M.commands[cmd]
  local ok, code
  if handler then
    ok, code = pcall(handler, unpack(rest, 1, table.maxn(rest)))
  elseif cmd:match("%.lua$") or cmd:find("/") then
    ok, code = pcall(run_file, cmd, unpack(rest, 1, table.maxn(rest)))
  else
    ok, code = true, fail(("unknown command '%s' (see vibex --help)"):format(cmd))
  end
  -- a database server this process started (a command, the REPL, a
  -- script) is stopped on the way out, unless another vibex still uses it
  local db = package.loaded["vibex.db"]
  if db and db.close_all then db.close_all() end
  if not ok then error(code, 0) end
  return runtime.exit_code(code or 0)
end

return M
