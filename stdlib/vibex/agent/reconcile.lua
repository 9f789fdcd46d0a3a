--- vibex.agent.reconcile — the venue is the truth: unknown outcomes are
-- resolved by looking them up, never guessed, and the database is brought
-- to what the venue holds.
--
--   a.resolver = reconcile.resolver(agent, a, acc_name)
--   a.resolver:watch(leg)              -- a leg whose answer was lost: look it up until the venue answers
--   a.resolver:after(parent, leg)      -- send leg once parent resolves as accepted
--   local summary, err = reconcile.run(agent, a, acc, "start")
--
-- The resolver looks an unknown order up by its client order id, past the
-- circuit breaker (the failures that opened it are why the lookup is
-- needed), with backoff, until the venue answers: the order exists (its
-- state is recorded; the stop and target of an entry go out now), or it
-- does not and can no longer arrive (the venue refuses requests older than
-- its acceptance window), so it was never placed.
--
-- A reconciliation (at start-up before the first decision, after every
-- user-stream reconnect, and every `reconcile.interval_s`) reads open
-- orders, positions and balances; looks up every order the database holds
-- as pending, unknown or open and records its state and its fills; sends
-- the stop or target of an entry that filled before the process stopped
-- (recorded, never sent); corrects positions that differ from the venue's
-- (logged); reports orders on the venue that vibex did not place (and
-- cancels them when accounts[i].reconcile.foreign_orders = "cancel").
local dec = require "vibex.decimal"
local domain = require "vibex.exchange.domain"
local json = require "vibex.json"
local log = require "vibex.log"
local metrics = require "vibex.metrics"
local task = require "vibex.task"

local M = {}

local tlog = log.channel("trading")

local unknown_gauge = metrics.gauge("vibex_orders_unknown", "Orders whose outcome is being looked up", { "account" })
local recon_total = metrics.counter("vibex_reconciliations_total", "Reconciliations with the venue", { "account", "outcome" })

local function acceptance_ms(venue)
  local c = venue.client
  if not venue.live then return 0 end
  return ((c.signer and c.signer.acceptance_ms) or 5000) + (c.clock_margin_ms or 1000)
end
M.acceptance_ms = acceptance_ms

local function is_final(status) return domain.FINAL[status] == true end

-- ---- the resolver ----------------------------------------------------------------------------

local Resolver = {}
Resolver.__index = Resolver

function M.resolver(agent, a, name)
  return setmetatable({ agent = agent, a = a, account = name, pending = {}, waiting = {}, n = 0 }, Resolver)
end

function Resolver:count() return self.n end

--- Look this leg up until the venue answers.
function Resolver:watch(leg)
  if self.pending[leg.client_order_id] then return end
  self.pending[leg.client_order_id] = { leg = leg, since = self.a.venue:now() }
  self.n = self.n + 1
  unknown_gauge:labels(self.account):set(self.n)
  if not self.worker then
    self.worker = task.spawn("resolver:" .. self.account, function() self:_run() end)
  end
end

--- Send `leg` once `parent` (being resolved) turns out accepted.
function Resolver:after(parent, leg)
  local list = self.waiting[parent.client_order_id] or {}
  list[#list + 1] = leg
  self.waiting[parent.client_order_id] = list
end

function Resolver:_children(parent, accepted)
  local list = self.waiting[parent.client_order_id]
  self.waiting[parent.client_order_id] = nil
  local execute = require "vibex.agent.execute"
  local acc = self.agent:account_config(self.account)
  for _, leg in ipairs(list or {}) do
    if accepted then
      local outcome = execute.send(self.a, acc, leg, self.a.venue:now())
      tlog:info("protective order sent after its entry resolved", { account = self.account, symbol = leg.symbol,
                                                                     client_order_id = leg.client_order_id, outcome = outcome })
      if outcome == "unknown" then self:watch(leg) end
    else
      self.a.rq:update(leg.client_order_id, { status = "rejected", reject_reason = "not sent: its entry was never placed",
                                              resolved = true })
    end
  end
end

function Resolver:_settle(cid, p, order)
  local leg = p.leg
  self.pending[cid] = nil
  self.n = self.n - 1
  unknown_gauge:labels(self.account):set(self.n)
  leg.unknown = false
  if order then
    leg.accepted = true
    self.a.rq:state(cid, order, { resolved = true })
    tlog:info("unknown order resolved: the venue has it", { account = self.account, client_order_id = cid,
                                                            status = order.status })
    if leg.kind == "entry" and leg.plan then self.a.exit_plans[leg.symbol] = leg.plan end
    self:_children(leg, true)
  else
    self.a.rq:update(cid, { status = "rejected", resolved = true,
                            reject_reason = "never reached the venue: not found there after its acceptance window" })
    tlog:warn("unknown order resolved: it never reached the venue", { account = self.account, client_order_id = cid })
    self:_children(leg, false)
  end
end

function Resolver:_run()
  local delay = 500
  while next(self.pending) do
    task.sleep(delay)
    local progress = false
    local window = acceptance_ms(self.a.venue)
    for cid, p in pairs(self.pending) do
      local order, err = self.a.venue:order(p.leg.symbol, cid, { no_breaker = true })
      if order then
        self:_settle(cid, p, order)
        progress = true
      elseif err and err.kind == "not_found" then
        if self.a.venue:now() - p.since > window then
          self:_settle(cid, p, nil)
          progress = true
        end
      end
    end
    delay = progress and 500 or math.min(delay * 2, 15000)
  end
  self.worker = nil
end

-- ---- reconciliation ----------------------------------------------------------------------------

local function same_qty(a, b)
  local ok, r = pcall(dec.cmp, a or "0", b or "0")
  return ok and r == 0
end

-- Record the fills of one order from the venue's trade list (each once).
local function record_fills(R, venue, acc_name, row, order, run_id)
  if (tonumber(order.executed_quantity) or 0) <= 0 or not order.venue_order_id then return 0 end
  local trades, err = venue:trades(row.symbol, { venue_order_id = order.venue_order_id,
                                                 client_order_id = row.client_order_id, no_breaker = true })
  if not trades then return 0, err end
  local n = 0
  for _, f in ipairs(trades) do
    R.fills:record(acc_name, f, run_id)
    n = n + 1
  end
  return n
end

-- The stop or target of an entry that is on the venue, recorded and never
-- sent (the process stopped in between): send it now, with its own id.
local function send_recorded(a, acc, row, cycle_now)
  local execute = require "vibex.agent.execute"
  local leg = { kind = "protect", protect = row.kind, symbol = row.symbol, side = row.side, client_order_id = row.client_order_id,
                leg = row.leg, origin = "recovery" }
  local p, err = a.venue:prepare({ symbol = row.symbol, side = row.side, type = row.type, stop_price = row.stop_price,
                                   close_position = true, working_type = row.working_type,
                                   client_order_id = row.client_order_id }, {})
  if not p then
    a.rq:update(row.client_order_id, { status = "rejected", reject_reason = "recovery: " .. tostring(err), resolved = true })
    return "rejected"
  end
  leg.params = p
  local outcome = execute.send(a, acc, leg, cycle_now)
  if outcome == "unknown" then a.resolver:watch(leg) end
  tlog:warn("protective order sent after a restart: its entry was on the venue, the order itself never left",
    { account = acc.name, symbol = row.symbol, kind = row.kind, client_order_id = row.client_order_id, outcome = outcome })
  return outcome
end

--- Bring the database to the venue's truth. reason: "start", "reconnect",
-- "periodic". Returns a summary table | nil, err (the venue could not be
-- read; nothing was changed).
function M.run(agent, a, acc, reason)
  local R = agent.repos
  local venue = a.venue
  if a.reconciling then return nil, "a reconciliation is already running" end
  a.reconciling = true
  local ok, res, err = pcall(M._run, agent, a, acc, reason, R, venue)
  a.reconciling = false
  if not ok then
    if task.is_cancelled(res) then error(res, 0) end
    recon_total:labels(acc.name, "error"):inc()
    return nil, tostring(res)
  end
  recon_total:labels(acc.name, res and "ok" or "failed"):inc()
  return res, err
end

function M._run(agent, a, acc, reason, R, venue)
  a.rq:flush() -- the database has this process's writes first
  local s = { reason = reason, orders_checked = 0, orders_updated = 0, fills_recorded = 0, positions_corrected = 0,
              foreign_orders = 0, recovered = 0, undecided = 0, corrections = {} }
  -- the venue's side, read first: if any of it cannot be read, change nothing
  local open = {}
  for _, sym in ipairs(acc.symbols) do
    local list, err = venue:open_orders(sym)
    if not list then return nil, "open orders: " .. tostring(err) end
    for _, o in ipairs(list) do open[#open + 1] = o end
  end
  local positions, perr = venue:positions()
  if not positions then return nil, "positions: " .. tostring(perr) end
  local balances, berr = venue:balances()
  if not balances then return nil, "balances: " .. tostring(berr) end
  if not R then
    a.reconciled_ms = venue:now()
    return s
  end
  local open_by_cid = {}
  for _, o in ipairs(open) do if o.client_order_id then open_by_cid[o.client_order_id] = o end end
  -- 1. every order the database does not know the end of
  local rows, rerr = R.orders:unresolved(acc.name)
  if not rows then return nil, "database: " .. tostring(rerr) end
  local state = {} -- client id -> status after this pass
  local window = acceptance_ms(venue)
  local now = venue:now()
  local protective = {}
  for _, row in ipairs(rows) do
    if row.kind == "stop" or row.kind == "take_profit" then
      protective[#protective + 1] = row
    elseif not M._check_order(a, acc, R, venue, row, open_by_cid, state, window, now, s) then
      s.undecided = s.undecided + 1
    end
  end
  local has_position = {}
  for _, p in ipairs(positions) do
    if p.side and not same_qty(p.quantity, "0") then has_position[p.symbol] = true end
  end
  for _, row in ipairs(protective) do
    local st = M._check_order(a, acc, R, venue, row, open_by_cid, state, window, now, s)
    if not st then s.undecided = s.undecided + 1 end
    if st == "absent" then
      local parent = row.parent_client_order_id and state[row.parent_client_order_id]
      if parent == nil and row.parent_client_order_id then
        local prow = R.orders:get(row.parent_client_order_id)
        parent = prow and prow.status
      end
      local parent_on_venue = parent == "new" or parent == "partially_filled" or parent == "filled"
      if parent_on_venue and has_position[row.symbol] and not a.resolver.pending[row.client_order_id] then
        send_recorded(a, acc, row, now)
        s.recovered = s.recovered + 1
      else
        a.rq:update(row.client_order_id, { status = "rejected", resolved = true,
          reject_reason = parent_on_venue and "not sent: the position it protected is closed"
                                           or "not sent: its entry was never placed" })
      end
    end
  end
  a.rq:flush()
  -- fills the database lacks for orders it knows executed (lost with a
  -- killed process or while the user stream was away)
  local short = R.orders:missing_fills(acc.name) or {}
  for _, row in ipairs(short) do
    local n = record_fills(R, venue, acc.name, row, { executed_quantity = row.executed_quantity,
                                                      venue_order_id = row.venue_order_id }, a.run_id)
    s.fills_recorded = s.fills_recorded + (n or 0)
  end
  -- 2. positions
  M._positions(a, acc, R, positions, s)
  -- 3. balances
  for _, b in ipairs(balances) do
    if b.asset == "USDT" then
      R.ledger:snapshot { account = acc.name, equity = ("%.8f"):format((tonumber(b.wallet) or 0) + (tonumber(b.unrealized_pnl) or 0)),
                          wallet_balance = b.wallet, available = b.available, unrealized_pnl = b.unrealized_pnl,
                          run_id = a.run_id }
      s.wallet = b.wallet
    end
  end
  -- 4. orders on the venue vibex did not place
  local ids = {}
  for _, o in ipairs(open) do if o.client_order_id and not a.known[o.client_order_id] then ids[#ids + 1] = o.client_order_id end end
  local known = #ids > 0 and (R.orders:known(ids) or {}) or {}
  local policy = acc.reconcile and acc.reconcile.foreign_orders or "report"
  for _, o in ipairs(open) do
    local cid = o.client_order_id
    if cid and not a.known[cid] and not known[cid] then
      s.foreign_orders = s.foreign_orders + 1
      tlog:warn(policy == "cancel" and "order on the venue that vibex did not place: canceling it (reconcile.foreign_orders = cancel)"
                                    or "order on the venue that vibex did not place: left alone",
        { account = acc.name, symbol = o.symbol, client_order_id = cid, type = o.type, side = o.side, quantity = o.quantity })
      if policy == "cancel" then venue:cancel(o.symbol, { venue_order_id = o.venue_order_id }) end
    end
  end
  R.ledger:reconciliation { account = acc.name, reason = reason, orders_checked = s.orders_checked,
                            orders_updated = s.orders_updated, fills_recorded = s.fills_recorded,
                            positions_corrected = s.positions_corrected, foreign_orders = s.foreign_orders,
                            details = { recovered = s.recovered, corrections = s.corrections }, run_id = a.run_id }
  a.reconciled_ms = venue:now()
  a.last_reconcile = s
  if s.orders_updated > 0 or s.positions_corrected > 0 or s.recovered > 0 or s.foreign_orders > 0 then
    tlog:info("reconciled with the venue", { account = acc.name, reason = reason, orders_checked = s.orders_checked,
      orders_updated = s.orders_updated, fills = s.fills_recorded, positions_corrected = s.positions_corrected,
      recovered = s.recovered, foreign_orders = s.foreign_orders })
  end
  return s
end

-- Look one unresolved order up and record what the venue says. Returns the
-- status now, "absent" (certainly never reached the venue), or nil (cannot
-- know yet).
function M._check_order(a, acc, R, venue, row, open_by_cid, state, window, now, s)
  s.orders_checked = s.orders_checked + 1
  local cid = row.client_order_id
  if a.resolver.pending[cid] then return nil end -- the resolver has it
  local order = open_by_cid[cid]
  local err
  if not order then order, err = venue:order(row.symbol, cid, { no_breaker = true }) end
  if order then
    local changed = order.status ~= row.status or not same_qty(order.executed_quantity, row.executed_quantity)
    a.rq:state(cid, order, { resolved = row.status == "unknown" or row.status == "pending" })
    if changed then s.orders_updated = s.orders_updated + 1 end
    local n = record_fills(R, venue, acc.name, row, order, a.run_id)
    s.fills_recorded = s.fills_recorded + (n or 0)
    state[cid] = order.status
    a.known[cid] = true
    return order.status
  end
  if err and err.kind == "not_found" then
    local since = tonumber(row.sent_ms) or tonumber(row.created_ms) or 0
    if row.status == "pending" or row.status == "unknown" then
      if now - since > window then
        state[cid] = "absent"
        if row.kind ~= "stop" and row.kind ~= "take_profit" then
          a.rq:update(cid, { status = "rejected", resolved = true,
                             reject_reason = "never reached the venue: not found there after its acceptance window" })
          s.orders_updated = s.orders_updated + 1
        end
        return "absent"
      end
      return nil -- may still arrive: the next pass decides
    end
    -- open in the database, unknown to the venue: it purged a finished order
    a.rq:update(cid, { status = "expired", reject_reason = "the venue no longer has it (reconciliation)" })
    s.orders_updated = s.orders_updated + 1
    state[cid] = "expired"
    return "expired"
  end
  return nil
end

function M._positions(a, acc, R, positions, s)
  local rows = R.positions:current(acc.name) or {}
  local db = {}
  for _, r in ipairs(rows) do db[r.symbol .. "|" .. r.position_side] = r end
  local seen = {}
  for _, p in ipairs(positions) do
    local key = p.symbol .. "|" .. (p.position_side or "both")
    local r = db[key]
    if p.side and not same_qty(p.quantity, "0") then
      seen[key] = true
      if not r or not same_qty(r.quantity, p.quantity) or not same_qty(r.entry_price, p.entry_price) then
        s.positions_corrected = s.positions_corrected + 1
        s.corrections[#s.corrections + 1] = { symbol = p.symbol, database = r and r.quantity or "0", venue = p.quantity }
        tlog:warn("position corrected from the venue", { account = acc.name, symbol = p.symbol,
          database = r and r.quantity or "none", venue = p.quantity, entry_price = p.entry_price })
        R.positions:upsert { account = acc.name, symbol = p.symbol, position_side = p.position_side, quantity = p.quantity,
                             entry_price = p.entry_price, leverage = p.leverage, margin_type = p.margin_type,
                             unrealized_pnl = p.unrealized_pnl, liquidation_price = p.liquidation_price,
                             exit_plan = a.exit_plans[p.symbol] and json.encode(a.exit_plans[p.symbol]) or nil }
      end
      if r and r.exit_plan and not a.exit_plans[p.symbol] then
        local plan = type(r.exit_plan) == "string" and json.decode(r.exit_plan) or r.exit_plan
        if type(plan) == "table" then a.exit_plans[p.symbol] = plan end
      end
    end
  end
  for key, r in pairs(db) do
    if not seen[key] and not same_qty(r.quantity, "0") then
      s.positions_corrected = s.positions_corrected + 1
      s.corrections[#s.corrections + 1] = { symbol = r.symbol, database = r.quantity, venue = "0" }
      tlog:warn("position corrected from the venue: closed there", { account = acc.name, symbol = r.symbol,
                                                                      database = r.quantity })
      R.positions:close(acc.name, r.symbol, r.position_side)
      a.exit_plans[r.symbol] = nil
    end
  end
  a.position_rows = {} -- the next cycle annotates the corrected rows again
end

return M
