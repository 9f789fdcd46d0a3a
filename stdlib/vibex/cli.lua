--- vibex.cli — the command line, on lua-argparse. `vibex --help` lists the
-- commands; `vibex COMMAND --help` shows a command's options and an example.
--
-- Exit codes: 0 ok; 1 a runtime failure (a script raised, a database or
-- venue failed); 2 a usage or config error (unknown option, missing file,
-- invalid config); 3 `vibex status` found an account that failed.
local argparse = require "argparse"
local runtime = require "vibex.runtime"

local M = {}

M.EXIT = { ok = 0, failure = 1, usage = 2, account_failed = 3 }

-- a usage or config error: one line, exit 2
local function fail(msg)
  io.stderr:write("vibex: ", msg, "\n")
  return 2
end
M.fail = fail

-- a failure of the outside world (the database, a file system): one line, exit 1
local function failed(msg)
  io.stderr:write("vibex: ", msg, "\n")
  return 1
end

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

local function set_arg(script, ...)
  local a = { [0] = script }
  for i = 1, select("#", ...) do a[i] = select(i, ...) end
  _G.arg = a
  return a
end

local function run_code(code, ...)
  local fn, err = load(code, "=(command line)", "t")
  if not fn then return fail(err) end
  set_arg("-e", ...)
  return run_chunk(fn, ...)
end

local function run_file(path, ...)
  local f = io.open(path, "r")
  if not f then return fail(("cannot open %s: No such file or directory"):format(path)) end
  f:close()
  local fn, err = loadfile(path)
  if not fn then return fail(err) end
  set_arg(path, ...)
  return run_chunk(fn, ...)
end

local function load_config(path)
  local config = require "vibex.config"
  local snap, problems = config.load(path)
  if not snap then
    io.stderr:write(config.format_errors(problems, path), "\n")
    return nil, problems
  end
  return snap
end

-- The database of a config (its database.url, or the local one under its
-- data_dir), or the default local one without a config: handle | nil, exit code.
local function open_db(path, prefix)
  local o = {}
  if path then
    local snap = load_config(path)
    if not snap then return nil, 2 end
    o.url, o.data_dir = snap.config.database.url, snap.config.runtime.data_dir
  end
  local h, err = require("vibex.db").open(o)
  if not h then return nil, failed((prefix or "") .. tostring(err)) end
  return h
end

-- open_db, and the database must have every migration (else exit 2, naming the command that fixes it)
local function open_migrated_db(path, prefix)
  local h, code = open_db(path, prefix)
  if not h then return nil, code end
  local ok, why = require("vibex.db.migrate").check(h.pool, nil, "vibex migrate up" .. (path and " " .. path or ""))
  if not ok then
    h.close()
    return nil, fail((prefix or "") .. require("vibex.errors").message(why))
  end
  return h
end

-- ---- the commands (each takes the parsed arguments) ----------------------------------------

M.commands = {}

function M.commands.repl() return require("vibex.repl").run() end

function M.commands.test(a) return require("vibex.testing").run(a.args or {}) end

function M.commands.check(a)
  local config = require "vibex.config"
  local code = 0
  for _, path in ipairs(a.config) do
    local snap, problems = config.load(path)
    if not snap then
      io.stderr:write(config.format_errors(problems, path), "\n")
      io.stderr:write(("vibex: %s: %d error%s (environment %s)\n"):format(path, #problems, #problems == 1 and "" or "s",
        config.environment()))
      code = 2
    elseif a.quiet or #a.config > 1 then
      io.stdout:write(("%s: valid for environment %s, hash %s\n"):format(path, snap.environment, snap.hash:sub(1, 12)))
    else
      io.stdout:write(("-- %s: valid for environment %s, hash %s\n"):format(path, snap.environment, snap.hash))
      io.stdout:write("return ", config.render(snap.config), "\n")
    end
  end
  return code
end

function M.commands.run(a)
  if not runtime.stat(a.config) then return fail(("cannot open %s: No such file or directory"):format(a.config)) end
  return require("vibex.app").run(a.config)
end

--- vibex status [CONFIG] [--json]: the run's state file, readable.
function M.commands.status(a)
  local path, as_json = a.config, a.json
  if path and not load_config(path) then return 2 end
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


--- vibex ab report [EXPERIMENT] [CONFIG] [--json|--csv] [--chart FILE] [--version N]
function M.commands.ab(a)
  local name, path = a.experiment, a.config
  if name and name:match("%.lua$") and not path then name, path = nil, name end
  local o = { format = a.json and "json" or a.csv and "csv" or "text", chart = a.chart, version = a.version }
  local h, code = open_migrated_db(path, "ab report: ")
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
function M.commands.llm(a)
  local as_json, path = a.json, a.config
  local h, code = open_migrated_db(path, "llm stats: ")
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

--- vibex migrate [status|up [--dry-run]] [CONFIG]
function M.commands.migrate(a)
  local action, path, dry = a.up and "up" or "status", a.config, a.dry_run
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

--- vibex data list [CONFIG] [--json]: the candles stored, per symbol and interval, with their holes.
local function data_list(a)
  local h, code = open_migrated_db(a.config, "data list: ")
  if not h then return code end
  local time = require "vibex.time"
  local repo = require("vibex.db").repos { pool = h.pool }.candles
  local rows, err = repo:summary()
  if not rows then
    h.close()
    return failed("data list: " .. tostring(err))
  end
  local json = require "vibex.json"
  local list = {}
  for i, r in ipairs(rows) do
    local step = time.interval_ms(r.interval)
    local e = { symbol = r.symbol, interval = r.interval, count = r.count, first_ms = r.first_ms, last_ms = r.last_ms,
                missing = 0, holes = json.empty_array }
    if step then
      e.missing = math.floor((r.last_ms - r.first_ms) / step) + 1 - r.count
      if e.missing > 0 then
        e.holes = {}
        for j, g in ipairs(assert(repo:holes(r.symbol, r.interval, step, 20))) do
          e.holes[j] = { after_ms = g.after_ms, before_ms = g.before_ms, missing = g.missing }
        end
      end
    end
    list[i] = e
  end
  rows = list
  h.close()
  if a.json then
    io.stdout:write(json.encode(#rows > 0 and rows or json.empty_array), "\n")
    return 0
  end
  if #rows == 0 then
    io.stdout:write("no candles stored yet (vibex data import FILE)\n")
    return 0
  end
  io.stdout:write(("%-12s %-8s %9s  %-17s  %-17s  %s\n"):format("symbol", "interval", "candles", "first", "last", "missing"))
  local function day(ms) return os.date("!%Y-%m-%d %H:%M", math.floor(ms / 1000)) end
  for _, r in ipairs(rows) do
    io.stdout:write(("%-12s %-8s %9d  %-17s  %-17s  %d\n"):format(r.symbol, r.interval, r.count, day(r.first_ms),
      day(r.last_ms), r.missing))
    for _, g in ipairs(r.holes) do
      io.stdout:write(("    hole: %d candles missing after %s, before %s\n"):format(g.missing, day(g.after_ms), day(g.before_ms)))
    end
  end
  return 0
end

--- vibex data import FILE… [--symbol S] [--interval I] [--config CONFIG]: candles from files into the database.
local function data_import(a)
  local data, time = require "vibex.data", require "vibex.time"
  local plan = {}
  for _, file in ipairs(a.files) do
    local sym, iv = data.name_of(file)
    sym, iv = a.symbol or sym, a.interval or iv
    if not sym then return fail(("data import: %s: its name carries no symbol; give --symbol"):format(file)) end
    if not iv then return fail(("data import: %s: its name carries no interval; give --interval"):format(file)) end
    if not time.interval_ms(iv) then return fail(("data import: %s: --interval %s is not an interval (1m, 5m, 1h, …)"):format(file, iv)) end
    plan[#plan + 1] = { file = file, symbol = sym:upper(), interval = iv }
  end
  local h, code = open_migrated_db(a.config, "data import: ")
  if not h then return code end
  local repo = require("vibex.db").repos { pool = h.pool }.candles
  local rc = 0
  for _, p in ipairs(plan) do
    local rows, err = data.read(p.file)
    local n, ierr
    if rows then
      local step = time.interval_ms(p.interval)
      for _, r in ipairs(rows) do r.close_time = r.open_time + step - 1 end
      n, ierr = repo:copy(p.symbol, p.interval, rows)
    end
    if not rows then
      rc = fail(("data import: %s: %s"):format(p.file, require("vibex.errors").message(err)))
    elseif not n then
      rc = failed(("data import: %s: %s"):format(p.file, require("vibex.errors").message(ierr)))
    else
      io.stdout:write(("%s: %d candles of %s %s, %d new\n"):format(p.file, #rows, p.symbol, p.interval, n))
    end
  end
  h.close()
  return rc
end

--- vibex data download --symbols A,B --interval I --from DATE [--to DATE] [--venue aster|binance] [--base-url URL] [--config CONFIG]
local function data_download(a)
  local data, time = require "vibex.data", require "vibex.time"
  local step = time.INTERVAL_MS[a.interval]
  if not step then return fail(("data download: --interval %s is not a venue interval (%s)"):format(a.interval, table.concat(time.INTERVALS, ", "))) end
  local from = data.parse_time(a.from)
  if not from then return fail(("data download: --from %s is not a date (YYYY-MM-DD[ HH:MM])"):format(a.from)) end
  local to = a.to and data.parse_time(a.to)
  if a.to and not to then return fail(("data download: --to %s is not a date (YYYY-MM-DD[ HH:MM])"):format(a.to)) end
  if to then to = to - step end -- --to is where the range ends: its candle is not included
  local symbols = {}
  for sym in a.symbols:gmatch("[^,%s]+") do symbols[#symbols + 1] = sym:upper() end
  if #symbols == 0 then return fail("data download: --symbols names no symbol (BTCUSDT,ETHUSDT)") end
  if a.no_db and not a.out then return fail("data download: --no-db needs --out DIR (where the files go)") end
  local h, repo
  if not a.no_db then
    local code
    h, code = open_migrated_db(a.config, "data download: ")
    if not h then return code end
    repo = require("vibex.db").repos { pool = h.pool }.candles
  end
  local rc = require("vibex.data.download").run { symbols = symbols, interval = a.interval, from_ms = from, to_ms = to,
    venue = a.venue, base_url = a.base_url, funding = a.funding, mark = a.mark, repo = repo, out = a.out }
  if h then h.close() end
  return rc
end

function M.commands.backtest(a)
  return require("vibex.backtest.cli").main(a, { open_migrated_db = open_migrated_db })
end

function M.commands.data(a)
  if a.action == "import" then return data_import(a) end
  if a.action == "download" then return data_download(a) end
  return data_list(a)
end

--- vibex token create NAME [--scope read|trade] [--expires DAYS] [CONFIG] | list [CONFIG] | revoke ID [CONFIG]
function M.commands.token(a)
  local h, code = open_migrated_db(a.config, "token: ")
  if not h then return code end
  local auth = require "vibex.api.auth"
  local rc = 0
  if a.action == "create" then
    local days = a.expires and tonumber(a.expires)
    if a.expires and not (days and days > 0) then
      h.close()
      return fail(("token create: --expires %s: a number of days, e.g. --expires 30"):format(a.expires))
    end
    local token, row = auth.create_token(h.pool, { name = a.name, scope = a.scope, created_by = "cli",
                                                   expires_ms = days and (require("vibex.runtime").wall_ms() + days * 86400000) or nil })
    if not token then
      rc = failed("token create: " .. tostring(row))
    else
      io.stdout:write(token, "\n")
      io.stderr:write(("token %d for %s, scope %s%s: shown once, keep it (vibex stores only its hash)\n")
        :format(tonumber(row.api_token_id), row.name, row.scope,
                row.expires_at and (", expires " .. require("vibex.api.types").iso(row.expires_at)) or ", no expiry"))
    end
  elseif a.action == "revoke" then
    local id = tonumber(a.id)
    local ok, err = id and auth.revoke_token(h.pool, id)
    if not id then rc = fail("token revoke: ID is a number (vibex token list)")
    elseif ok == nil then rc = failed("token revoke: " .. tostring(err))
    elseif not ok then rc = fail(("token revoke: no active token %d (vibex token list)"):format(id))
    else io.stdout:write(("token %d revoked\n"):format(id)) end
  else
    local rows, err = auth.list_tokens(h.pool)
    if not rows then
      rc = failed("token list: " .. tostring(err))
    else
      local iso = require("vibex.api.types").iso
      io.stdout:write(("%-4s %-20s %-6s %-12s %-20s %-20s %s\n"):format("ID", "NAME", "SCOPE", "PREFIX", "EXPIRES", "LAST USED", "STATE"))
      for _, r in ipairs(rows) do
        io.stdout:write(("%-4d %-20s %-6s %-12s %-20s %-20s %s\n"):format(tonumber(r.api_token_id), r.name, r.scope, r.prefix .. "…",
          r.expires_at and iso(r.expires_at):sub(1, 19) or "never", r.last_used_at and iso(r.last_used_at):sub(1, 19) or "never",
          r.revoked_at and "revoked" or "active"))
      end
    end
  end
  h.close()
  return rc
end

-- ---- the parser ----------------------------------------------------------------------------

local HELP = {} -- raised by a --help flag: the parse ends, the text is printed, exit 0

local function help_flag(parser, state)
  parser:add_help(false)
  parser:flag("-h --help", "Show this help and exit."):action(function()
    state.help = parser:get_help()
    error(HELP)
  end)
  return parser
end

local function command(parent, state, name, summary, example)
  local c = parent:command(name, summary)
  c:epilog("Example:\n  " .. example)
  state.parsers = state.parsers or {}
  state.parsers[name] = c
  return help_flag(c, state)
end

--- The parser of the whole command line; state.help receives a help text.
function M.parser(state)
  local p = argparse("vibex", "A trading runtime for perpetual futures where a model (or a rule) makes the decisions.")
  help_flag(p, state)
  p:epilog([[Scripts:
  vibex FILE.lua [ARGS...]   run a Lua script on the loop; exit when its tasks are done
  vibex -e 'CODE' [ARGS...]  run a chunk of Lua

Exit codes: 0 ok; 1 runtime failure; 2 usage or config error; 3 (status) an account failed.
Environment: VIBEX_HOME (where stdlib/, scripts/ and migrations/ live), VIBEX_ENV.
`vibex COMMAND --help` shows a command's options and an example.]])
  p:flag("-v --version", "Print the versions of vibex and of every library it links, and exit.")
  p:option("--env", "development, testing or production (default: $VIBEX_ENV or development).")
    :argname("ENV")
  p:command_target("command")
  p:require_command(false)
  p:usage_margin(2):help_max_width(100)

  local run = command(p, state, "run", "Run the configured accounts until SIGINT/SIGTERM.", "vibex run examples/paper.lua")
  run:argument("config", "The config file.")

  local check = command(p, state, "check", "Validate config files; print the effective config (secrets masked).",
    "vibex check examples/*.lua")
  check:argument("config", "Config files to check (one: its effective config is printed).")
    :args("+")
  check:flag("-q --quiet", "Only say whether each file is valid.")

  local status = command(p, state, "status",
    "What a running (or the last) `vibex run` is doing: accounts, decisions, reconciliation, market data.",
    "vibex status examples/paper.lua --json")
  status:argument("config", "The config whose run to show (default: the run under ./data)."):args("?")
  status:flag("--json", "Print the state file as JSON.")

  local migrate = command(p, state, "migrate",
    "Database migrations (migrations/NNNN_name.sql) of the config's database, or of the local one under data_dir/pg.",
    "vibex migrate up examples/paper.lua")
  migrate:require_command(false)
  migrate:command_target("action")
  local mstatus = command(migrate, state, "status", "Show which migrations are applied (the default).",
    "vibex migrate status examples/paper.lua")
  mstatus:argument("config", "The config whose database to use."):args("?")
  local mup = command(migrate, state, "up", "Apply the pending migrations, each in one transaction.",
    "vibex migrate up examples/paper.lua --dry-run")
  mup:argument("config", "The config whose database to use."):args("?")
  mup:flag("--dry-run", "Say what would be applied; change nothing.")

  local ab = command(p, state, "ab", "A/B experiments on strategies and prompts.", "vibex ab report prompt-test")
  ab:require_command(true)
  local report = command(ab, state, "report",
    "Outcomes per variant with confidence intervals and a verdict (no EXPERIMENT: the experiments known).",
    "vibex ab report prompt-test examples/paper.lua --chart report.svg")
  report:argument("experiment", "The experiment's name."):args("?")
  report:argument("config", "The config whose database to use."):args("?")
  report:mutex(report:flag("--json", "Print JSON."), report:flag("--csv", "Print CSV."))
  report:option("--chart", "Also write an SVG chart to FILE."):argname("FILE")
  report:option("--version", "The experiment's version (default: the latest)."):argname("N"):convert(tonumber)

  local llm = command(p, state, "llm", "Model calls.", "vibex llm stats")
  llm:require_command(true)
  local stats = command(llm, state, "stats",
    "Model calls per provider, model and variant: errors, latency, tokens, cost.", "vibex llm stats examples/paper.lua --json")
  stats:argument("config", "The config whose database to use."):args("?")
  stats:flag("--json", "Print JSON.")

  local data = command(p, state, "data", "Stored candles: what the database holds, and files imported into it.",
    "vibex data list")
  data:require_command(true)
  data:command_target("action")
  local dlist = command(data, state, "list", "Candles stored per symbol and interval: range, count and holes.",
    "vibex data list examples/paper.lua --json")
  dlist:argument("config", "The config whose database to use."):args("?")
  dlist:flag("--json", "Print JSON.")
  local dimport = command(data, state, "import",
    "Store candles from files (freqtrade's JSON [t,o,h,l,c,v] rows, or CSV with a header) in the database.",
    "vibex data import ../shared/data/XRP_USDT_USDT-5m-futures.json --config examples/paper.lua")
  dimport:argument("files", "Candle files; a freqtrade name (XRP_USDT_USDT-5m-futures.json) gives the symbol and interval.")
    :args("+")
  dimport:option("--symbol", "The symbol, when the file name does not say it."):argname("SYMBOL")
  dimport:option("--interval", "The interval (1m, 5m, 1h, …), when the file name does not say it."):argname("INTERVAL")
  dimport:option("--config", "The config whose database to use (default: the local one under ./data)."):argname("CONFIG")
  local ddown = command(data, state, "download",
    "Page a venue's public klines into the database, within its rate limits; run again to resume.",
    "vibex data download --symbols BTCUSDT,ETHUSDT --interval 5m --from 2026-11-01 --to 2026-12-01")
  ddown:option("--symbols", "Comma-separated symbols."):argname("A,B"):count(1)
  ddown:option("--interval", "A venue interval (1m, 5m, 1h, …)."):argname("INTERVAL"):count(1)
  ddown:option("--from", "The first day (YYYY-MM-DD[ HH:MM], UTC)."):argname("DATE"):count(1)
  ddown:option("--to", "Where the range ends, not included (default: now)."):argname("DATE")
  ddown:option("--venue", "aster or binance."):argname("VENUE"):choices { "aster", "binance" }:default("aster")
  ddown:option("--base-url", "The venue's REST base URL (default: the venue's own)."):argname("URL")
  ddown:option("--config", "The config whose database to use (default: the local one under ./data)."):argname("CONFIG")
  ddown:flag("--funding", "Also the funding settlements (a backtest on the database settles funding at them).")
  ddown:flag("--mark", "Also the mark price klines (a backtest on the database moves the mark with them).")
  ddown:option("--out", "Also write freqtrade-layout JSON files into DIR (BTC_USDT_USDT-5m-futures.json, …)."):argname("DIR")
  ddown:flag("--no-db", "Only the files (with --out).")

  local tok = command(p, state, "token", "API tokens for the control plane (vibex run with api.enabled): per user, scoped, expiring.",
    "vibex token create grafana --scope read --expires 90 examples/paper.lua")
  tok:require_command(true)
  tok:command_target("action")
  local tcreate = command(tok, state, "create", "Make a token; it is printed once (only its hash is stored).",
    "vibex token create alice --scope trade --expires 30")
  tcreate:argument("name", "Who the token is for (shown in the audit log).")
  tcreate:argument("config", "The config whose database to use."):args("?")
  tcreate:option("--scope", "read (GET routes, the stream, /metrics) or trade (also orders, pause, flatten, notes)."):argname("SCOPE")
    :choices { "read", "trade" }:default("read")
  tcreate:option("--expires", "Days until it stops working (default: never)."):argname("DAYS")
  local tlist = command(tok, state, "list", "Tokens: who, scope, expiry, last use (never the tokens).", "vibex token list")
  tlist:argument("config", "The config whose database to use."):args("?")
  local trevoke = command(tok, state, "revoke", "Stop a token from working, at once.", "vibex token revoke 3")
  trevoke:argument("id", "The token's ID (vibex token list).")
  trevoke:argument("config", "The config whose database to use."):args("?")

  local bt = command(p, state, "backtest",
    "Backtests: a config's accounts on stored history (the default action), and the runs recorded.",
    "vibex backtest examples/backtest.lua --from 2026-01-03 --out bt/")
  bt:require_command(true)
  bt:command_target("action")
  local brun = command(bt, state, "run", "Run a backtest; `vibex backtest CONFIG` is the same. Prints the report and writes "
    .. "report.json, trades.csv, fills.csv, orders.csv, equity.csv and report.html.",
    "vibex backtest examples/backtest.lua --sweep params.fast=8,12 --sweep params.slow=26,34 --jobs 2")
  brun:argument("config", "The config file (its accounts run on the simulated venue; data from its replay section).")
  brun:option("--from", "Decisions from this date (YYYY-MM-DD[ HH:MM], UTC); candles before it warm up."):argname("DATE")
  brun:option("--to", "Until this date, not included."):argname("DATE")
  brun:option("--accounts", "Only these accounts (comma-separated)."):argname("A,B")
  brun:option("--out", "The directory for the report files (default: DATA_DIR/backtests/run-N)."):argname("DIR")
  brun:flag("--json", "Print the report as JSON instead of text.")
  brun:flag("--no-db", "Record nothing in the database: everything stays in --out.")
  brun:flag("-q --quiet", "No progress output.")
  brun:option("--set", "Change the config for this run: KEY=VALUE (params.fast=8, risk.max_leverage=2, replay.warmup=50)."):argname("KEY=VALUE"):count("*")
  brun:option("--sweep", "Run every combination: KEY=V1,V2,… (repeatable), in worker processes."):argname("KEY=V,V"):count("*")
  brun:option("--jobs", "Sweep workers at once (default 2)."):argname("N")
  brun:option("--rank", "Rank a sweep by sharpe (default), sortino, calmar, return, pnl, profit, win_rate or drawdown."):argname("METRIC")
  brun:option("--walk-forward", "With --sweep: K folds, each fitted on one window and tested on the next."):argname("K")
  local blist = command(bt, state, "list", "The backtests recorded, newest first.", "vibex backtest list")
  blist:argument("config", "The config whose database to use."):args("?")
  blist:flag("--json", "Print JSON.")
  blist:option("--limit", "How many (default 50)."):argname("N")
  local bshow = command(bt, state, "show", "One backtest's report and trades.", "vibex backtest show 12")
  bshow:argument("run_id", "The run's number (vibex backtest list)."):argname("RUN")
  bshow:option("--config", "The config whose database to use."):argname("CONFIG")
  bshow:flag("--json", "Print JSON.")
  local bcmp = command(bt, state, "compare", "Two backtests side by side, and whether their order streams are the same.",
    "vibex backtest compare 12 13")
  bcmp:argument("runs", "Two run numbers."):args(2):argname("RUN")
  bcmp:option("--config", "The config whose database to use."):argname("CONFIG")
  bcmp:flag("--json", "Print JSON.")
  local bdel = command(bt, state, "delete", "Delete a backtest run and everything it recorded.", "vibex backtest delete 12")
  bdel:argument("run_id", "The run's number."):argname("RUN")
  bdel:option("--config", "The config whose database to use."):argname("CONFIG")

  command(p, state, "repl", "An interactive prompt on the loop (line editing, history, completion).", "vibex repl")

  local test = command(p, state, "test", "Run busted specs inside the runtime (default: tests/spec).",
    "vibex test -o plainTerminal tests/spec/ta_spec.lua")
  test:argument("args", "busted's options and paths (busted's own help: vibex test -- --help)."):args("*")
  test:handle_options(false)
  return p
end

--- Print the versions of vibex and every library it links.
local function print_versions()
  local v = runtime.versions()
  io.stdout:write(("vibex %s\n"):format(v.vibex))
  for _, k in ipairs { "luajit", "libuv", "libcurl", "libwebsockets", "libpq", "openssl", "nettle", "libsecp256k1",
                       "libedit" } do
    io.stdout:write(("  %-14s %s\n"):format(k, v[k] or "?"))
  end
  io.stdout:write(("  %-14s %s\n"):format("lua-argparse", argparse.version))
end

-- "unknown option '--jsn'\nDid you mean '--json'?" -> one line, with where to look
local function usage_error(msg, args)
  local path = { "vibex" }
  for _, a in ipairs(args) do
    if a:sub(1, 1) ~= "-" and (M.commands[a] or a == "report" or a == "stats" or a == "up" or a == "status"
                               or a == "list" or a == "import" or a == "download" or a == "show" or a == "compare"
                               or a == "delete") then
      path[#path + 1] = a
    elseif a:sub(1, 1) ~= "-" then break end
  end
  msg = msg:gsub("\nDid you mean", "; did you mean")
  local file = msg:match("^unknown command '(.-%.lua)'$")
  if file and path[#path] == "migrate" then -- `vibex migrate CONFIG`: the action goes first
    msg = ("%s: name the action first: `vibex migrate status %s` or `vibex migrate up %s`"):format(msg, file, file)
  end
  return fail(("%s (see %s --help)"):format(msg, table.concat(path, " ")):gsub("^vibex: ", ""))
end

--- Parse args: the parsed table, or nil and an exit code (help printed, or a usage error).
function M.parse(args)
  local state = {}
  local p = M.parser(state)
  local ok, okparse, res = pcall(p.pparse, p, args)
  if state.help then
    io.stdout:write(state.help, "\n")
    return nil, 0
  end
  if not ok then error(okparse, 0) end
  if not okparse then return nil, usage_error(res, args) end
  return res
end

-- the command line, before argparse: global options, then a script or -e
local function script_call(args)
  local i = 1
  while args[i] == "--env" or (args[i] and args[i]:match("^%-%-env=")) do i = i + (args[i] == "--env" and 2 or 1) end
  local first = args[i]
  if first == "-e" or (first and (first:match("%.lua$") or first:find("/")) and first:sub(1, 1) ~= "-") then
    return i
  end
end

local function dispatch(args)
  args = require("vibex.backtest.cli").implicit_run(args)
  local si = script_call(args)
  local globals = si and { unpack(args, 1, si - 1) } or args
  local a, code = M.parse(si and globals or args)
  if not a then return code end
  if a.env then
    if a.env == "" then return fail("--env needs a value (development, testing, production)") end
    require("vibex.config").set_environment(a.env)
  end
  if a.version then print_versions() return 0 end
  if si then
    local rest = { unpack(args, si + 1, table.maxn(args)) }
    if args[si] == "-e" then
      if rest[1] == nil then return fail("-e needs a chunk of Lua code (vibex -e 'print(1)')") end
      return run_code(unpack(rest, 1, table.maxn(rest)))
    end
    return run_file(args[si], unpack(rest, 1, table.maxn(rest)))
  end
  if not a.command then
    io.stderr:write(M.parser({}):get_help(), "\n")
    return 2
  end
  if a.command == "test" and a.args and (a.args[1] == "--help" or a.args[1] == "-h") then
    local state = {}
    M.parser(state)
    io.stdout:write(state.parsers.test:get_help(), "\n")
    return 0
  end
  if a.command == "test" and a.args and a.args[1] == "--" then table.remove(a.args, 1) end
  return M.commands[a.command](a)
end

--- Entry point: vibex.cli.main(argv…) → exit code (also set on the runtime).
function M.main(...)
  local ok, code = pcall(dispatch, { ... })
  -- a database server this process started (a command, the REPL, a
  -- script) is stopped on the way out, unless another vibex still uses it
  local db = package.loaded["vibex.db"]
  if db and db.close_all then db.close_all() end
  if not ok then
    -- a command that raised ends the process (its tasks, pools and servers
    -- are stopped in order), not just the main task
    runtime.exit_code(1)
    runtime.shutdown("the command failed")
    error(code, 0)
  end
  return runtime.exit_code(code or 0)
end

return M
