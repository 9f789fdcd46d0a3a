--- vibex.app — `vibex run CONFIG`: the long-running mode.
--
-- Loads and validates the config, configures logging, starts one runner
-- per enabled account and watches the config: a valid change is applied
-- at once and only what changed is touched (a changed risk limit is read
-- at the account's next decision; a new account starts; a removed or
-- disabled account stops after its current decision, its open positions
-- left untouched and logged). An invalid change is logged and the running
-- config stays. The state of the run is written to <data_dir>/state.json.
--
-- A decision is one cycle of the agent (vibex.agent) for the account, on
-- its interval aligned to candle closes. With a `replay` section, paper
-- accounts on the sim venue trade a replay of stored or generated candles
-- instead (vibex.agent.replay); when it ends a summary is printed and, if
-- nothing else runs, vibex exits.
--
-- An account starts in steps, each of which can fail loudly: the venue
-- (clock, exchange info, the symbols, the keys), its market data (history
-- over REST, then the streams; one service per venue, shared), the user
-- data stream, and a reconciliation with the venue before the first
-- decision. A failure is an ERROR line with the cause and the fix, the
-- account shows as `failed` with that reason in state.json and `vibex
-- status`, no cycle is counted for it, and where the cause can pass (the
-- venue is down, rate limits, the clock) the start is retried with backoff.
local runtime = require "vibex.runtime"
local errors = require "vibex.errors"
local config = require "vibex.config"
local scripts = require "vibex.scripts"
local task = require "vibex.task"
local log = require "vibex.log"
local json = require "vibex.json"
local metrics = require "vibex.metrics"
local exchange = require "vibex.exchange"
local marketdata = require "vibex.marketdata"
local venues = require "vibex.exchange.venue"

local M = {}

local App = {}
App.__index = App

local decisions_total = metrics.counter("vibex_decisions_total", "Decision cycles run", { "account" })
local accounts_gauge = metrics.gauge("vibex_accounts_running", "Account runners running")
local config_version_gauge = metrics.gauge("vibex_config_version", "Version number of the applied config")
local equity_gauge = metrics.gauge("vibex_account_equity", "Account equity (USDT) at its last decision", { "account" })
local positions_gauge = metrics.gauge("vibex_account_positions", "Open positions at the account's last decision", { "account" })
local open_orders_gauge = metrics.gauge("vibex_account_open_orders", "Open orders at the account's last decision", { "account" })
local paused_gauge = metrics.gauge("vibex_account_paused", "1 while the account's decisions are paused", { "account" })
local running_gauge = metrics.gauge("vibex_account_running", "1 while the account runs, 0 when it failed or stopped", { "account" })
local last_decision_gauge = metrics.gauge("vibex_account_last_decision_timestamp_seconds", "When the account last decided (Unix time)", { "account" })
local daily_pnl_gauge = metrics.gauge("vibex_account_daily_pnl", "Equity change since the start of the UTC day (USDT)", { "account" })
local daily_limit_gauge = metrics.gauge("vibex_account_max_daily_loss", "The account's daily loss limit (USDT; 0 = none)", { "account" })
local interval_gauge = metrics.gauge("vibex_account_decision_interval_seconds", "The account's decision interval", { "account" })
local breaker_gauge = metrics.gauge("vibex_breaker_state", "Circuit breakers: 0 closed, 1 half-open, 2 open", { "breaker" })
local journal_gauge = metrics.gauge("vibex_db_journal_pending", "Database writes waiting in the local journal (an outage)")

--- One decision: a cycle of the agent for the runner's account.
function M.decide(app, r, acc)
  if not app.agent or not app.agent.accounts[r.name] then return nil end
  local rec, err = app.agent:cycle(r.name, { account = acc })
  if not rec and err ~= "busy" and err ~= "already ran" and err ~= "paused" then error(err, 0) end
  return rec
end

local function configure_logging(rt)
  local ok, err = pcall(log.configure, {
    dir = rt.log_dir, level = rt.log_level,
    console = rt.log_format == "json" and "json" or "auto",
  })
  if not ok then log.error("log configuration failed", { err = tostring(err) }) end
end

-- A replay drives its accounts' cycles itself (vibex.agent.replay), not
-- through the runner: its count is the agent's.
function App:count_replay_cycles(r)
  local a = r.replay and self.agent and self.agent.accounts[r.name]
  if a and a.cycles ~= r.decisions then
    r.decisions = a.cycles
    r.last_decision_at = runtime.wall_ms()
  end
end

function App:write_state()
  local snap = self.store:snapshot()
  local st = {
    pid = runtime.pid(), environment = snap.environment, config_path = self.path,
    config = { version = snap.version, hash = snap.hash, applied_at = snap.applied_at },
    versions = self.store:list_versions(), accounts = {}, updated_at = runtime.wall_ms(), leaderboard = self.leaderboard,
    api = self.api and { url = self.api.url, port = self.api.port } or nil,
  }
  for name, r in pairs(self.runners) do
    local a = self.agent and self.agent.accounts[name]
    self:count_replay_cycles(r)
    st.accounts[name] = {
      status = r.status, reason = r.reason, fix = r.fix, retry_at = r.retry_at, attempts = r.attempts,
      decisions = r.decisions, started_at = r.started_at,
      last_decision_at = r.last_decision_at, last_config_version = r.last_config_version,
      risk = r.last_risk, positions = r.positions, mode = r.mode, venue = r.venue,
      reconciled_at = a and a.reconciled_ms, last_reconcile = a and a.last_reconcile,
      unknown_orders = a and a.resolver:count() or nil, market = r.market_key,
    }
  end
  if next(self.markets) then
    st.market = {}
    for k, md in pairs(self.markets) do st.market[k] = md:stats() end
  end
  for name, r in pairs(self.stopped) do
    st.accounts[name] = { status = "stopped", decisions = r.decisions, stopped_at = r.stopped_at, mode = r.mode,
                          venue = r.venue, last_decision_at = r.last_decision_at,
                          last_config_version = r.last_config_version, positions = r.positions }
  end
  -- replaced atomically (the old version stays whole when the disk is full)
  local ok, err = runtime.write_file(self.state_path, log.mask_secrets(json.encode(st)))
  if not ok and self.state_error ~= err then
    self.state_error = err
    log.error("cannot write run state (the previous state file is kept whole)", { file = self.state_path, err = tostring(err) })
  elseif ok and self.state_error then
    log.info("run state written again", { file = self.state_path, was = tostring(self.state_error) })
    self.state_error = nil
  end
end

--- One decision for a runner: read the account's config now (so changes
--- apply at the next decision), decide, record under which version.
function App:decision(r)
  -- the account's config and its version, read together now: a reload
  -- during the decision applies at the next one
  local acc, version = self.store:get("accounts." .. r.name), self.store:version()
  if not acc then return end
  r.phase = "deciding"
  r.mode = acc.mode
  local ok, rec = xpcall(M.decide, debug.traceback, self, r, acc)
  r.phase = "idle"
  if not ok then
    if task.is_cancelled(rec) then error(rec, 0) end
    log.error("decision failed", { account = r.name, err = tostring(rec) })
  end
  -- only a cycle that ran counts (not one skipped as busy or already run)
  if ok and rec then r.decisions = r.decisions + 1 end
  r.last_decision_at = runtime.wall_ms()
  r.last_config_version = version
  r.last_risk = acc.risk
  decisions_total:labels(r.name):inc()
  self:write_state()
  return acc.decision_interval_s
end

-- Milliseconds until the next decision: the next multiple of the
-- interval (so decisions follow candle closes), plus a moment for the
-- venue to close the candle.
local function until_next(interval_s)
  local iv = math.max(10, math.floor(interval_s * 1000))
  local now = runtime.wall_ms()
  local settle = iv >= 60000 and 1500 or 0
  return iv - now % iv + settle
end
M.until_next = until_next

function App:in_replay(acc)
  return self.store:get("replay") ~= nil and acc.exchange.venue == "sim"
end

--- What the agent did, to the API's stream and the notifications.
function App:observed(kind, data)
  if self.api then self.api:observe(kind, data) end
  if self.notifier then self.notifier:event(kind, data) end
end

--- Refresh the gauges /metrics shows that are read, not counted.
function App:update_gauges()
  local BREAKER = { closed = 0, half_open = 1, ["half-open"] = 1, open = 2 }
  for name, r in pairs(self.runners) do
    local a = self.agent and self.agent.accounts[name]
    local s = a and a.snapshot
    if s then
      equity_gauge:labels(name):set(s.equity)
      positions_gauge:labels(name):set(#s.positions)
      open_orders_gauge:labels(name):set(s.open_orders or 0)
    end
    paused_gauge:labels(name):set(a and a.paused and 1 or 0)
    running_gauge:labels(name):set(r.status == "running" and 1 or 0)
    if r.last_decision_at then last_decision_gauge:labels(name):set(r.last_decision_at / 1000) end
    local acc = self.store:get("accounts." .. name)
    if acc then
      interval_gauge:labels(name):set(acc.decision_interval_s)
      daily_limit_gauge:labels(name):set(acc.risk and acc.risk.max_daily_loss or 0)
    end
    if a and a.gate and s and a.gate.day_start_equity then daily_pnl_gauge:labels(name):set(s.equity - a.gate.day_start_equity) end
  end
  for name in pairs(self.stopped) do running_gauge:labels(name):set(0) end
  for _, b in ipairs(require("vibex.breaker").all()) do breaker_gauge:labels(b.name):set(BREAKER[b.state] or 0) end
  if self.writer and self.writer.pending then journal_gauge:set(self.writer:pending()) end
end

-- ---- starting an account ----------------------------------------------------------------------

-- Why an account cannot start, as the person running it needs it: what,
-- how to fix it, and whether trying again later can help.
local function explain(step, err, acc)
  local e = type(err) == "table" and err or { message = tostring(err) }
  local kind, msg = e.kind, e.message or tostring(err)
  local where = acc.exchange.base_url or acc.exchange.venue
  if kind == "auth" then
    return ("%s: the venue refused the account's keys (%s)"):format(step, msg),
      "check accounts." .. acc.name .. ".exchange.credentials (api_key and api_secret for V1 keys; user, signer and private_key for V3) and the key's permissions", false
  end
  if e.retryable or kind == "unknown" or kind == "banned" or e.transport then
    return ("%s: the venue at %s cannot be reached or is not answering (%s)"):format(step, where, msg),
      "check exchange.base_url / ws_url and the network; vibex keeps trying", true
  end
  if kind == "script" then
    return ("%s: %s"):format(step, msg), "create the script or name an existing one in the strategy; vibex checks again", true
  end
  if kind == "config" then return ("%s: %s"):format(step, msg), e.fix or "fix the account's config", false end
  if kind == "not_found" then
    return ("%s: %s"):format(step, msg), "use a symbol the venue lists (GET /fapi/v1/exchangeInfo) in accounts." .. acc.name .. ".symbols", false
  end
  return ("%s: %s"):format(step, msg), "see the message; the account stays stopped until the config changes", false
end

-- The scripts a strategy names must exist (in its own dir or scripts/).
function App:check_scripts(acc) return self.agent:check_scripts(acc) end

-- The shared market-data service of a venue (public data: no keys).
function App:market_for(acc)
  local ex = acc.exchange
  local client, err = exchange.from_config { name = acc.name, exchange = { venue = ex.venue, base_url = ex.base_url,
                                                                           ws_url = ex.ws_url, testnet = ex.testnet } }
  if not client then return nil, errors.new("config", tostring(err)) end
  if not client.ws_url then
    return nil, errors.new("config", "no WebSocket URL for the market data streams", { fix = "set accounts." .. acc.name .. ".exchange.ws_url (e.g. wss://fstream.asterdex.com)" })
  end
  local key = ("%s %s %s"):format(ex.venue, client.base_url, client.ws_url)
  local md = self.markets[key]
  if not md then
    -- registered before anything yields: accounts start side by side, and
    -- a venue must have one service, not one per account
    md = marketdata.live { client = client, name = ex.venue }
    self.markets[key] = md
  end
  return md, key
end

-- Bring an account up on its venue. true | nil, err (see explain).
function App:bring_up(r, acc)
  local okc, cerr = self:check_scripts(acc)
  if not okc then return nil, "scripts", cerr end
  local strat = self.agent:strategy(acc)
  local intervals = strat.intervals or { "5m", "1h" }
  local o = {}
  local simulated = self:in_replay(acc) or acc.exchange.venue == "sim" or acc.mode == "paper"
  if simulated then
    o.sim = require("vibex.exchange.paper").venue(acc)
    o.venue = venues.new(o.sim, { account = acc.name })
  end
  if self:in_replay(acc) then
    self.replay_md = self.replay_md or marketdata.replay { interval = self.store:get("replay").interval or "5m" }
    local ok, terr = self.replay_md:track(acc.symbols, intervals, 400)
    if not ok then return nil, "market data", errors.new("config", terr) end
    o.market = self.replay_md
  elseif simulated then
    if acc.exchange.venue ~= "sim" then -- paper next to a live market: its public data feeds the sim
      local md, key = self:market_for(acc)
      if not md then return nil, "market data", key end
      local ok, terr = md:track(acc.symbols, intervals, 400)
      if not ok then return nil, "market data", errors.new("unavailable", terr) end
      o.market, o.data_venue, r.market_key = md, true, key
    end
    o.persist_paper = true
    local snap = self.repos and self.repos.ledger:paper_load(acc.name)
    if snap then
      local ok, err = pcall(o.sim.restore, o.sim, snap)
      log.info(ok and "paper account restored" or "paper account not restored", { account = acc.name, err = err and tostring(err) })
    end
    -- the snapshot is from the last cycle; fills recorded after it (a kill
    -- between cycles) used ids the restored venue must not hand out again
    if self.repos then
      local ids = self.repos.fills:max_ids(acc.name)
      if ids then o.sim:set_ids(ids.order + 1, ids.trade + 1) end
    end
  else
    local client, ferr = exchange.from_config(acc)
    if not client then return nil, "venue", errors.new("config", tostring(ferr)) end
    local v = venues.new(client, { account = acc.name })
    local ok, err = v:connect()
    if not ok then return nil, "venue (clock and exchange info)", err end
    for _, sym in ipairs(acc.symbols) do
      local rules, rerr = v:rules(sym)
      if not rules then return nil, "venue", errors.new("not_found", tostring(rerr and rerr.message or rerr)) end
    end
    local bals, berr = v:balances()
    if not bals then return nil, "account (keys)", berr end
    local md, key = self:market_for(acc)
    if not md then return nil, "market data", key end
    local tok, terr = md:track(acc.symbols, intervals, 400)
    if not tok then return nil, "market data (history and streams)", errors.new("unavailable", terr) end
    o.venue, o.market, r.market_key = v, md, key
  end
  if not self:in_replay(acc) then o.run_id = self:begin_account_run(r, acc, simulated) end
  local ok, err = pcall(self.agent.add_account, self.agent, acc, o)
  if not ok then
    self:end_account_run(r, "failed", tostring(err))
    return nil, "account", errors.new("config", (tostring(err):gsub("^.-:%d+: ", "")))
  end
  if not self:in_replay(acc) then
    local s, rerr = self.agent:reconcile(acc.name, "start")
    if not s then
      self.agent:remove_account(acc.name)
      self:end_account_run(r, "failed", tostring(rerr))
      return nil, "reconciliation with the venue", errors.new("unavailable", tostring(rerr))
    end
  else
    self.agent.accounts[acc.name].started = true
  end
  return true
end

-- A live or paper account's run: one per start (earlier ones of the
-- account that a dead process left open are marked crashed).
function App:begin_account_run(r, acc, simulated)
  if not self.repos then return nil end
  local kind = simulated and "paper" or "live"
  local snap = self.store:snapshot()
  local row, err, crashed = self.repos.runs:begin { kind = kind, identity = require("vibex.crypto").sha256(kind .. "|" .. acc.name),
    accounts = { acc.name }, config_hash = snap.hash,
    script_versions = self.agent:script_hashes(self.agent:strategy(acc)) }
  if not row then
    log.warn("run not recorded in the database", { account = acc.name, error = tostring(err) })
    return nil
  end
  r.run_id = tonumber(row.run_id)
  for _, id in ipairs(crashed or {}) do
    log.warn(("run %d of account %s ended without a word (its process is gone): recorded as crashed"):format(id, acc.name),
      { account = acc.name, run = id })
  end
  log.info(("account %s: run %d (%s)"):format(acc.name, r.run_id, kind), { account = acc.name, run = r.run_id })
  return r.run_id
end

function App:end_account_run(r, outcome, why)
  if not (r.run_id and self.repos) then return end
  local id = r.run_id
  r.run_id = nil
  local _, err = self.repos.runs:finish(id, outcome, why and { reason = why } or nil)
  if err then log.warn("run end not recorded", { account = r.name, run = id, error = tostring(err) }) end
end

-- Start an account, retrying with backoff where the cause can pass.
function App:start_runner(r, acc)
  local attempt = 0
  while not r.stopping do
    local ok, step, err = self:bring_up(r, acc)
    if ok then
      r.status, r.reason, r.fix, r.retry_at = "running", nil, nil, nil
      log.info("account running", { account = acc.name, venue = acc.exchange.venue, mode = acc.mode,
                                    symbols = table.concat(acc.symbols, ",") })
      self:write_state()
      return true
    end
    local why, fix, retry = explain(step, err, acc)
    attempt = attempt + 1
    r.status, r.reason, r.fix, r.attempts = "failed", why, fix, attempt
    local wait = retry and math.min(60000, 1000 * 2 ^ math.min(attempt - 1, 6)) or nil
    r.retry_at = wait and (runtime.wall_ms() + wait) or nil
    log.error(("account %s cannot start: %s. Fix: %s"):format(acc.name, why, fix),
      { account = acc.name, retry_in_ms = wait and math.floor(wait) or nil, attempt = attempt })
    self:write_state()
    if not retry then return false end
    task.sleep(wait)
  end
  return false
end

-- The runner's task: whatever ends it (done, failed, cancelled), the tasks
-- waiting for it to end are woken (App:halt_runner, which must not use a
-- join: during a shutdown only waits for I/O are allowed).
function App:runner_task(r, body)
  return task.spawn("account:" .. r.name, function()
    local ok, err = pcall(body)
    r.ended = true
    local waiting = r.end_waiters or {}
    r.end_waiters = nil
    for _, t in ipairs(waiting) do task.unpark(t) end
    if not ok and not task.is_cancelled(err) then error(err, 0) end
  end)
end

function App:start_account(acc)
  local r = { name = acc.name, status = "starting", decisions = 0, phase = "idle", venue = acc.exchange.venue,
              started_at = runtime.wall_ms(), positions = {}, mode = acc.mode, attempts = 0 }
  self.runners[acc.name] = r
  self.stopped[acc.name] = nil
  if self:in_replay(acc) then
    r.replay = true
    self:start_runner(r, acc) -- a failure is logged and shown; the replay runs without the account
    r.task = task.spawn("account:" .. acc.name, function() end) -- the replay drives its cycles
  else
    r.task = self:runner_task(r, function()
      if not self:start_runner(r, acc) then return end
      r.reconcile_task = task.spawn("reconcile-every:" .. acc.name, function()
        while not r.stopping do
          local cur = self.store:get("accounts." .. acc.name)
          task.sleep(((cur and cur.reconcile and cur.reconcile.interval_s) or 300) * 1000)
          if r.stopping or not self.agent.accounts[acc.name] then break end
          local ok, err = self.agent:reconcile(acc.name, "periodic")
          if not ok then log.warn("periodic reconciliation failed", { account = acc.name, error = tostring(err) }) end
          self:write_state()
        end
      end)
      task.sleep(until_next(acc.decision_interval_s))
      while not r.stopping do
        local interval = self:decision(r)
        if not interval or r.stopping then break end
        task.sleep(until_next(interval))
      end
    end)
  end
  accounts_gauge:inc()
  log.info("account started", { account = acc.name, mode = acc.mode, venue = acc.exchange.venue,
                                symbols = table.concat(acc.symbols, ","), config_version = self.store:version() })
end

--- End a runner's task after its current decision (at once when it is
--- between decisions) and forget it.
function App:halt_runner(r)
  r.stopping = true
  if r.reconcile_task then r.reconcile_task:cancel() end
  -- between decisions the runner just sleeps: end it now; a decision in
  -- progress finishes first, its records included (the wait is one for
  -- I/O, which a shutdown's grace period lets run)
  if r.phase == "idle" then r.task:cancel() end
  if not r.ended and not r.replay and task.current() then
    r.end_waiters = r.end_waiters or {}
    r.end_waiters[#r.end_waiters + 1] = task.current()
    pcall(task.timeout, 60000, task.park, true)
  end
  self.runners[r.name] = nil
  accounts_gauge:dec()
end

--- Stop a runner after its current decision. Open positions stay on the
--- venue; they are logged so a person can see what was left.
function App:stop_account(name, reason)
  local r = self.runners[name]
  if not r then return end
  self:count_replay_cycles(r)
  self:halt_runner(r)
  if self.agent then
    if self.agent.accounts[name] then self.agent.accounts[name].rq:flush() end
    self.agent:remove_account(name)
  end
  self:end_account_run(r, "stopped", reason)
  r.status = "stopped"
  r.stopped_at = runtime.wall_ms()
  self.stopped[name] = r
  log.info("account stopped", { account = name, reason = reason, decisions = r.decisions,
                                open_positions = #r.positions, positions_left = "untouched" })
  for _, p in ipairs(r.positions) do
    log.warn("open position left untouched", { account = name, symbol = p.symbol, side = p.side, qty = p.qty })
  end
end

local function changed_keys(a, b)
  local keys = {}
  for k, v in pairs(a) do if not config.deep_equal(v, b[k]) then keys[#keys + 1] = k end end
  for k in pairs(b) do if a[k] == nil then keys[#keys + 1] = k end end
  table.sort(keys)
  return keys
end

local function by_name(list)
  local m = {}
  for _, a in ipairs(list or {}) do if a.enabled ~= false then m[a.name] = a end end
  return m
end

--- Apply a new snapshot: touch only what changed.
--- Record the applied config (secrets masked) and make sure every account
-- has its row; journaled when the database is away.
function App:persist_config(snap)
  if not self.repos then return end
  local ok, err = self.repos.ledger:config_version(snap, config.render(snap.config), self.path)
  if not ok then log.warn("config version not recorded in the database", { error = tostring(err) }) end
  for _, acc in ipairs(snap.config.accounts) do
    local _, aerr = self.repos.accounts:ensure { name = acc.name, venue = acc.exchange.venue,
                                                 mode = acc.mode == "live" and "live" or "paper" }
    if aerr then log.warn("account not recorded in the database", { account = acc.name, error = tostring(aerr) }) end
  end
end

-- what scripts must export and their budgets follow the config
function App:apply_script_settings(cfg)
  local agent = require "vibex.agent"
  local exports = agent.script_exports(cfg)
  local limits, max_failures = agent.script_limits(cfg)
  local regs = {}
  if self.scripts then regs[#regs + 1] = self.scripts end
  for _, r in pairs(self.agent and self.agent.registries or {}) do regs[#regs + 1] = r end
  for _, r in ipairs(regs) do
    r:set_exports(exports)
    r:set_limits(limits, max_failures)
  end
end

function App:reconcile(new, old)
  local nc, oc = new.config, old and old.config or {}
  config_version_gauge:set(new.version)
  self:persist_config(new)
  if not config.deep_equal(nc.runtime, oc.runtime) then
    configure_logging(nc.runtime)
    log.info("runtime settings applied", { changed = table.concat(changed_keys(nc.runtime, oc.runtime or {}), ",") })
  end
  self:apply_script_settings(nc)
  for _, section in ipairs { "database", "api" } do
    if old and not config.deep_equal(nc[section], oc[section]) then
      log.warn(section .. " settings changed: they take effect after a restart", { section = section })
    end
  end
  local new_accounts, old_accounts = by_name(nc.accounts), by_name(oc.accounts)
  for name in pairs(old_accounts) do
    if not new_accounts[name] then self:stop_account(name, "removed from the config or disabled") end
  end
  for name, acc in pairs(new_accounts) do
    local prev = old_accounts[name]
    if not prev or not self.runners[name] then
      self:start_account(acc)
    elseif not config.deep_equal(acc, prev) then
      local keys = changed_keys(acc, prev)
      log.info("account config changed; applies at its next decision", { account = name,
        changed = table.concat(keys, ","), config_version = new.version })
      local r = self.runners[name]
      -- a new interval should not wait out the old one
      if acc.decision_interval_s ~= prev.decision_interval_s and r.phase == "idle" then
        self:halt_runner(r)
        local decisions = r.decisions
        self:start_account(acc)
        self.runners[name].decisions = decisions
      end
    end
  end
  self:write_state()
end

--- A .env holds keys: one that others can read is reported (with the fix).
function M.check_dotenv(path)
  local st = runtime.stat(path)
  if st and st.mode and bit.band(st.mode, 63) ~= 0 then -- any group or other bit (0077)
    log.warn(("%s can be read by other users of this machine, and it holds secrets"):format(path),
      { file = path, mode = ("%04o"):format(st.mode), fix = "chmod 600 " .. path })
  end
end

--- Start the app on a config file. Returns the app | nil, errors.
--- opts: store (default: the process's config store), environment.
function M.start(path, opts)
  opts = opts or {}
  local snap, problems = config.load(path, { environment = opts.environment })
  if not snap then return nil, problems end
  local self = setmetatable({ path = path, store = opts.store or config.default, runners = {}, stopped = {},
                              markets = {} }, App)
  local cfg = snap.config
  configure_logging(cfg.runtime)
  M.check_dotenv(runtime.dirname(path) .. "/.env")
  local ok, err = runtime.mkdir_p(cfg.runtime.data_dir)
  if not ok then return nil, { { path = "runtime.data_dir", message = ("cannot create %s: %s"):format(cfg.runtime.data_dir, tostring(err)) } } end
  self.state_path = cfg.runtime.data_dir .. "/state.json"
  -- the database must answer and be at the latest migration before anything trades
  local db = require "vibex.db"
  local h, derr = db.open { url = cfg.database.url, data_dir = cfg.runtime.data_dir, pool_size = cfg.database.pool_size,
                            statement_timeout_ms = cfg.database.statement_timeout_ms }
  if not h then return nil, { { path = "database", message = tostring(derr) } } end
  local behind_ok, behind = require("vibex.db.migrate").check(h.pool, nil, "vibex migrate up " .. path)
  if not behind_ok then
    h.close()
    return nil, { { path = "database", message = errors.message(behind) } }
  end
  self.db = h
  self.writer = require("vibex.db.journal").writer { pool = h.pool, path = cfg.runtime.data_dir .. "/journal/db.jsonl",
                                                      on_outage = cfg.database.on_outage }
  self.repos = db.repos { pool = h.pool, writer = self.writer }
  self.store:apply(snap)
  if cfg.api.enabled then
    local api, aerr = require("vibex.api").start(self, cfg.api)
    if not api then
      self.writer:close()
      h.close()
      return nil, { { path = "api", message = aerr } }
    end
    self.api = api
    io.stdout:write(("vibex: the API and the dashboard are at %s/\n"):format(api.url))
    io.stdout:flush()
  end
  if #cfg.notifications > 0 then
    self.notifier = require("vibex.notify").new { config = function() return self.store:get("notifications") end }
  end
  runtime.set_grace_ms(cfg.runtime.shutdown_grace_ms)
  log.info("vibex starting", { config = path, environment = snap.environment, version = snap.version,
                               hash = snap.hash:sub(1, 12), accounts = #cfg.accounts })
  local scripts_dir = runtime.home() .. "/scripts"
  if runtime.exists(scripts_dir) then
    local agent = require "vibex.agent"
    local limits, max_failures = agent.script_limits(cfg)
    self.scripts = scripts.registry { dir = scripts_dir, exports = agent.script_exports(cfg), limits = limits,
                                      max_failures = max_failures }
    self.scripts:load_all()
    self.scripts:watch()
  end
  local current = function() return self.store:get() end
  self.agent = require("vibex.agent").new { config = current, repos = self.repos, writer = self.writer, scripts = self.scripts,
                                             observe = function(kind, data) self:observed(kind, data) end,
                                             lab = require("vibex.ab").new { pool = h.pool, config = current },
                                             data_dir = cfg.runtime.data_dir }
  self:reconcile(snap, nil)
  if cfg.replay then self:start_replay(cfg) end
  self.watcher = self.store:watch(path, {
    environment = opts.environment,
    on_applied = function(new, old) self:reconcile(new, old) end,
  })
  return self
end

--- Run the replay of the paper accounts on the sim venue in its own task;
-- print the summary when it ends.
function App:start_replay(cfg)
  local accounts = {}
  for _, acc in ipairs(cfg.accounts) do
    if acc.enabled ~= false and self:in_replay(acc) and self.agent.accounts[acc.name] then accounts[#accounts + 1] = acc end
  end
  if #accounts == 0 then
    log.error("replay not started: no replay account could start (see the errors above)")
    self.replay_done = true
    return
  end
  self.replay_task = task.spawn("replay", function()
    local run, err = require("vibex.agent.replay").new { agent = self.agent, config = cfg.replay, accounts = accounts,
      on_leaderboard = function(board) self.leaderboard = board; self:write_state() end }
    if not run then
      log.error("replay not started: " .. tostring(err))
      self.replay_done = true
      return
    end
    local rrow, rerr = self:begin_replay_run(cfg, accounts, run)
    if not rrow and self.repos then
      log.error("replay not started: its run cannot be recorded: " .. tostring(rerr))
      self.replay_done = true
      return
    end
    local t0 = runtime.wall_ms()
    local ok, summary, serr = pcall(run.run, run)
    local outcome = ok and summary and "completed" or "failed"
    if not ok and task.is_cancelled(summary) then error(summary, 0) end -- stopped: App:stop records it
    if self.run_row and self.repos then
      self.agent:flush_records()
      self.repos.runs:finish(self.run_row.run_id, outcome, { candles = run.candles, cycles = run.cycles,
                                                            caught_up = run.caught_up })
      log.info("replay run " .. outcome, { run = self.run_row.run_id, cycles = run.cycles })
    end
    if not ok then self.replay_done = true; error(summary, 0) end
    if not summary then log.error("replay failed: " .. tostring(serr)) end
    if summary then
      summary.wall_ms = runtime.wall_ms() - t0
      summary.run_id = self.run_row and self.run_row.run_id
      summary.resumes = self.run_row and tonumber(self.run_row.resumes)
      io.stdout:write(require("vibex.agent.summary").render(self, accounts, summary), "\n")
      io.stdout:flush()
    end
    self.replay_done = true
  end)
end

-- The replay's run: the one a crashed or stopped start of the same config,
-- scripts and data left unfinished (resumed: its cycles are run again from
-- what was recorded, and writing them again changes nothing), or a new one.
function App:begin_replay_run(cfg, accounts, run)
  if not self.repos then return nil end
  local names, scripts_used = {}, {}
  for i, acc in ipairs(accounts) do
    names[i] = acc.name
    scripts_used[acc.name] = self.agent:script_hashes(self.agent:strategy(acc))
  end
  local snap = self.store:snapshot()
  -- what decides the replay's outcome, as canonical text (sorted keys): its
  -- section, its accounts' settings, their strategies and scripts by content,
  -- the models, the data. Another account edited in the same file changes
  -- nothing of it, so a crashed replay still resumes.
  local used = {}
  for _, acc in ipairs(accounts) do
    local name = acc.strategy
    if name and cfg.strategies then used[name] = cfg.strategies[name] end
  end
  local identity = require("vibex.crypto").sha256(config.canonical_text { kind = "replay", replay = cfg.replay,
    accounts = accounts, strategies = used, llm = cfg.llm, scripts = scripts_used, from = run.from_ms, to = run.to_ms,
    candles = run.n_candles, environment = snap.environment })
  local row, resumed, crashed = self.repos.runs:begin { kind = "replay", identity = identity, accounts = names, config_hash = snap.hash,
    script_versions = scripts_used, data_from_ms = run.from_ms, data_to_ms = run.to_ms, resume = true,
    details = { interval = run.interval, symbols = run.symbols } }
  if not row then return nil, resumed end
  self.run_row = row
  local run_id = tonumber(row.run_id)
  run.recorded = {}
  for _, acc in ipairs(accounts) do
    local a = self.agent.accounts[acc.name]
    self.agent:set_run(a, run_id)
    a.order_scope = "r" .. run_id
    -- the run's venue ids are its own: fills of two runs never share a trade id
    if a.sim then a.sim:set_ids(run_id * 1e9 + 1, run_id * 1e9 + 1) end
    if resumed then
      local rec, derr = self.repos.decisions:for_run(run_id, acc.name)
      if not rec then return nil, derr end
      run.recorded[acc.name] = rec
    end
  end
  for _, id in ipairs(crashed or {}) do
    log.warn(("replay run %d ended without a word (its process is gone): recorded as crashed"):format(id), { run = id })
  end
  if resumed then
    local n = 0
    for _, r in pairs(run.recorded) do for _ in pairs(r) do n = n + 1 end end
    log.warn("resuming replay run " .. run_id .. " left unfinished by an earlier start: its recorded cycles are replayed "
      .. "from the record (no model calls), then it carries on", { run = run_id, recorded_cycles = n,
                                                                   resumes = tonumber(row.resumes) })
  else
    log.info("replay run " .. run_id .. " started", { run = run_id, accounts = table.concat(names, ",") })
  end
  return row
end

function App:stop()
  -- every step on its own: one that fails (a call refused because the loop
  -- is shutting down) must not leave connections or the database open
  local function step(what, fn, ...)
    local ok, err = pcall(fn, ...)
    if not ok and not task.is_cancelled(err) then log.warn("shutdown step failed", { step = what, error = tostring(err) }) end
  end
  if self.replay_task and not self.replay_done then
    self.replay_task:cancel()
    -- a replay stopped half way: its run says so, and the next start resumes it
    if self.run_row and self.repos then
      step("replay run", function()
        self.agent:flush_records()
        self.repos.runs:finish(self.run_row.run_id, "stopped", { reason = "shutdown" })
        log.info("replay run stopped; the next start resumes it", { run = self.run_row.run_id })
      end)
    end
  end
  if self.api then step("api", self.api.close, self.api) end
  if self.watcher then step("config watcher", self.watcher.close) end
  if self.scripts then step("scripts", self.scripts.close, self.scripts) end
  local names = {}
  for name in pairs(self.runners) do names[#names + 1] = name end
  for _, name in ipairs(names) do step("account " .. name, self.stop_account, self, name, "shutdown") end
  for _, md in pairs(self.markets) do step("market data", md.close, md) end
  if self.agent then step("agent", self.agent.close, self.agent) end -- the strategies' own script watchers
  if self.notifier then step("notifications", self.notifier.close, self.notifier) end
  step("state", self.write_state, self)
  -- the local server is stopped and waited for (an I/O wait, which a
  -- shutdown lets finish), unless another vibex still uses it
  if self.writer then step("journal", self.writer.close, self.writer) end
  if self.db then step("database", self.db.close) end
end

--- `vibex run CONFIG`: start, run until SIGINT/SIGTERM, stop cleanly.
function M.run(path)
  local app, problems = M.start(path)
  if not app then
    io.stderr:write(config.format_errors(problems, path), "\n")
    io.stderr:write(("vibex: %s: not started (%d error%s)\n"):format(path, #problems, #problems == 1 and "" or "s"))
    return 2
  end
  local up = metrics.gauge("vibex_up", "1 while vibex run is running")
  up:set(1)
  local done = false
  local main = task.current()
  -- the main task waits as for I/O (woken by the shutdown hook), not in a
  -- sleep: a shutdown ends sleeping tasks at once, and this one still has
  -- to stop everything cleanly, which means waiting for the last writes
  runtime.on("shutdown", function()
    done = true
    task.unpark(main)
  end)
  while not done do
    local ok, err = pcall(task.timeout, app.replay_task and 50 or 1000, task.park, true)
    if not ok and not task.is_timeout(err) then break end
    -- a replay that ended with nothing else running ends the run (the
    -- API, when it runs, keeps serving its results until a signal)
    if app.replay_done then
      local others = app.api ~= nil
      for _, r in pairs(app.runners) do if not r.replay then others = true end end
      if not others then break end
      if app.api and not app.said_serving then
        app.said_serving = true
        log.info(("replay finished; the API keeps serving at %s until Ctrl-C"):format(app.api.url))
      end
    end
  end
  app:stop()
  up:set(0)
  log.info("vibex stopped")
  return 0
end

return M
