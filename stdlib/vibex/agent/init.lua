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

local cycles_total = metrics.counter("vibex_agent_cycles_total", "Decision cycles by source", { "account", "source" })
local cycle_seconds = metrics.histogram("vibex_agent_cycle_seconds", "Decision cycle time, model excluded", { "account" })
local refusals_total = metrics.counter("vibex_risk_refusals_total", "Orders refused by the risk gate", { "account", "rule" })
local invalid_total = metrics.counter("vibex_agent_invalid_answers_total", "Model answers that could not be used", { "account" })

local Agent = {}
Agent.__index = Agent

--- o: config (the whole config table, or a function returning the current
-- one), repos (vibex.db repos, optional), writer (journal writer, for the
-- outage state), scripts (a vibex.scripts registry over scripts/),
-- venue(acc) -> venue, clock() -> ms (default: the venue's clock),
-- getenv (os.getenv), llm_client(provider) (default vibex.llm.client),
-- lab (vibex.ab: experiments; nil runs none), data_dir (where the order
-- logs live; default the config's runtime.data_dir), market(acc) -> the
-- account's vibex.marketdata service (default: add_account's o.market, else
-- a replay service fed by pushes).
function M.new(o)
  local self = setmetatable({
    get_config = type(o.config) == "function" and o.config or function() return o.config end,
    repos = o.repos, writer = o.writer, scripts = o.scripts, registries = {}, make_venue = o.venue,
    clock = o.clock, getenv = o.getenv or os.getenv, make_client = o.llm_client or llm.client,
    clients = {}, accounts = {}, env_provider = false, lab = o.lab, data_dir = o.data_dir, make_market = o.market,
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

--- Wait until every account's queued records have been tried.
function Agent:flush_records()
  for _, a in pairs(self.accounts) do a.rq:flush() end
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
    pending_notes = {}, known = {},
    rq = recorder.new { repos = self.repos, path = data_dir .. "/orders/" .. acc.name .. ".log", account = acc.name },
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

-- ---- the account as the gate and the scripts see it ------------------------------------------------

local function num(x) return tonumber(x) or 0 end
-- a signed decimal string without its sign (a position's size)
local function unsigned_text(q) return type(q) == "string" and (q:gsub("^%-", "")) or q end

--- Balances, positions and prices now. prices: the reference price per
-- symbol (the mark where the market data has one, else the last close),
-- from the cycle's market view.
function Agent:view(a, acc)
  local v = a.venue
  local bals, berr = v:balances()
  if not bals then return nil, "balances: " .. tostring(berr) end
  local wallet, available, upnl = 0, 0, 0
  for _, b in ipairs(bals) do
    if b.asset == "USDT" then
      wallet, available, upnl = num(b.wallet), num(b.available), num(b.unrealized_pnl)
    end
  end
  local plist, perr = v:positions()
  if not plist then return nil, "positions: " .. tostring(perr) end
  local mv = a.mview
  local view = { now_ms = self:now(a), symbols = {}, prices = {}, books = {}, positions = {}, list = {}, wallet = wallet,
                 available = available, unrealized = 0 }
  for _, s in ipairs(acc.symbols) do
    view.symbols[s] = true
    view.prices[s] = mv:mark(s)
    view.books[s] = mv:book(s)
  end
  for _, p in ipairs(plist) do
    local q = num(p.quantity)
    if q ~= 0 and view.symbols[p.symbol] then
      local mark = num(p.mark_price) > 0 and num(p.mark_price) or view.prices[p.symbol] or num(p.entry_price)
      local pos = { symbol = p.symbol, side = p.side, qty = math.abs(q), quantity_text = unsigned_text(p.quantity),
                    entry_price = num(p.entry_price), mark_price = mark, unrealized_pnl = num(p.unrealized_pnl),
                    leverage = num(p.leverage), liquidation_price = tonumber(p.liquidation_price),
                    notional = math.abs(q) * mark, exit_plan = a.exit_plans[p.symbol] }
      view.positions[p.symbol] = pos
      view.list[#view.list + 1] = pos
      view.unrealized = view.unrealized + pos.unrealized_pnl
    end
  end
  -- entries sent but not filled yet count as exposure: the gate must not
  -- approve a second entry while the first is on its way
  -- per symbol: a venue weighs "all symbols" far heavier than one
  for _, sym in ipairs(acc.symbols) do
    local list, oerr = v:open_orders(sym)
    if not list then return nil, "open orders: " .. tostring(oerr) end
    for _, o in ipairs(list) do
      local entry = (o.type == "market" or o.type == "limit") and not o.reduce_only and not o.close_position
      if entry and view.symbols[o.symbol] then
        local q = num(o.quantity) - num(o.executed_quantity)
        local px = num(o.price) > 0 and num(o.price) or view.prices[o.symbol] or 0
        local side = o.side == "buy" and "long" or "short"
        local p = view.positions[o.symbol]
        if not p then
          p = { symbol = o.symbol, side = side, qty = 0, notional = 0, pending = true }
          view.positions[o.symbol] = p
        end
        p.pending_notional = (p.pending_notional or 0) + q * px
        p.notional = p.notional + q * px
      end
    end
  end
  if upnl == 0 then upnl = view.unrealized end
  view.equity = wallet + upnl
  view.unrealized = upnl
  view.pyramiding = self:strategy(acc).pyramiding
  view.outage = self.writer and self.writer:outage() == "no_new_positions" or false
  if view.outage and self.writer.journal_error then
    view.outage_why = "the database is unreachable and its journal cannot be written (" .. tostring(self.writer.journal_error)
      .. "): nothing new opens until the record is safe"
  end
  return view
end

-- What context.lua gets: data and functions that read it, never the venue.
function Agent:context_input(a, acc, strat, view)
  local md = a.mview
  return {
    now_ms = view.now_ms, cycle = a.cycles + 1, account = {
      name = acc.name, equity = view.equity, wallet = view.wallet, available = view.available,
      unrealized_pnl = view.unrealized, positions = view.list,
    },
    symbols = acc.symbols, intervals = strat.intervals, params = strat.params or {},
    -- views, not the buffers: a script gets no pointer and cannot write
    candles = function(symbol, interval) return safe_ta.candles_view(md:candles(symbol, interval)) end,
    price = function(symbol) return md:mark(symbol) end,
    mark = function(symbol) return md:mark(symbol) end,
    funding = function(symbol) return md:funding(symbol) end,
    performance = a.perf:summary(),
  }
end

-- ---- decisions: from the model, or from the fallback ------------------------------------------------

function Agent:validation_ctx(acc, view)
  local syms, n = {}, 0
  for _, s in ipairs(acc.symbols) do
    syms[s] = { price = view.prices[s] }
    n = n + 1
  end
  return { symbols = syms, nsymbols = n, positions = view.positions, free_margin = view.available,
           max_leverage = 125, max_stop_distance_pct = acc.risk and acc.risk.max_stop_distance_pct }
end

local REPAIR = [[Your previous answer could not be used: %s.
Answer again with only one JSON object in this form, and nothing else:
%s]]

-- Ask the model; at most one repair round-trip. Returns the read result
-- (or nil), and the calls made.
function Agent:ask_model(a, acc, client, messages, vctx, rec, variant)
  local calls = {}
  local function ask(msgs, purpose)
    local res, err = client:chat { messages = msgs, json = true, variant = variant }
    local c = { purpose = purpose, provider = client.name, model = client.model, variant = variant,
                outcome = res and "ok" or err.kind, tokens_in = res and res.tokens_in or err.tokens_in,
                tokens_out = res and res.tokens_out or err.tokens_out, latency_ms = res and res.latency_ms or err.latency_ms,
                cost = res and res.cost or err.cost, error = err and err.message, attempts = res and res.attempts or err.attempts }
    calls[#calls + 1] = c
    return res, err
  end
  local res, err = ask(messages, "decide")
  if not res and not err.empty then return nil, calls, err end
  local text = res and res.text or ""
  rec.raw_answer, rec.validation.raw_answer = decision.cap_raw(text)
  local read = decision.read(text, vctx)
  if read.ok and #read.decisions > 0 or (read.ok and #read.rejected == 0) then return read, calls end
  -- one repair round-trip
  rec.validation.first_answer = { reason = read.reason, rejected = read.rejected }
  local msgs = {}
  for i, m in ipairs(messages) do msgs[i] = m end
  msgs[#msgs + 1] = { role = "assistant", content = text ~= "" and decision.cap_raw(text) or "(empty)" }
  msgs[#msgs + 1] = { role = "user", content = REPAIR:format(read.reason or "empty", decision.SCHEMA_TEXT) }
  local res2, err2 = ask(msgs, "repair")
  rec.validation.repair_asked = true
  if not res2 then
    if not err2.empty then return nil, calls, err2 end
    return { ok = false, reason = "the repaired answer is empty", decisions = {}, rejected = read.rejected, notes = {} }, calls
  end
  local first, second = decision.cap_raw(text), decision.cap_raw(res2.text)
  rec.raw_answer = first .. "\n\n--- repair ---\n\n" .. second
  local read2 = decision.read(res2.text, vctx)
  read2.repaired = read2.ok and (#read2.decisions > 0 or #read2.rejected == 0)
  return read2, calls
end

-- Fallback state: engaged when the provider's breaker is open or the
-- account's answers were invalid too often; released when both are well.
function Agent:fallback_reason(a, acc, client, now_ms, strat)
  if not client then return "no model configured" end
  local off = strat and self:note_disabled(a, acc, strat, "prompt")
  if off then return "the prompt script is disabled: " .. off end
  -- open and still cooling down; once the cool-down is over the next call is the probe
  if client:breaker_state() == "open" and client.breaker:retry_in_ms() > 0 then
    return ("the model's circuit breaker is open (%s)"):format(client.name)
  end
  if a.fallback_until and now_ms < a.fallback_until then
    return ("%d invalid answers in a row; the model is tried again in %ds"):format(acc.fallback.after_invalid,
      math.ceil((a.fallback_until - now_ms) / 1000))
  end
end

function Agent:set_fallback(a, acc, reason, rec)
  if reason and not a.fallback_reason then
    alog:warn("fallback engaged: " .. reason, { account = acc.name, fallback = acc.fallback.policy })
    a.pending_notes[#a.pending_notes + 1] = ("Fallback engaged (%s): %s."):format(acc.fallback.policy, reason)
    rec.fallback_event = "engaged"
  elseif not reason and a.fallback_reason then
    alog:info("fallback released: decisions come from the model again", { account = acc.name })
    a.pending_notes[#a.pending_notes + 1] = "Fallback released: the model decides again."
    rec.fallback_event = "released"
  end
  a.fallback_reason = reason
end

function Agent:fallback_decisions(a, acc, strat, ctx, vctx, rec)
  if acc.fallback.policy == "hold" then return { ok = true, decisions = {}, rejected = {}, notes = {} } end
  local raw = self:call_script(strat, "rules", "decide", ctx, strat.params or {})
  rec.script_versions.rules = self:script_version(strat, "rules")
  local list = type(raw) == "table" and (raw.decisions or raw) or {}
  local res = decision.validate(list, vctx)
  res.ok, res.notes = true, {}
  return res
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
  a.busy = true
  local ok, rec, why = xpcall(self.run_cycle, debug.traceback, self, a, o or {})
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
  local function step(name)
    local t = clock()
    rec.step_ms[name] = (rec.step_ms[name] or 0) + (t - t_step) / 1e6
    t_step = t
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

-- A resumed run: this cycle was decided before the crash (and maybe
-- traded); what it decided comes from the record, not a new answer.
function Agent:recorded_decisions(a, acc, rec, recorded)
  local p, v = recorded.parsed or {}, recorded.validation or {}
  rec.source, rec.raw_answer, rec.valid, rec.error = p.source or "none", recorded.raw_answer, recorded.valid, recorded.error
  rec.validation.fallback, rec.validation.reason, rec.validation.raw_answer = v.fallback, v.reason, v.raw_answer
  rec.was_complete = recorded.completed
  -- the fallback's state moves as it did then (its notes go with the cycle)
  self:set_fallback(a, acc, type(v.fallback) == "table" and v.fallback.reason or nil, rec)
  return { decisions = p.decisions or {}, rejected = v.rejected or {}, notes = v.notes or {}, repaired = v.repaired }
end

-- The prompt and the model: the reason the fallback must decide (nil when
-- the model did), what was read from the answer, and true when the cycle
-- ends here (the prompt script failed).
function Agent:model_decisions(a, acc, strat, ab, ctx, vctx, view, rec, step)
  local provider = self:provider(acc, ab and ab.variant)
  local client = provider and self:client(provider)
  local reason = self:fallback_reason(a, acc, client, view.now_ms, strat)
  if not reason and a.fallback_until then a.fallback_until = nil end -- cooldown over: probe the model
  local read
  if not reason then
    local okp, messages = pcall(self.call_script, self, strat, "prompt", "render", ctx, strat.params or {})
    rec.script_versions.prompt = self:script_version(strat, "prompt")
    step("prompt")
    if not okp or type(messages) ~= "table" or #messages == 0 then
      rec.error = "prompt script: " .. tostring(okp and "returned no messages" or messages)
      self:note_disabled(a, acc, strat, "prompt")
      return nil, nil, true
    end
    rec.prompt, rec.provider, rec.model = messages, client.name, client.model
    local t_model = task.hrtime()
    local r, calls, err = self:ask_model(a, acc, client, messages, vctx, rec, rec.variant)
    rec.model_ms = (task.hrtime() - t_model) / 1e6
    rec.llm_calls = calls
    step("model")
    rec.step_ms.model = rec.model_ms
    if not r then
      rec.error = "model: " .. tostring(err)
      reason = ("the model call failed (%s)"):format(err.kind)
    elseif not r.ok or (#r.decisions == 0 and #r.rejected > 0) then
      a.invalid_streak = a.invalid_streak + 1
      invalid_total:labels(acc.name):inc()
      rec.valid = false
      rec.validation.reason = r.reason
      llog:warn("model answer rejected", { account = acc.name, reason = r.reason, streak = a.invalid_streak })
      if a.invalid_streak >= acc.fallback.after_invalid then
        a.fallback_until = view.now_ms + acc.fallback.cooldown_s * 1000
        reason = ("%d invalid answers in a row"):format(a.invalid_streak)
        a.invalid_streak = 0
        for _, x in ipairs(r.rejected or {}) do rec.validation.rejected[#rec.validation.rejected + 1] = x end
        read = nil -- the fallback decides this cycle
      else
        read = { decisions = {}, rejected = r.rejected } -- this cycle holds
      end
    else
      a.invalid_streak = 0
      read = r
      rec.valid = true
    end
  end
  self:set_fallback(a, acc, reason, rec)
  return reason, read
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

-- Thompson sampling learns from outcomes: "valid" is known now (an answer
-- that could be used); "return" at the account's next cycle (did the
-- equity rise?). Cycles decided without the model teach nothing.
function Agent:queue_reward(a, ab, rec)
  if rec.source == "fallback" or rec.valid == nil then return end
  if ab.experiment.outcome == "valid" then
    self.lab:reward(ab, rec.valid and 1 or 0)
  else
    a.pending_reward = { ab = ab, equity = rec.equity_start }
  end
end

function Agent:settle_reward(a, equity)
  local p = a.pending_reward
  if not p or not equity or not p.equity then return end
  a.pending_reward = nil
  self.lab:reward(p.ab, equity > p.equity and 1 or 0)
end

function Agent:account_config(name)
  for _, acc in ipairs(self:config().accounts or {}) do
    if acc.name == name then return acc end
  end
  error("agent: account " .. tostring(name) .. " is not in the config")
end

-- One venue event into the database, in the account's record queue (after
-- the row of the order it is about).
function Agent:record_event(a, name, ev)
  if not self.repos then return end
  local R = self.repos
  if ev.kind == "order" then
    local o, f = ev.order, ev.fill
    if not ev.stale then a.rq:state(o.client_order_id, o, nil, ev.time_ms) end
    if f then a.rq:fill(f) end
  end
  if ev.kind == "account" then
    -- the venue's account events carry every position change: the
    -- positions table follows them as they come
    for _, p in ipairs(ev.positions or {}) do
      local flat = (tonumber(p.quantity) or 0) == 0
      local plan = not flat and a.exit_plans[p.symbol] and json.encode(a.exit_plans[p.symbol]) or nil
      a.rq:enqueue(function()
        if flat then return R.positions:close(name, p.symbol, p.position_side, ev.time_ms, ev.seq) end
        return R.positions:upsert { account = name, symbol = p.symbol, position_side = p.position_side,
                                    quantity = p.quantity, entry_price = p.entry_price, margin_type = p.margin_type,
                                    unrealized_pnl = p.unrealized_pnl, exit_plan = plan, time_ms = ev.time_ms,
                                    seq = ev.seq }
      end)
    end
  end
  if ev.kind == "account" and ev.reason == "funding_fee" then
    a.rq:enqueue(function()
      for _, b in ipairs(ev.balances or {}) do
        if (tonumber(b.change) or 0) ~= 0 then
          for _, p in ipairs(ev.positions or {}) do
            R.ledger:funding { account = name, symbol = p.symbol, amount = b.change, position_qty = p.quantity,
                               time_ms = ev.time_ms, run_id = a.run_id }
          end
        end
      end
      return true
    end)
  elseif ev.kind == "margin_call" then
    tlog:error("ALERT: margin call from the venue", { account = name, alert = true, positions = #(ev.positions or {}) })
  end
end

-- What the venue's events since the last cycle mean for the account's
-- performance and the diary (they were recorded as they came).
function Agent:settle_events(a, acc, rec)
  local evs = a.events
  if #evs == 0 then return end
  a.events = {}
  for _, ev in ipairs(evs) do
    local f = ev.kind == "order" and ev.fill
    if f then
      local rp = tonumber(f.realized_pnl) or 0
      a.perf:fill(rp, tonumber(f.fee) or 0)
      if rp ~= 0 then -- what became of earlier decisions: realized results, by symbol
        rec.realized = rec.realized or {}
        local x = rec.realized[f.symbol] or { pnl = 0, fees = 0, plan = a.exit_plans[f.symbol] }
        x.pnl, x.fees = x.pnl + rp, x.fees + (tonumber(f.fee) or 0)
        rec.realized[f.symbol] = x
      end
      rec.fills = (rec.fills or 0) + 1
    elseif ev.kind == "account" and ev.reason == "funding_fee" then
      for _, b in ipairs(ev.balances or {}) do a.perf:funding(tonumber(b.change) or 0) end
    end
  end
end

--- The decision row, written behind the cycle in the account's record
-- queue: before the rows of its orders, which point at it.
function Agent:record_decision_async(a, rec)
  if not self.repos then return end
  -- logged ahead like the orders that point at it: a kill before the
  -- database has it leaves it in the order log, replayed before them
  a.rq:decision(self:decision_row(rec))
end

-- The decisions row of a cycle (see db.decisions:record).
function Agent:decision_row(rec, completed)
  local v = rec.validation
  local tokens_in, tokens_out, latency, cost = nil, nil, nil, nil
  for _, c in ipairs(rec.llm_calls or {}) do
    tokens_in = (tokens_in or 0) + (c.tokens_in or 0)
    tokens_out = (tokens_out or 0) + (c.tokens_out or 0)
    latency = (latency or 0) + (c.latency_ms or 0)
    cost = (cost or 0) + (c.cost or 0)
  end
  return {
    account = rec.account, cycle_key = rec.cycle_key, strategy = rec.strategy, provider = rec.provider, model = rec.model,
    prompt_version = rec.script_versions.prompt, prompt = rec.prompt, raw_answer = rec.raw_answer,
    parsed = rec.decisions and { source = rec.source, decisions = rec.decisions, intents = rec.intents } or nil,
    valid = rec.valid, validation = v, tokens_in = tokens_in, tokens_out = tokens_out, latency_ms = latency,
    cost = cost and ("%.8f"):format(cost) or nil, experiment = rec.experiment, variant = rec.variant,
    experiment_version = rec.experiment_version, equity = rec.equity_start and ("%.8f"):format(rec.equity_start) or nil,
    config_hash = rec.config_hash, step_ms = rec.step_ms, error = rec.error, started_ms = rec.started_ms,
    run_id = rec.run_id, completed = completed,
  }
end

function Agent:record_decision(rec, R, completed)
  R = R or self.repos
  return R.decisions:record(self:decision_row(rec, completed))
end

-- The end of every cycle: performance, positions, the decision row, the
-- LLM calls, refusals, and the diary entry.
function Agent:finish(a, acc, rec, view, t_start)
  local t0 = task.hrtime()
  rec.source = rec.source or (rec.error and "error" or "none")
  if view then
    rec.equity = view.equity
    rec.performance = a.perf:summary()
  end
  if self.repos then
    a.rq:flush() -- the orders of the cycle first (written behind the wire)
    -- everything about the cycle in one transaction (one journal entry in an outage)
    local R = self.repos.batch and self.repos.batch() or self.repos
    -- a cycle a resumed run recorded in full before: its record stands (the
    -- batch is built, so the in-memory bookkeeping runs as it did, and dropped)
    if rec.was_complete and R.commit then R.commit = function() return true end end
    local run = a.run_id
    -- every fact of the cycle has its key (account, run, cycle, place): a
    -- resumed run or a replayed journal writes it again and changes nothing
    self:record_decision(rec, R, true)
    for i, c in ipairs(rec.llm_calls or {}) do
      R.ledger:llm_call { account = acc.name, cycle_key = rec.cycle_key, run_id = run, seq = i, purpose = c.purpose,
                          provider = c.provider, model = c.model,
                          variant = c.variant, outcome = c.outcome, tokens_in = c.tokens_in, tokens_out = c.tokens_out,
                          latency_ms = c.latency_ms, cost = c.cost, error = c.error, attempts = c.attempts }
    end
    for i, r in ipairs(rec.validation.refusals) do
      R.ledger:risk_refusal { account = acc.name, cycle_key = rec.cycle_key, run_id = run, seq = i, rule = r.rule,
                              symbol = r.symbol, message = r.message, intent = r }
    end
    if view then self:record_state(a, acc, rec, view, R) end
    if a.persist_paper and a.sim then R.ledger:paper_save(acc.name, a.sim:snapshot()) end
    local body, tags = diary.entry(a, acc, rec, view)
    R.diary:add { account = acc.name, author = "agent", body = body, tags = tags, cycle_key = rec.cycle_key, run_id = run }
    if R.commit then
      local ok, err = R.commit()
      if not ok then alog:error("cycle not recorded in the database", { account = acc.name, cycle = rec.cycle_key, error = tostring(err) }) end
    end
  end
  a.pending_notes = {}
  rec.step_ms.record = (task.hrtime() - t0) / 1e6
  rec.overhead_ms = (task.hrtime() - t_start) / 1e6 - rec.model_ms
  cycles_total:labels(acc.name, rec.source):inc()
  cycle_seconds:labels(acc.name):observe(rec.overhead_ms / 1000)
  a.last = rec
  local steps = {}
  for _, k in ipairs { "market", "account", "context", "prompt", "model", "validate", "policy", "risk", "execute", "record" } do
    if rec.step_ms[k] then steps[#steps + 1] = ("%s=%.2f"):format(k, rec.step_ms[k]) end
  end
  tlog:info("decision cycle", { account = acc.name, cycle = rec.cycle, source = rec.source, steps_ms = table.concat(steps, " "),
                                decisions = rec.decisions and #rec.decisions or 0,
                                orders = #rec.orders, refused = #rec.validation.refusals, rejected = #rec.validation.rejected,
                                overhead_ms = ("%.2f"):format(rec.overhead_ms), model_ms = math.floor(rec.model_ms), error = rec.error })
  return rec
end

-- Snapshot, positions (with their exit plans) and performance rows.
function Agent:record_state(a, acc, rec, view, R)
  R.ledger:snapshot { account = acc.name, equity = ("%.8f"):format(view.equity), wallet_balance = ("%.8f"):format(view.wallet),
                      available = ("%.8f"):format(view.available), unrealized_pnl = ("%.8f"):format(view.unrealized),
                      run_id = a.run_id, cycle_key = rec.cycle_key, time_ms = rec.started_ms }
  -- positions open and close with the venue's events (record_event); the
  -- cycle adds what only the agent knows: the exit plan, and the leverage
  -- the venue reports. A row is touched when that changes: its PnL every
  -- cycle is in the account snapshot, not in the audit trail.
  a.position_rows = a.position_rows or {}
  -- a plan outlives its position until the cycle after it closed, whose
  -- diary tells what became of it (settle_events)
  for sym, plan in pairs(a.exit_plans) do
    if not view.positions[sym] and plan.opened ~= rec.cycle_key then a.exit_plans[sym], a.position_rows[sym] = nil, nil end
  end
  for _, p in ipairs(view.list) do
    local plan = a.exit_plans[p.symbol] and json.encode(a.exit_plans[p.symbol]) or nil
    local key = ("%s|%s|%s"):format(p.quantity_text, tostring(p.leverage), tostring(plan))
    if a.position_rows[p.symbol] ~= key then
      a.position_rows[p.symbol] = key
      R.positions:annotate { account = acc.name, symbol = p.symbol, leverage = p.leverage > 0 and p.leverage or nil,
                             unrealized_pnl = ("%.8f"):format(p.unrealized_pnl),
                             liquidation_price = p.liquidation_price and ("%.8f"):format(p.liquidation_price) or nil,
                             exit_plan = plan }
    end
  end
  local s = rec.performance
  R.ledger:metrics { account = acc.name, strategy = rec.strategy, window_name = "all", equity = ("%.8f"):format(view.equity),
                     pnl = ("%.8f"):format(s.pnl), return_pct = ("%.8f"):format(s.return_pct),
                     max_drawdown = ("%.8f"):format(s.max_drawdown), sharpe = s.sharpe and ("%.8f"):format(s.sharpe) or nil,
                     win_rate = s.win_rate and ("%.8f"):format(s.win_rate) or nil, trades = s.trades,
                     fees = ("%.8f"):format(s.fees), funding = ("%.8f"):format(s.funding),
                     run_id = a.run_id, cycle_key = rec.cycle_key, time_ms = rec.started_ms }
end

--- The last cycle's record of an account.
function Agent:last(name) return self.accounts[name] and self.accounts[name].last end

function Agent:close()
  for name in pairs(self.accounts) do self:remove_account(name) end
  for _, reg in pairs(self.registries) do reg:close() end
end

M.Agent = Agent
M.wall_ms = runtime.wall_ms
return M
