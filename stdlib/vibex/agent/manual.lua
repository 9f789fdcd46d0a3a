--- vibex.agent.manual — what a person does to an account from outside
-- the cycle (the API, the dashboard): pause and resume its decisions, and
-- orders by hand. A manual order takes the agent's one path (vibex.agent.
-- execute): the same legs, the same risk gate with the account's limits,
-- the same record before the wire; its decision row has source "manual"
-- and says who. Methods of the agent (mixed into vibex.agent's Agent).
local errors = require "vibex.errors"
local execute = require "vibex.agent.execute"
local task = require "vibex.task"
local log = require "vibex.log"

local tlog = log.channel("trading")

local Agent = {}

--- Stop (true) or restart (false) an account's decisions. A paused account
-- keeps its positions, stops and targets; its cycles are skipped.
function Agent:set_paused(name, paused, who)
  local a = self.accounts[name]
  if not a then return nil, errors.new("not_found", "no running account " .. tostring(name)) end
  a.paused = paused and { by = who, at_ms = os.time() * 1000 } or nil
  tlog:warn(paused and "account paused: no decisions until it is resumed" or "account resumed",
    { account = name, by = who })
  self:observe("account", { account = name, paused = paused and true or false, by = who })
  return true
end

-- Wait for the account's cycle in progress (bounded): a manual order never
-- runs beside one.
local function wait_idle(a, ms)
  local deadline = task.now() + ms
  while a.busy do
    if task.now() > deadline then return false end
    task.sleep(20)
  end
  return true
end

--- Intents by hand (the policy's intent language: open, close, protect,
--- cancel; or a function(view, acc) returning them), through the risk gate. Returns the record {orders, refusals,
--- cycle_key} | nil, err.
function Agent:manual(name, intents, who)
  local a = self.accounts[name]
  if not a then return nil, errors.new("not_found", "no running account " .. tostring(name)) end
  if not wait_idle(a, 10000) then return nil, errors.new("unavailable", "the account's decision cycle is still running; try again") end
  a.busy = true
  local ok, rec = xpcall(self.run_manual, debug.traceback, self, a, intents, who)
  a.busy = false
  if not ok then
    if task.is_cancelled(rec) then error(rec, 0) end
    return nil, errors.new("internal", tostring(rec))
  end
  return rec
end

function Agent:run_manual(a, intents, who)
  local acc = self:account_config(a.name)
  local now_ms = self:now(a)
  a.manual_seq = (a.manual_seq or 0) + 1
  local rec = { account = acc.name, strategy = a.strategy, cycle_key = ("manual-%d-%d"):format(now_ms, a.manual_seq),
                run_id = a.run_id, started_ms = now_ms, step_ms = {}, script_versions = {}, orders = {}, model_ms = 0,
                validation = { rejected = {}, refusals = {}, notes = { "by " .. tostring(who) } },
                source = "manual", decisions = {}, intents = intents, cycle = a.cycles, manual_by = who }
  a.mview:take()
  if a.data_venue then self:feed_paper(a, acc) end
  local view, verr = self:view(a, acc)
  if not view then
    rec.error = "account: " .. tostring(verr)
    return rec
  end
  rec.equity_start = view.equity
  -- intents made from the account as it is now (flatten: its positions)
  if type(intents) == "function" then
    intents = intents(view, acc)
    rec.intents = intents
  end
  execute.run(self, a, acc, intents, {}, view, rec)
  if self.repos then
    a.rq:flush()
    local R = self.repos
    self:record_decision(rec, R, true)
    for i, r in ipairs(rec.validation.refusals) do
      R.ledger:risk_refusal { account = acc.name, cycle_key = rec.cycle_key, run_id = a.run_id, seq = i, rule = r.rule,
                              symbol = r.symbol, message = r.message, intent = r }
    end
  end
  tlog:info("manual order", { account = acc.name, by = who, orders = #rec.orders, refused = #rec.validation.refusals })
  self:observe("decision", self:decision_event(rec))
  return rec
end

return Agent
