--- vibex.agent — the decision cycle: context → prompt → model →
-- parse/validate → policy → risk gate → execute → record, per account.
--
--   local ag = agent.new{config = cfg, repos = repos, scripts = registry, venue = function(acc) … end}
--   ag:add_account(acc)                  -- acc: an accounts[i] entry of the config
--   local rec = ag:cycle("trend")        -- one cycle; never two at once for one account
--
-- Every step is timed (rec.step_ms) and logged; the whole cycle is one row
-- of `decisions`, and a diary entry. Scripts (context, prompt, policy,
-- rules) come from the hot-reloaded registry and are looked up at every
-- call, so an edit applies at the next cycle and a broken edit keeps the
-- previous version. Scripts get data, never the venue: the orders they plan
-- go out through vibex.agent.execute, which calls the risk gate
-- (vibex.agent.risk) itself, so no path sends an order the gate did not see.
--
-- Market data comes from the venue's market-data service (vibex.marketdata):
-- a cycle copies what it needs from the buffers at its start and reads
-- only that copy; no REST call is on its path. The venue is seen through
-- vibex.exchange.venue, in the trading vocabulary (no wire field names).
--
-- Where decisions come from, per cycle:
--   model     the account's LLM provider (accounts[i].llm, llm.default, or
--             VIBEX_LLM_URL/VIBEX_LLM_KEY), behind its circuit breaker;
--   fallback  when no model is configured, the provider's breaker is open,
--             the call failed, or the answers were invalid `after_invalid`
--             times in a row (then for `cooldown_s`): "rules" runs the
--             strategy's rule-based script, "hold" does nothing. Engaging
--             and releasing are logged and written in the diary.
local json = require "vibex.json"
local log = require "vibex.log"
local task = require "vibex.task"
local runtime = require "vibex.runtime"
local metrics = require "vibex.metrics"
local recent = require "vibex.recent"
local llm = require "vibex.llm"
local decision = require "vibex.agent.decision"
local risk = require "vibex.agent.risk"
local marketdata = require "vibex.marketdata"
local perf = require "vibex.agent.perf"
local execute = require "vibex.agent.execute"
local diary = require "vibex.agent.diary"
local safe_ta = require "vibex.sandbox.ta"
local recorder = require "vibex.agent.recorder"
local reconcile = require "vibex.agent.reconcile"
local venues = require "vibex.exchange.venue"

local M = {}

local alog = log.channel("app")
local tlog = log.channel("trading")
local llog = log.channel("llm")

local refusals_total = metrics.counter("vibex_risk_refusals_total", "Orders refused by the risk gate", { "account", "rule" })

local Agent = {}
Agent.__index = Agent

-- The agent's methods live in files that each do one thing; this file is
-- the cycle and the account registry.
for _, part in ipairs { "vibex.agent.view", "vibex.agent.conversation", "vibex.agent.record", "vibex.agent.rewards",
                        "vibex.agent.manual" } do
  for name, fn in pairs(require(part)) do
    assert(Agent[name] == nil, "two definitions of Agent:" .. name)
    Agent[name] = fn
  end
end

--- o: config (the whole config table, or a function returning the current
-- one), repos (vibex.db repos, optional), writer (journal writer, for the
-- outage state), scripts (a vibex.scripts registry over scripts/),
-- venue(acc) -> venue, clock() -> ms (default: the venue's clock),
-- getenv (os.getenv), llm_client(provider) (default vibex.llm.client),
-- lab (vibex.ab: experiments; nil runs none), data_dir (where the order
-- logs live; default the config's runtime.data_dir), market(acc) -> the
-- account's vibex.marketdata service (default: add_account's o.market, else
-- a replay service fed by pushes), sink (instead of repos: what a cycle
-- leaves goes to sink:cycle(a, acc, rec, view), the venue's events to
-- sink:event(a, name, ev), orders to the recorder sink:recorder(name) —
-- vibex.backtest.collector), wrap_client(client, provider) (each model
-- client as the cycle sees it: vibex.llm.replay answers from a record).
function M.new(o)
  local self = setmetatable({
    get_config = type(o.config) == "function" and o.config or function() return o.config end,
    repos = o.repos, writer = o.writer, scripts = o.scripts, registries = {}, make_venue = o.venue,
    clock = o.clock, getenv = o.getenv or os.getenv, make_client = o.llm_client or llm.client,
    clients = {}, accounts = {}, env_provider = false, lab = o.lab, data_dir = o.data_dir, make_market = o.market,
    sink = o.sink, wrap_client = o.wrap_client, observer = o.observe,
  }, Agent)
  self.env_provider = llm.provider_from_env(self.getenv) or false
  return self
end

-- ---- configuration lookups ------------------------------------------------------------------

--- What a script in each role must export, and how many arguments the
-- runtime passes it.
M.ROLES = { context = { build = 1 }, prompt = { render = 2 }, policy = { plan = 3 }, rules = { decide = 2 } }
local DEFAULT_SCRIPTS = { context = "context", prompt = "prompt", policy = "policy", rules = "ema_cross" }

--- {script name = {fname = arity}} for every script a config's strategies,
-- accounts and experiment variants name (and the default names).
function M.script_exports(cfg)
  local out = {}
  local function add(strat)
    if type(strat) ~= "table" then return end
    for role, fns in pairs(M.ROLES) do
      local name = strat[role]
      if type(name) == "string" then
        out[name] = out[name] or {}
        for f, n in pairs(fns) do out[name][f] = n end
      end
    end
  end
  add(DEFAULT_SCRIPTS)
  for _, st in pairs(cfg.strategies or {}) do add(st) end
  for _, acc in ipairs(cfg.accounts or {}) do add(acc.strategy) end
  for _, e in ipairs(cfg.experiments or {}) do
    for _, v in ipairs(e.variants or {}) do add(v) end
  end
  return out
end

--- The budget scripts run under, from a config's runtime section.
function M.script_limits(cfg)
  local rt = cfg.runtime or {}
  return { time_ms = rt.script_budget_ms or 200, memory_mb = rt.script_memory_mb or 64 }, rt.script_max_failures or 3
end

function Agent:config() return self.get_config() end

--- The strategy table of an account (resolving a name in `strategies`).
function Agent:strategy(acc)
  local s = acc.strategy or {}
  if type(s) == "string" then
    local named = self:config().strategies[s]
    if not named then error(("account %s: no strategy named %q"):format(acc.name, s)) end
    local copy = {}
    for k, v in pairs(named) do copy[k] = v end
    copy.name = copy.name or s
    return copy
  end
  local copy = {}
  for k, v in pairs(s) do copy[k] = v end
  copy.name = copy.name or (acc.name .. "-strategy")
  return copy
end

--- The provider table for an account, or nil when it has no model. An
-- experiment's variant may name another provider and/or model.
function Agent:provider(acc, variant)
  local cfg = self:config()
  local name = (variant and variant.llm) or acc.llm or (cfg.llm and cfg.llm.default)
  local p
  if name then
    for _, x in ipairs(cfg.llm.providers or {}) do
      if x.name == name and x.kind ~= "fake" then p = x end
    end
  end
  p = p or self.env_provider or nil
  if p and variant and variant.model and variant.model ~= p.model then
    local copy = {}
    for k, v in pairs(p) do copy[k] = v end
    copy.model = variant.model
    p = copy
  end
  return p
end

-- The strategy as an experiment's variant changes it: scripts it names,
-- params merged over the strategy's.
local function apply_variant(strat, variant)
  for _, role in ipairs { "context", "prompt", "policy" } do
    if variant[role] then strat[role] = variant[role] end
  end
  local params = {}
  for k, v in pairs(strat.params or {}) do params[k] = v end
  for k, v in pairs(variant.params or {}) do params[k] = v end
  strat.params = params
  return strat
end

function Agent:client(p)
  local key = p.name .. "\0" .. (p.base_url or "") .. "\0" .. (p.model or "")
  local c = self.clients[key]
  if not c then
    c = self.make_client(p)
    if self.wrap_client then c = self.wrap_client(c, p) end
    self.clients[key] = c
  end
  return c
end

-- A strategy's scripts: its own dir first, then scripts/.
function Agent:script(strat, role)
  local name = strat[role]
  if strat.dir then
    local reg = self.registries[strat.dir]
    if not reg then
      local cfg = self:config()
      local limits, max_failures = M.script_limits(cfg)
      reg = require("vibex.scripts").registry { dir = strat.dir, extra = self.scripts and self.scripts.extra or nil,
                                                exports = M.script_exports(cfg), limits = limits, max_failures = max_failures }
      reg:load_all()
      reg:watch()
      self.registries[strat.dir] = reg
    end
    if reg:get(name) then return reg, name end
  end
  return self.scripts, name
end

function Agent:call_script(strat, role, fname, ...)
  local reg, name = self:script(strat, role)
  if not reg then error("no scripts directory: cannot run " .. tostring(name)) end
  return reg:call(name, fname, ...)
end

-- A script that was just disabled is said once, in the log and the diary.
function Agent:note_disabled(a, acc, strat, role)
  local off = self:script_disabled(strat, role)
  local key = role .. ":" .. tostring(strat[role])
  a.disabled_noted = a.disabled_noted or {}
  if off and not a.disabled_noted[key] then
    a.disabled_noted[key] = true
    local what = role == "context" and "the cycle holds until it is fixed"
      or role == "prompt" and "the fallback decides until it is fixed"
      or "no orders come from it until it is fixed"
    alog:error(("%s script %s disabled: %s; %s"):format(role, tostring(strat[role]), off, what),
      { account = acc.name, script = strat[role] })
    a.pending_notes[#a.pending_notes + 1] = ("The %s script %s was disabled (%s); %s."):format(role, tostring(strat[role]), off, what)
  elseif not off then
    a.disabled_noted[key] = nil
  end
  return off
end

--- The scripts an account's strategy names must exist (in its own dir or
-- scripts/): true | nil, err (kind script) naming the first missing one.
function Agent:check_scripts(acc)
  local strat = self:strategy(acc)
  for _, role in ipairs { "context", "prompt", "policy", "rules" } do
    local name = strat[role]
    if name then
      local found = (strat.dir and runtime.exists(strat.dir .. "/" .. name .. ".lua"))
        or runtime.exists(runtime.home() .. "/scripts/" .. name .. ".lua")
      if not found then
        return nil, require("vibex.errors").new("script", ("the %s script %q does not exist (looked in %sscripts/)")
          :format(role, name, strat.dir and (strat.dir .. "/ and ") or ""))
      end
    end
  end
  return true
end

--- Why the script in `role` is disabled (nil when it runs).
function Agent:script_disabled(strat, role)
  local reg, name = self:script(strat, role)
  return reg and reg.disabled and reg:disabled(name)
end

--- What a strategy's scripts are, by content: {role = "name@sha256-prefix"}.
function Agent:script_hashes(strat)
  local out = {}
  for _, role in ipairs { "context", "prompt", "policy", "rules" } do
    local reg, name = self:script(strat, role)
    local e = reg and reg.entries and reg.entries[name]
    if e then out[role] = ("%s@%s"):format(name, tostring(e.source_hash):sub(1, 16)) end
  end
  return out
end

--- Wait until every account's queued records have been tried (the last
--- cycle's record, and the orders' and fills' rows).
function Agent:flush_records()
  for _, a in pairs(self.accounts) do
    self:wait_record(a)
    a.rq:flush()
  end
end

function Agent:script_version(strat, role)
  local reg, name = self:script(strat, role)
  return reg and ("%s@%s"):format(name, tostring(reg:version(name)))
end

-- ---- accounts -------------------------------------------------------------------------------------

--- Start tracking an account: its venue, market data, risk gate, user
-- stream (fills and order updates are recorded), order record and fallback
-- breaker. o: venue (a vibex.exchange.venue, or a wire client that one is
-- made of), market (the venue's vibex.marketdata service; a replay service
-- is made when none is given), sim (the simulated venue itself, for paper
-- accounts: replays feed it candles), data_venue (paper next to a live
-- market), persist_paper.
function Agent:add_account(acc, o)
  o = o or {}
  local strat = self:strategy(acc)
  local venue = o.venue or self.make_venue(acc)
  if getmetatable(venue) ~= venues.Venue then venue = venues.new(venue, { account = acc.name }) end
  local intervals = strat.intervals or { "5m", "1h" }
  local md = o.market or (self.make_market and self.make_market(acc))
  if not md then
    md = marketdata.replay { interval = intervals[1] }
    assert(md:track(acc.symbols, intervals, o.capacity or 400))
  end
  local cfg = self:config()
  local data_dir = self.data_dir or (cfg.runtime and cfg.runtime.data_dir) or "data"
  local a = {
    name = acc.name, venue = venue, live = venue.live, strategy = strat.name, data_venue = o.data_venue,
    sim = o.sim or (not venue.live and venue.client) or nil, persist_paper = o.persist_paper,
    market = md, mview = md:view(acc.symbols, intervals), intervals = intervals,
    gate = risk.gate { account = acc.name }, perf = perf.new(), exit_plans = {}, events = {},
    cycles = 0, invalid_streak = 0, fallback_until = nil, fallback_reason = nil, leverage = {}, busy = false,
    pending_notes = {}, known = recent.map(2000),   -- client ids placed lately (older: the database)
    rq = self.sink and self.sink:recorder(acc.name)
      or recorder.new { repos = self.repos, path = data_dir .. "/orders/" .. acc.name .. ".log", account = acc.name },
  }
  self:set_run(a, o.run_id)
  a.resolver = reconcile.resolver(self, a, acc.name)
  local us, uerr = venue:user_stream {
    -- the record is written as events come; the cycle's accounting reads them at its start
    on_event = function(ev)
      a.events[#a.events + 1] = ev
      self:record_event(a, acc.name, ev)
    end,
    -- after a reconnect: what happened while the stream was down comes from REST
    on_resync = function() if a.started then self:schedule_reconcile(a, "reconnect") end end,
  }
  if not us then error(("account %s: the user data stream cannot start: %s"):format(acc.name, tostring(uerr)), 0) end
  a.stream = us
  if self.repos then
    local replayed, rerr = a.rq:replay()
    if not replayed then error(("account %s: %s"):format(acc.name, tostring(rerr)), 0) end
    local last = self.repos.decisions:last_key(acc.name)
    a.recorded_key = last -- the newest cycle a previous process ran: never run again
    local sid, err = self.repos.strategies:ensure { name = strat.name, description = strat.description,
      scripts = { context = strat.context, prompt = strat.prompt, policy = strat.policy, rules = strat.rules, dir = strat.dir },
      params = strat.params }
    if sid then
      local cur = self.repos.strategies:current(acc.name)
      if not cur or cur.name ~= strat.name then self.repos.strategies:assign(acc.name, strat.name) end
    else
      alog:warn("strategy not recorded in the database", { account = acc.name, error = tostring(err) })
    end
  end
  self.accounts[acc.name] = a
  local p = self:provider(acc)
  if p then
    alog:info("account decides with a model", { account = acc.name, provider = p.name, model = p.model,
                                                 strategy = strat.name, fallback = acc.fallback.policy })
  else
    alog:warn(("no model configured for account %s: every decision comes from its fallback (%s)")
      :format(acc.name, acc.fallback.policy == "rules" and ("rules: " .. strat.rules) or "hold"),
      { account = acc.name, strategy = strat.name, hint = "set llm.providers / accounts[].llm, or VIBEX_LLM_URL and VIBEX_LLM_KEY" })
  end
  return a
end

--- The run an account's facts belong to (vibex.db.repo.runs).
function Agent:set_run(a, run_id)
  a.run_id = run_id
  a.rq.run_id = run_id
end

--- Reconcile an account with its venue now (start-up: before the first
-- decision). The summary | nil, err.
function Agent:reconcile(name, reason)
  local a = self.accounts[name]
  if not a then return nil, "unknown account " .. tostring(name) end
  local acc = self:account_config(name)
  local s, err = reconcile.run(self, a, acc, reason or "manual")
  if s and reason == "start" then
    -- no decision while an order's fate is open: one sent just before a
    -- kill may still reach the venue, until its acceptance window passes
    local window = reconcile.acceptance_ms(a.venue)
    local deadline = a.venue:now() + 3 * window + 5000
    while s and s.undecided > 0 and a.venue:now() < deadline do
      alog:info("waiting for orders whose outcome is still open before the first decision",
        { account = name, orders = s.undecided, wait_ms = math.min(window, 2000) })
      task.sleep(math.min(window, 2000))
      s, err = reconcile.run(self, a, acc, "start")
    end
    if s then a.started = true end
  end
  if s and s.undecided > 0 then self:schedule_reconcile(a, "retry", reconcile.acceptance_ms(a.venue)) end
  return s, err
end

--- A reconciliation soon, in its own task (several requests coalesce).
function Agent:schedule_reconcile(a, reason, delay_ms)
  if a.reconcile_task then return end
  a.reconcile_task = task.spawn("reconcile:" .. a.name, function()
    task.sleep(delay_ms or 200)
    a.reconcile_task = nil
    if not self.accounts[a.name] then return end
    local ok, err = self:reconcile(a.name, reason)
    if not ok then alog:warn("reconciliation failed; tried again later", { account = a.name, reason = reason, error = tostring(err) }) end
  end)
end

function Agent:remove_account(name)
  local a = self.accounts[name]
  if not a then return end
  -- each step on its own: a failing one (the loop is shutting down) must
  -- not leave the others undone
  if a.stream and a.stream.close then pcall(a.stream.close, a.stream) end
  if a.reconcile_task then a.reconcile_task:cancel() end
  pcall(self.wait_record, self, a)
  pcall(a.rq.close, a.rq)
  self.accounts[name] = nil
end

-- A paper account next to a live market lives on that market's clock: its
-- simulated venue's clock only moves when the cycle feeds it prices, and a
-- restored one would stand at its snapshot's time.
function Agent:now(a)
  if self.clock then return self.clock() end
  if a.data_venue then return a.market:now() end
  return a.venue:now()
end

-- ---- the cycle ---------------------------------------------------------------------------------------

local function cycle_key(now_ms, interval_s)
  local iv = math.max(1, math.floor(interval_s * 1000))
  local start = now_ms - now_ms % iv
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(start / 1000)) .. (iv % 1000 ~= 0 and ("." .. start % 1000) or "")
end
M.cycle_key = cycle_key

--- Run one cycle for an account now. Returns the cycle's record, or nil,
-- "busy" when the account's previous cycle is still running, or nil,
-- "already ran" for a cycle a previous process ran (after a restart).
function Agent:cycle(name, o)
  local a = self.accounts[name]
  if not a then error("agent:cycle: unknown account " .. tostring(name), 2) end
  if a.busy then
    alog:warn("cycle skipped: the previous one is still running", { account = name })
    return nil, "busy"
  end
  if a.paused then return nil, "paused" end
  a.busy = true
  -- the previous cycle's record first (it is written behind that cycle):
  -- this cycle starts from the database as that one left it
  local wok, werr = pcall(self.wait_record, self, a)
  if not wok then
    a.busy = false
    error(werr, 0)
  end
  -- No collector step inside the cycle (but while it waits for the model):
  -- the collector's work for what the cycle allocated is done behind it,
  -- with its record. Not without a record task: a backtest never waits,
  -- and its collector must keep pace inside its cycles.
  a.gc_held = self.repos ~= nil and task.hold_gc() or nil
  local kb0 = a.gc_held and collectgarbage("count")
  local ok, rec, why = xpcall(self.run_cycle, debug.traceback, self, a, o or {})
  if a.gc_held then
    a.gc_held = nil
    task.release_gc()
    local job = a.record_job
    if job and job.state == "queued" then job.gc_kb = math.max(0, collectgarbage("count") - kb0) end
  end
  a.busy = false
  if not ok then
    if task.is_cancelled(rec) then error(rec, 0) end
    alog:error("decision cycle failed", { account = name, err = tostring(rec) })
    return nil, rec
  end
  return rec, why
end

function Agent:run_cycle(a, o)
  local acc = o.account or self:account_config(a.name)
  local strat = self:strategy(acc)
  local clock = task.hrtime
  local t_start, t_step = clock(), clock()
  local now_ms = self:now(a)
  -- one row per cycle: a second cycle in the same interval (run by hand)
  -- gets its own key
  local key = o.cycle_key or cycle_key(now_ms, acc.decision_interval_s)
  -- a cycle a previous process already ran (and maybe traded) never runs again
  local done = a.recorded_key
  if not o.cycle_key and done and (key == done or done:sub(1, #key + 1) == key .. "#") then
    alog:info("cycle skipped: it already ran before the restart", { account = acc.name, cycle = key })
    return nil, "already ran"
  end
  if key == a.last_key then
    a.key_seq = (a.key_seq or 1) + 1
    key = ("%s#%d"):format(key, a.key_seq)
  else
    a.last_key, a.key_seq = key, 1
  end
  local ab = o.no_experiment ~= true and self.lab and self.lab:variant_for(acc, key, now_ms) or nil
  if ab then strat = apply_variant(strat, ab.variant) end
  local rec = { account = acc.name, strategy = strat.name, cycle_key = key, run_id = a.run_id,
                experiment = ab and ab.experiment.name, variant = ab and ab.variant.name or o.variant,
                experiment_version = ab and ab.version,
                started_ms = now_ms, step_ms = {}, validation = { rejected = {}, refusals = {}, notes = {} },
                script_versions = {}, orders = {}, model_ms = 0, cycle = a.cycles + 1 }
  local held = a.gc_held
  local function step(name)
    local t = clock()
    rec.step_ms[name] = (rec.step_ms[name] or 0) + (t - t_step) / 1e6
    t_step = t
    if held then task.hold_gc() end -- again after a wait (the model's) ended the hold
  end
  a.cycles = a.cycles + 1
  -- 1. market data: a copy of the buffers, taken now; frames that arrive
  -- while the cycle runs change the buffers, not this copy
  a.mview:take()
  if a.data_venue then self:feed_paper(a, acc) end
  step("market")
  local view, verr = self:view(a, acc)
  if not view then
    rec.error = "account: " .. tostring(verr)
    return self:finish(a, acc, rec, nil, t_start)
  end
  a.gate:roll_day(view.now_ms, view.equity)
  a.perf:observe(view.now_ms, view.equity)
  rec.equity_start = view.equity
  self:settle_reward(a, view.equity)
  self:settle_events(a, acc, rec)
  step("account")
  -- 2. context
  local input = self:context_input(a, acc, strat, view)
  local okc, ctx = pcall(self.call_script, self, strat, "context", "build", input)
  rec.script_versions.context = self:script_version(strat, "context")
  step("context")
  if not okc or type(ctx) ~= "table" then
    rec.error = "context script: " .. tostring(okc and ("returned " .. type(ctx)) or ctx)
    local off = self:note_disabled(a, acc, strat, "context")
    -- no context, no decision: the cycle holds, and says so once
    if off then self:set_fallback(a, acc, "the context script is disabled: " .. off, rec) end
    return self:finish(a, acc, rec, view, t_start)
  end
  ctx.account = ctx.account or input.account
  rec.context = ctx
  -- 3-5. decisions
  local vctx = self:validation_ctx(acc, view)
  local reason, read, done
  if o.recorded and (o.recorded.completed or o.recorded.parsed) then
    read = self:recorded_decisions(a, acc, rec, o.recorded)
  else
    reason, read, done = self:model_decisions(a, acc, strat, ab, ctx, vctx, view, rec, step)
    if done then return self:finish(a, acc, rec, view, t_start) end
  end
  if reason and not read then
    rec.source = "fallback"
    local okr, r = pcall(self.fallback_decisions, self, a, acc, strat, ctx, vctx, rec)
    if not okr then
      rec.error = (rec.error and (rec.error .. "; ") or "") .. "rules script: " .. tostring(r)
      self:note_disabled(a, acc, strat, "rules")
      r = { decisions = {}, rejected = {}, notes = {} }
    end
    read = r
    rec.validation.fallback = { policy = acc.fallback.policy, reason = reason }
  else
    rec.source = rec.source or "model"
  end
  for _, x in ipairs(read.rejected or {}) do rec.validation.rejected[#rec.validation.rejected + 1] = x end
  rec.validation.notes = read.notes or {}
  rec.validation.repaired = read.repaired or nil
  rec.decisions = read.decisions
  if ab then self:queue_reward(a, ab, rec) end
  step("validate")
  -- 6. policy
  local okq, intents = pcall(self.call_script, self, strat, "policy", "plan", read.decisions, ctx, strat.params or {})
  rec.script_versions.policy = self:script_version(strat, "policy")
  step("policy")
  if not okq then
    rec.error = "policy script: " .. tostring(intents)
    self:note_disabled(a, acc, strat, "policy")
    intents = {}
  elseif type(intents) ~= "table" then
    rec.error = "policy script returned " .. type(intents)
    intents = {}
  end
  rec.intents = intents
  -- 7-8. the risk gate and the venue: one path (vibex.agent.execute)
  execute.run(self, a, acc, intents, read.decisions, view, rec, step)
  step("execute")
  return self:finish(a, acc, rec, view, t_start)
end

function Agent:refused(acc, rule) refusals_total:labels(acc.name, rule):inc() end

-- Paper next to a live market: the live prices become the simulated
-- venue's trades and marks, so its resting orders and stops execute.
function Agent:feed_paper(a, acc)
  local now = a.market:now()
  local sim = a.sim
  for _, sym in ipairs(acc.symbols) do
    local px = a.mview:price(sym)
    if px then sim:tick(sym, ("%.8f"):format(px), now) end
    local m = a.mview:mark(sym)
    if m then sim:mark(sym, ("%.8f"):format(m), now) end
  end
end

function Agent:account_config(name)
  for _, acc in ipairs(self:config().accounts or {}) do
    if acc.name == name then return acc end
  end
  error("agent: account " .. tostring(name) .. " is not in the config")
end

function Agent:last(name) return self.accounts[name] and self.accounts[name].last end

function Agent:close()
  for name in pairs(self.accounts) do self:remove_account(name) end
  for _, reg in pairs(self.registries) do reg:close() end
end

M.Agent = Agent
M.wall_ms = runtime.wall_ms
return M
