--- vibex.backtest — `vibex backtest CONFIG`: a config's accounts on stored
-- history, through the same agent cycle as live (context, prompt, model or
-- rules, validation, policy, the risk gate, the simulated venue with fees,
-- slippage, funding and liquidation), as fast as the machine goes.
--
--   local res, err = backtest.run("config.lua", {from = "2026-01-01", accounts = {"trend"}, out = "bt/"})
--   -- res: {report, run_id, out, files, code}
--
-- The fast path: nothing goes to PostgreSQL while it runs. The run record
-- is made before the first candle; decisions, orders, fills, equity and
-- the diary are kept compactly (vibex.backtest.collector) and written at
-- the end in one transaction with COPY (vibex.backtest.store); `no_db`
-- keeps everything in the output directory only. Every account runs on its
-- own simulated venue whatever its config's exchange says, with its
-- paper settings (starting balance, fees).
local agent_mod = require "vibex.agent"
local collector = require "vibex.backtest.collector"
local config = require "vibex.config"
local datasets = require "vibex.data"
local errors = require "vibex.errors"
local log = require "vibex.log"
local marketdata = require "vibex.marketdata"
local replay = require "vibex.agent.replay"
local report = require "vibex.backtest.report"
local runtime = require "vibex.runtime"
local scripts = require "vibex.scripts"
local task = require "vibex.task"
local time = require "vibex.time"
local venues = require "vibex.exchange.venue"

local M = {}

local blog = log.channel("app")

-- ---- overrides (--set, sweeps) -----------------------------------------------------------------

--- "a.b=1.5" -> {path = {"a","b"}, value = 1.5}; values read as numbers,
-- booleans or strings.
function M.parse_assignment(s)
  local k, v = tostring(s):match("^([%w_%.]+)=(.*)$")
  if not k then return nil, ("%q is not KEY=VALUE (e.g. params.fast=12)"):format(tostring(s)) end
  local path = {}
  for part in k:gmatch("[^%.]+") do path[#path + 1] = part end
  local value = v
  if tonumber(v) then value = tonumber(v) elseif v == "true" then value = true elseif v == "false" then value = false end
  return { key = k, path = path, value = value }
end

local ACCOUNT_KEYS = { risk = true, decision_interval_s = true, fallback = true, paper = true }

local function set_path(t, path, i, value)
  for k = i, #path - 1 do
    local key = path[k]
    if type(t[key]) ~= "table" then t[key] = {} end
    t = t[key]
  end
  t[path[#path]] = value
end

-- Apply assignments to the raw config (before validation, so a bad value
-- is a config error): params.* and strategy keys go into each selected
-- account's strategy (the named one, or its own table), account keys into
-- each selected account, anything else from the root.
local function apply_overrides(raw, sets, selected)
  for _, s in ipairs(sets or {}) do
    local head = s.path[1]
    if head == "params" or head == "intervals" or head == "prompt" or head == "context" or head == "policy"
       or head == "rules" then
      for _, acc in ipairs(raw.accounts or {}) do
        if not selected or selected[acc.name] then
          local strat = acc.strategy
          if type(strat) == "string" and type(raw.strategies) == "table" and type(raw.strategies[strat]) == "table" then
            strat = raw.strategies[strat]
          elseif type(strat) ~= "table" then
            acc.strategy = {}
            strat = acc.strategy
          end
          set_path(strat, s.path, 1, s.value)
        end
      end
    elseif ACCOUNT_KEYS[head] then
      for _, acc in ipairs(raw.accounts or {}) do
        if not selected or selected[acc.name] then set_path(acc, s.path, 1, s.value) end
      end
    else
      set_path(raw, s.path, 1, s.value)
    end
  end
  return raw
end

--- The config with overrides applied: snapshot | nil, problems.
function M.load_config(path, o)
  local selected
  if o.accounts then
    selected = {}
    for _, n in ipairs(o.accounts) do selected[n] = true end
  end
  return config.load(path, { transform = function(raw) return apply_overrides(raw, o.set, selected) end })
end

-- ---- data --------------------------------------------------------------------------------------

local function parse_date(s, what)
  if not s then return nil end
  local ms = datasets.parse_time(s)
  if not ms then return nil, errors.new("invalid", ("%s %q is not a date (YYYY-MM-DD or YYYY-MM-DD HH:MM, UTC)"):format(what, s)) end
  return ms
end

-- Candles of the symbols from the database as compact columns (read a
-- page at a time: a year of candles never exists as row tables at once).
local PAGE = 20000
local function from_database(pool, symbols, iv, from_ms, to_ms)
  local candles = require("vibex.db.repo.candles")
  local columns = require "vibex.data.columns"
  local repo = setmetatable({ pool = pool }, candles)
  local step = time.INTERVAL_MS[iv]
  local data = {}
  for _, sym in ipairs(symbols) do
    local cols = columns.new(4096)
    local cursor, stop = from_ms or 0, (to_ms or 4102444800000) - 1
    while cursor <= stop do
      local rows, err = repo:range(sym, iv, cursor, stop, { exact = true, limit = PAGE })
      if not rows then return nil, err end
      for _, r in ipairs(rows) do cols:push(tonumber(r.open_time), r.open, r.high, r.low, r.close, r.volume) end
      if #rows < PAGE then break end
      cursor = tonumber(rows[#rows].open_time) + step
    end
    if cols.n == 0 then
      return nil, errors.new("not_found", ("no %s candles of %s stored%s"):format(iv, sym,
        from_ms and (" from " .. time.iso(from_ms)) or ""), { fix = ("vibex data download --symbols %s --interval %s --from DATE, or vibex data import FILE"):format(sym, iv) })
    end
    data[sym] = cols
  end
  -- funding settlements and mark candles stored with them (data download --funding --mark)
  local extra = { funding = {}, marks = {} }
  for _, sym in ipairs(symbols) do
    local first, last = data[sym].t[0], data[sym].t[data[sym].n - 1] + time.INTERVAL_MS[iv]
    local f, ferr = repo:funding_range(sym, first, last)
    if not f then return nil, ferr end
    if #f > 0 then
      local list = {}
      for i, r in ipairs(f) do list[i] = { time_ms = tonumber(r.time_ms), rate = r.rate } end
      extra.funding[sym] = list
    end
    local m, n = repo:mark_closes(sym, iv, first, last)
    if not m then return nil, n end
    if n > 0 then extra.marks[sym] = m end
  end
  return data, extra
end

-- Keep [from - warmup candles, to) of each symbol's columns; the number of
-- candle times before from (the replay's warm-up then).
local function cut(data, iv_ms, from_ms, to_ms, warmup)
  local first = from_ms and (from_ms - warmup * iv_ms) or -math.huge
  local last = to_ms or math.huge
  local before = {}
  for sym, c in pairs(data) do
    local i, j = 0, c.n
    while i < c.n and c.t[i] < first do i = i + 1 end
    while j > i and c.t[j - 1] >= last do j = j - 1 end
    if i > 0 or j < c.n then data[sym] = c:slice(i, j) end
    local k = data[sym]
    for x = 0, k.n - 1 do
      local t = k.t[x]
      if from_ms and t + iv_ms <= from_ms then before[t] = true end
    end
  end
  local n = 0
  for _ in pairs(before) do n = n + 1 end
  return n
end

-- ---- progress ----------------------------------------------------------------------------------

local function tty() return require("vibex.cdef").C.isatty(2) == 1 end

local function progress_printer(o)
  local started, last_line = runtime.wall_ms(), 0
  local on_tty = o.progress ~= false and tty()
  local finished = false
  return function(run, n, total_times, equity)
    if finished then return end
    finished = n >= total_times
    local now = runtime.wall_ms()
    local el = (now - started) / 1000
    local frac = n / math.max(1, total_times)
    local eta = frac > 0 and el / frac - el or 0
    if on_tty then
      local w = 30
      local fill = math.floor(frac * w)
      io.stderr:write(("\r[%s%s] %3d%%  %d candles  %d cycles  equity %s  ETA %ds  "):format(("#"):rep(fill),
        ("."):rep(w - fill), math.floor(frac * 100), run.candles, run.cycles, equity and ("%.2f"):format(equity) or "-",
        math.floor(eta + 0.5)))
      if n >= total_times then io.stderr:write("\n") end
    elseif o.progress ~= false and now - last_line >= (o.log_every_ms or 10000) or n >= total_times then
      last_line = now
      blog:info("backtest progress", { pct = math.floor(frac * 100), candles = run.candles, cycles = run.cycles,
                                        equity = equity and ("%.2f"):format(equity), eta_s = math.floor(eta + 0.5) })
    end
  end
end

-- ---- the run -----------------------------------------------------------------------------------

local function script_registry(cfg)
  local dir = runtime.home() .. "/scripts"
  if not runtime.exists(dir) then return nil end
  local limits, max_failures = agent_mod.script_limits(cfg)
  local reg = scripts.registry { dir = dir, exports = agent_mod.script_exports(cfg), limits = limits,
                                 max_failures = max_failures }
  reg:load_all()
  return reg
end


-- The accounts to run: --accounts, else every enabled one; each on the sim.
local function select_accounts(cfg, names)
  local out, want = {}, nil
  if names then
    want = {}
    for _, n in ipairs(names) do want[n] = true end
    for _, n in ipairs(names) do
      local found = false
      for _, acc in ipairs(cfg.accounts) do if acc.name == n then found = true end end
      if not found then return nil, errors.new("config", ("no account %q in the config"):format(n)) end
    end
  end
  for _, acc in ipairs(cfg.accounts) do
    if (want and want[acc.name]) or (not want and acc.enabled ~= false) then
      local copy = {}
      for k, v in pairs(acc) do copy[k] = v end
      copy.exchange, copy.mode = { venue = "sim" }, "paper"
      out[#out + 1] = copy
    end
  end
  if #out == 0 then return nil, errors.new("config", "no account to backtest", { fix = "enable an account or name one with --accounts" }) end
  return out
end

-- The process's peak resident memory (VmHWM), in MB.
local function peak_rss_mb()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  local kb = text:match("VmHWM:%s*(%d+)")
  return kb and tonumber(kb) / 1024 or nil
end

local function default_out(cfg, run_id)
  local stamp = os.date("!%Y%m%d-%H%M%S") .. ("-%d"):format(runtime.pid())
  return ("%s/backtests/%s"):format(cfg.runtime.data_dir, run_id and ("run-" .. run_id) or stamp)
end

-- What a backtest runs on: the config with its overrides, the accounts
-- (each on the sim), the database (unless no_db), the candles cut to
-- [from - warm-up, to). o as for M.run. A table | nil, err (err.code).
local function load_inputs(path, o)
  o = o or {}
  local sets = {}
  for _, s in ipairs(o.set or {}) do
    local a, err = M.parse_assignment(s)
    if not a then return nil, errors.new("invalid", err) end
    sets[#sets + 1] = a
  end
  local snap, problems = M.load_config(path, { set = sets, accounts = o.accounts })
  if not snap then
    local e = errors.new("config", config.format_errors(problems, path))
    e.code = 2
    return nil, e
  end
  local cfg = snap.config
  local rc = cfg.replay or {}
  local iv = rc.interval or "5m"
  local iv_ms = time.INTERVAL_MS[iv]
  local from_ms, ferr = parse_date(o.from, "--from")
  if ferr then return nil, ferr end
  local to_ms, terr = parse_date(o.to, "--to")
  if terr then return nil, terr end
  if from_ms and to_ms and to_ms <= from_ms then return nil, errors.new("invalid", "--to must be after --from") end
  local accounts, aerr = select_accounts(cfg, o.accounts)
  if not accounts then aerr.code = 2; return nil, aerr end
  -- the database: the run's record and, with source = "database", the candles
  local h = o.db
  local own_db = false
  if not o.no_db and not h then
    local db = require "vibex.db"
    local herr
    h, herr = db.open { url = cfg.database.url, data_dir = cfg.runtime.data_dir, pool_size = 2 }
    if not h then return nil, herr end
    own_db = true
    local ok, why = require("vibex.db.migrate").check(h.pool, nil, "vibex migrate up " .. path)
    if not ok then h.close(); why.code = 2; return nil, why end
  end
  if o.no_db and rc.source == "database" then
    return nil, errors.new("config", "replay.source = \"database\" needs the database: drop --no-db")
  end
  local function done(res, err)
    if own_db then h.close() end
    return res, err
  end
  -- data
  local symbols, seen = {}, {}
  for _, acc in ipairs(accounts) do
    for _, s in ipairs(acc.symbols) do if not seen[s] then seen[s] = true; symbols[#symbols + 1] = s end end
  end
  table.sort(symbols)
  local warmup = rc.warmup or 100
  local data, derr, extra
  if rc.source == "database" then
    data, derr = from_database(h.pool, symbols, iv, from_ms and (from_ms - warmup * iv_ms), to_ms)
    if data then extra, derr = derr, nil end
  else
    local r2 = {}
    for k, v in pairs(rc) do r2[k] = v end
    if rc.source == "generated" then r2.files = {} end
    data, derr = datasets.load(r2, symbols)
  end
  if not data then return done(nil, derr) end
  local before = cut(data, iv_ms, from_ms, to_ms, warmup)
  local total = 0
  for _, c in pairs(data) do total = math.max(total, c.n) end
  if total == 0 then return done(nil, errors.new("not_found", "no candles in the range")) end
  return { snap = snap, cfg = cfg, rc = rc, iv = iv, iv_ms = iv_ms, from_ms = from_ms, to_ms = to_ms, accounts = accounts,
           symbols = symbols, data = data, before = before, warmup = warmup, h = h, done = done, extra = extra }
end

--- The data a backtest of this config would run on: {from_ms, to_ms,
-- interval_ms, warmup} | nil, err (for walk-forward windows).
function M.data_span(path, o)
  local x, err = load_inputs(path, o)
  if not x then return nil, err end
  local first, last = math.huge, -math.huge
  for _, c in pairs(x.data) do
    if c.n > 0 then first, last = math.min(first, c.t[0]), math.max(last, c.t[c.n - 1] + x.iv_ms) end
  end
  x.done()
  return { from_ms = first, to_ms = last, interval_ms = x.iv_ms, warmup = x.warmup }
end

--- Run a backtest of the config at path. o: from, to (dates), accounts
-- (names), out (dir), no_db, set ({"k=v"} overrides), progress (false: no
-- progress output), quiet. Returns {report, run_id, out, code} | nil, err
-- (err.code: the exit code a command should give).
function M.run(path, o)
  o = o or {}
  local x, xerr = load_inputs(path, o)
  if not x then return nil, xerr end
  local snap, cfg, rc, iv, iv_ms = x.snap, x.cfg, x.rc, x.iv, x.iv_ms
  local accounts, symbols, data, before, h, done = x.accounts, x.symbols, x.data, x.before, x.h, x.done
  local from_ms = x.from_ms
  local rc2 = {}
  for k, v in pairs(rc) do rc2[k] = v end
  rc2.interval, rc2.speed = iv, "max"
  if from_ms then rc2.warmup = before end
  if x.extra then rc2.funding_rows, rc2.mark_closes = x.extra.funding, x.extra.marks end
  -- the agent: no database, a collector instead
  local out = o.out
  local run_row
  local reg = script_registry(cfg)
  local ag = agent_mod.new { config = cfg, scripts = reg, data_dir = cfg.runtime.data_dir }
  local names, scripts_used = {}, {}
  for i, acc in ipairs(accounts) do
    names[i] = acc.name
    local ok, serr = ag:check_scripts(acc)
    if not ok then
      serr = errors.new("script", ("account %s: %s"):format(acc.name, errors.message(serr)))
      serr.code = 2
      return done(nil, serr)
    end
    scripts_used[acc.name] = ag:script_hashes(ag:strategy(acc))
  end
  -- the config's logs (files under log_dir); on the console only warnings
  -- and errors: a cycle's info line a thousand times a second is noise
  -- beside the progress bar, and stays in the trading log file
  local lok, lerr = pcall(log.configure, { dir = cfg.runtime.log_dir, level = cfg.runtime.log_level,
                                           console_level = "warn",
                                           console = cfg.runtime.log_format == "json" and "json" or "auto" })
  if not lok then blog:warn("log configuration failed", { err = tostring(lerr) }) end
  local run = assert(replay.new { agent = ag, config = rc2, accounts = accounts, data = data })
  if h then
    local details = { interval = iv, symbols = symbols, seed = rc.source ~= "database" and rc.seed or nil,
                      config = path, overrides = o.set, code_version = runtime.versions().vibex,
                      llm_replay = cfg.llm.replay }
    local rerr
    run_row, rerr = require("vibex.backtest.store").begin(h.pool, { accounts = names, config_hash = snap.hash,
      script_versions = scripts_used, from_ms = run.from_ms, to_ms = run.to_ms, details = details })
    if not run_row then return done(nil, rerr) end
  end
  local run_id = run_row and tonumber(run_row.run_id)
  out = out or default_out(cfg, run_id)
  local mk, merr = runtime.mkdir_p(out)
  if not mk then return done(nil, errors.new("storage", ("cannot create %s: %s"):format(out, tostring(merr)))) end
  local col, cerr = collector.new { dir = out }
  if not col then return done(nil, errors.new("storage", tostring(cerr))) end
  ag.sink = col
  -- recorded model answers
  local store
  do
    local lr = require "vibex.llm.replay"
    local serr
    -- a new answer is paid for: it goes into the database as it comes (a
    -- crashed run keeps what it paid for), not with the rest at the end
    store, serr = lr.store { pool = h and h.pool, file = not h and (out .. "/answers.jsonl") or nil,
                             run_id = type(cfg.llm.replay) == "number" and cfg.llm.replay or nil,
                             write_through = true, recording_run = run_id }
    if not store then return done(nil, serr) end
    ag.wrap_client = function(c) return lr.wrap(c, store, cfg.llm.replay) end
  end
  local md = marketdata.replay { interval = iv }
  local scope = run_id and ("b" .. run_id) or ("b" .. os.date("!%Y%m%d%H%M%S") .. "p" .. runtime.pid())
  for _, acc in ipairs(accounts) do
    local strat = ag:strategy(acc)
    local ok, trerr = md:track(acc.symbols, strat.intervals or { "5m", "1h" }, o.capacity or 400)
    if not ok then return done(nil, errors.new("config", tostring(trerr))) end
    local sim = require("vibex.exchange.paper").venue(acc)
    sim.history = 200 -- what the venue keeps queryable (get_order, userTrades): the run needs only recent ones
    local added, adderr = pcall(ag.add_account, ag, acc, { sim = sim, venue = venues.new(sim, { account = acc.name }),
                                                           market = md, run_id = run_id })
    if not added then return done(nil, errors.new("config", tostring(adderr))) end
    local a = ag.accounts[acc.name]
    a.started, a.order_scope = true, scope
    if run_id then sim:set_ids(run_id * 1e9 + 1, run_id * 1e9 + 1) end
  end
  -- the replay
  run.on_progress = progress_printer(o)
  run.stop_when = function() return store.missed end
  run.leaderboard_every = math.huge -- the report ranks them at the end
  if not o.quiet and not tty() then
    blog:info("backtest started", { run = run_id, accounts = table.concat(names, ","), symbols = table.concat(symbols, ","),
                                    interval = iv, candles = run.n_candles, out = out })
  end
  -- the collector starts a cycle when the heap has grown by as much as was
  -- live after the last one (not twice as much): a backtest makes garbage
  -- fast, and its peak memory is what a long run is judged by
  local pause = collectgarbage("setpause", 100)
  local t0 = runtime.wall_ms()
  local ok, summary, serr = pcall(run.run, run)
  collectgarbage("setpause", pause)
  local wall = runtime.wall_ms() - t0
  col:close()
  ag:close()
  if ok and store.missed then ok, summary, serr = true, nil, store.missed end
  if not ok or not summary then
    local e = ok and serr or summary
    if task.is_cancelled(e) then
      if run_row then require("vibex.backtest.store").fail(h.pool, run_id, "stopped", "interrupted") end
      return done(nil, errors.new("shutdown", "the backtest was interrupted"))
    end
    local why = errors.is(e) and e or errors.new("script", tostring(e))
    if run_row then require("vibex.backtest.store").fail(h.pool, run_id, "failed", errors.message(why)) end
    return done(nil, why)
  end
  -- the report
  local starting = {}
  for _, acc in ipairs(accounts) do starting[acc.name] = { starting_balance = acc.paper.starting_balance } end
  -- what the run was fed beyond candles (a database source)
  local fed = { funding_settlements = {}, mark_candles = {} }
  for sym, list in pairs(rc2.funding_rows or {}) do fed.funding_settlements[sym] = #list end
  for sym, m in pairs(rc2.mark_closes or {}) do
    local n = 0
    for _ in pairs(m) do n = n + 1 end
    fed.mark_candles[sym] = n
  end
  local rep = report.build(col, { run_id = run_id, config = path, config_hash = snap.hash, from_ms = summary.from_ms,
    to_ms = summary.to_ms, interval = iv, symbols = symbols, candles = summary.candles, wall_ms = wall,
    seed = rc.source ~= "database" and rc.seed or nil, accounts = starting, scripts = scripts_used,
    code_version = runtime.versions().vibex, llm_replay = cfg.llm.replay, bad_candles = summary.bad_candles, fed = fed,
    source = rc.source })
  -- the price charts: at most 1500 closes per symbol (every k-th, and the last)
  local prices = {}
  for sym, c in pairs(data) do
    local t, cl, step = {}, {}, math.max(1, math.ceil(c.n / 1500))
    for i = 0, c.n - 1, step do t[#t + 1], cl[#cl + 1] = c.t[i] + iv_ms, c:close(i) end
    if c.n > 0 and (c.n - 1) % step ~= 0 then t[#t + 1], cl[#cl + 1] = c.t[c.n - 1] + iv_ms, c:close(c.n - 1) end
    prices[sym] = { t = t, c = cl }
  end
  local wok, werr = report.write(rep, col, out, { prices = prices })
  rep.wall_ms_with_report = runtime.wall_ms() - t0
  rep.peak_rss_mb = peak_rss_mb()
  if not wok then return done(nil, errors.new("storage", ("cannot write the report in %s: %s"):format(out, tostring(werr)))) end
  if run_row then
    local counts, sverr = require("vibex.backtest.store").save(h.pool, run_id, col, rep, { answers = store, out = out })
    if not counts then
      require("vibex.backtest.store").fail(h.pool, run_id, "failed", "not recorded: " .. errors.message(sverr))
      return done(nil, errors.wrap(sverr, nil, "the backtest ran but could not be recorded (its files are in " .. out .. "): "
        .. errors.message(sverr)))
    end
    rep.recorded = counts
  end
  return done({ report = rep, run_id = run_id, out = out, code = 0 })
end

return M
