--- vibex.agent.record — what a cycle leaves behind: venue events and fills
-- into the database (in the account's order-record queue, vibex.agent.recorder),
-- the decision row, the diary entry, the account snapshot and performance
-- row, the cycle's metrics and log line. Methods of the agent (mixed into
-- vibex.agent's Agent).
local diary = require "vibex.agent.diary"
local json = require "vibex.json"
local log = require "vibex.log"
local metrics = require "vibex.metrics"
local task = require "vibex.task"

local alog = log.channel("app")
local tlog = log.channel("trading")

local cycles_total = metrics.counter("vibex_agent_cycles_total", "Decision cycles by source", { "account", "source" })
local cycle_seconds = metrics.histogram("vibex_agent_cycle_seconds", "Decision cycle time, model excluded", { "account" })
local step_seconds = metrics.histogram("vibex_agent_step_seconds", "Decision cycle time by step (market, account, context, prompt, model, validate, policy, risk, execute, record)",
  { "account", "step" })
local record_seconds = metrics.histogram("vibex_agent_record_seconds",
  "Committing a decision cycle's record to the database (or its outage journal)", { "account" })

local Agent = {}

--- Tell the observer (the API's stream, the notifications) what happened:
-- kind "decision" | "order" | "fill" | "position" | "equity" | "diary" |
-- "account". Never fails the caller.
function Agent:observe(kind, data)
  local fn = self.observer
  if not fn then return end
  local ok, err = pcall(fn, kind, data)
  if not ok then alog:warn("observer failed", { kind = kind, error = tostring(err) }) end
end

--- What the API shows of an account between cycles: the last view's money
--- and positions.
function Agent:keep_snapshot(a, view, time_ms)
  a.snapshot = { equity = view.equity, wallet = view.wallet, available = view.available, unrealized = view.unrealized,
                 positions = view.list, open_orders = view.open_orders or 0, time_ms = time_ms }
  if not a.positions_live then
    a.positions_live = {}
    for _, p in ipairs(view.list) do
      a.positions_live[p.symbol] = { symbol = p.symbol, quantity = (p.side == "short" and "-" or "") .. p.quantity_text,
                                     entry_price = p.entry_price, leverage = p.leverage, liquidation_price = p.liquidation_price }
    end
  end
end

--- The account's positions as the venue's account events tell them
--- (between cycles: a stop that fired shows at once).
function Agent:track_positions(a, list)
  a.positions_live = a.positions_live or {}
  for _, p in ipairs(list) do
    if (tonumber(p.quantity) or 0) == 0 then a.positions_live[p.symbol] = nil
    else a.positions_live[p.symbol] = p end
  end
end

local function f8(x) return x and ("%.8f"):format(x) or nil end

--- What a client sees of a cycle: its outcome, not the whole prompt.
function Agent:decision_event(rec)
  local ds = {}
  for i, d in ipairs(rec.decisions or {}) do
    ds[i] = { symbol = d.symbol, action = d.action, confidence = d.confidence, rationale = d.rationale or d.reasoning }
  end
  local refusals = {}
  for i, r in ipairs(rec.validation and rec.validation.refusals or {}) do
    refusals[i] = { rule = r.rule, symbol = r.symbol, message = r.message }
  end
  local orders = {}
  for i, o in ipairs(rec.orders or {}) do
    orders[i] = { kind = o.kind, symbol = o.symbol, side = o.side, quantity = o.quantity, status = o.status,
                  client_order_id = o.client_order_id, error = o.error }
  end
  return { account = rec.account, cycle_key = rec.cycle_key, cycle = rec.cycle, source = rec.source,
           strategy = rec.strategy, model = rec.model, time_ms = rec.started_ms, equity = f8(rec.equity or rec.equity_start),
           decisions = ds, orders = orders, refusals = refusals, error = rec.error, by = rec.manual_by,
           fallback = rec.validation and rec.validation.fallback and rec.validation.fallback.reason or nil,
           overhead_ms = rec.overhead_ms }
end

-- One venue event into the database, in the account's record queue (after
-- the row of the order it is about).
function Agent:record_event(a, name, ev)
  if ev.kind == "account" and ev.positions then self:track_positions(a, ev.positions) end
  if self.observer then self:observe_event(name, ev) end
  if self.sink then return self.sink:event(a, name, ev) end
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

function Agent:observe_event(name, ev)
  if ev.kind == "order" and not ev.stale then
    local o = ev.order
    self:observe("order", { account = name, client_order_id = o.client_order_id, symbol = o.symbol, side = o.side,
                            type = o.type, status = o.status, quantity = o.quantity, price = o.price,
                            executed_quantity = o.executed_quantity, average_price = o.average_price,
                            reduce_only = o.reduce_only, time_ms = ev.time_ms })
    local f = ev.fill
    if f then
      self:observe("fill", { account = name, client_order_id = o.client_order_id, symbol = f.symbol or o.symbol,
                             side = f.side or o.side, trade_id = f.trade_id, price = f.price, quantity = f.quantity,
                             fee = f.fee, realized_pnl = f.realized_pnl, time_ms = ev.time_ms })
    end
  elseif ev.kind == "account" then
    for _, p in ipairs(ev.positions or {}) do
      self:observe("position", { account = name, symbol = p.symbol, position_side = p.position_side, quantity = p.quantity,
                                 entry_price = p.entry_price, unrealized_pnl = p.unrealized_pnl, time_ms = ev.time_ms,
                                 reason = ev.reason })
    end
  elseif ev.kind == "margin_call" then
    self:observe("margin_call", { account = name, time_ms = ev.time_ms })
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

-- ---- the record behind the cycle ---------------------------------------------------------------
--
-- A cycle ends when its record is built; the database gets it behind the
-- cycle, from a task of its own, after the order recorder has the cycle's
-- orders (their rows and the decision row were logged ahead of the wire).
-- One record per account is in flight: the next cycle of the account
-- waits for it before it starts, so every cycle sees the database as the
-- cycle before left it; so do a resume, a stop and a shutdown
-- (Agent:wait_record). A record is a job anyone may run: the task spawned
-- for it, or whoever waits for it first when that task has not started (a
-- task cancelled before it ran never runs its function).

local function run_record(a, job)
  job.state = "running"
  local ok, err = pcall(function()
    a.rq:flush() -- the orders of the cycle first (written behind the wire)
    local t1 = task.hrtime()
    local cok, cerr = job.commit()
    record_seconds:labels(job.account):observe(tonumber(task.hrtime() - t1) / 1e9)
    if not cok then
      alog:error("cycle not recorded in the database", { account = job.account, cycle = job.cycle_key, error = tostring(cerr) })
    end
  end)
  -- the collector's share of the cycle (it held the collector): done here,
  -- behind the cycle, as if the cycle's allocations came now
  if job.gc_kb and job.gc_kb > 0 then collectgarbage("step", math.ceil(job.gc_kb)) end
  job.state = "done"
  if a.record_job == job then a.record_job = nil end
  for _, t in ipairs(job.waiters) do task.unpark(t) end
  job.waiters = {}
  -- what the observers hear of the cycle comes once the database has it
  if job.after then
    local aok, aerr = pcall(job.after)
    if not aok then alog:warn("observer failed", { account = job.account, error = tostring(aerr) }) end
  end
  if not ok then
    if task.is_cancelled(err) then error(err, 0) end
    alog:error("cycle record failed", { account = job.account, cycle = job.cycle_key, error = tostring(err) })
  end
end

function Agent:record_behind(a, rec, commit, after)
  local job = { account = a.name, cycle_key = rec.cycle_key, commit = commit, after = after, state = "queued", waiters = {} }
  a.record_job = job
  task.spawn("cycle-record:" .. a.name, function()
    if job.state == "queued" then run_record(a, job) end
  end)
end

--- Wait until an account's last cycle record is in the database (or its
-- outage journal, or failed and logged); at most `ms` (60 s). True, or
-- false when the wait ran out (the record is still being written).
function Agent:wait_record(a, ms)
  local job = a.record_job
  if not job then return true end
  if job.state == "queued" then
    run_record(a, job)
    return true
  end
  local me = task.current()
  if not me then return false end
  job.waiters[#job.waiters + 1] = me
  local ok, err = pcall(task.timeout, ms or 60000, task.park, true)
  for i = #job.waiters, 1, -1 do
    if job.waiters[i] == me then table.remove(job.waiters, i) end
  end
  if not ok and task.is_cancelled(err) then error(err, 0) end
  if job.state ~= "done" then
    alog:warn("a cycle record is still being written after the wait", { account = a.name, cycle = job.cycle_key,
                                                                       wait_ms = ms or 60000 })
    return false
  end
  return true
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
  local diary_event
  local committed = false
  if self.repos then
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
    diary_event = { account = acc.name, author = "agent", body = body, tags = tags, cycle_key = rec.cycle_key,
                    time_ms = rec.started_ms }
    if R.commit then
      committed = true
      self:record_behind(a, rec, R.commit, self.observer and function() self:observe_cycle(acc, rec, view, diary_event) end)
    end
  elseif self.sink then
    self.sink:cycle(a, acc, rec, view)
  end
  a.pending_notes = {}
  rec.step_ms.record = (task.hrtime() - t0) / 1e6
  rec.overhead_ms = (task.hrtime() - t_start) / 1e6 - rec.model_ms
  cycles_total:labels(acc.name, rec.source):inc()
  cycle_seconds:labels(acc.name):observe(rec.overhead_ms / 1000)
  a.last = rec
  if view then self:keep_snapshot(a, view, rec.started_ms) end
  if self.observer and not committed then self:observe_cycle(acc, rec, view, diary_event) end
  local steps = {}
  for _, k in ipairs { "market", "account", "context", "prompt", "model", "validate", "policy", "risk", "execute", "record" } do
    if rec.step_ms[k] then
      steps[#steps + 1] = ("%s=%.2f"):format(k, rec.step_ms[k])
      step_seconds:labels(acc.name, k):observe(rec.step_ms[k] / 1000)
    end
  end
  tlog:info("decision cycle", { account = acc.name, cycle = rec.cycle, source = rec.source, steps_ms = table.concat(steps, " "),
                                decisions = rec.decisions and #rec.decisions or 0,
                                orders = #rec.orders, refused = #rec.validation.refusals, rejected = #rec.validation.rejected,
                                overhead_ms = ("%.2f"):format(rec.overhead_ms), model_ms = math.floor(rec.model_ms), error = rec.error })
  return rec
end

-- What the observers (the API's stream, the notifications) hear of a cycle.
function Agent:observe_cycle(acc, rec, view, diary_event)
  if diary_event then self:observe("diary", diary_event) end
  self:observe("decision", self:decision_event(rec))
  if view then
    self:observe("equity", { account = acc.name, equity = f8(view.equity), wallet = f8(view.wallet),
                             unrealized_pnl = f8(view.unrealized), time_ms = rec.started_ms, cycle_key = rec.cycle_key })
  end
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

return Agent
