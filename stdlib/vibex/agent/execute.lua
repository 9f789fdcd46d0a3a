--- vibex.agent.execute — the one path from a policy's intents to the venue:
-- legs made exact, the risk gate, the record, the wire.
--
--   local summary = execute.run(agent, a, acc, intents, decisions, view, rec)
--
-- Intents a policy script returns (a list):
--   {action = "open", symbol, side = "long" | "short", size_usd = n | quantity = n,
--    leverage, stop_loss, take_profit, confidence, invalidation, decision = i}
--   {action = "close", symbol}                       -- the whole position, then its orders
--   {action = "protect", symbol, stop_loss, take_profit} -- replace the protective orders
--   {action = "cancel", symbol}                      -- every open order of the symbol
--
-- In order, for every cycle:
--   1. legs: each intent becomes venue orders, each prepared once by the
--      venue's shared order preparation (vibex.exchange.orders): quantities
--      from notionals by exact decimal division, rounded down onto the step;
--      stop prices onto the tick; every symbol filter checked, MARKET orders
--      against the mark price and the book the market-data service keeps.
--      Legs are numbered in a fixed order, and the client order id of a leg
--      is derived from (account, cycle, leg).
--   2. the risk gate (vibex.agent.risk) judges the exact legs; nothing it
--      refuses is sent, and protective legs of a refused entry go with it.
--      This is the only place orders are sent from, so no path skips it.
--   3. every approved leg is recorded (status pending, with the gate's
--      verdict) before the first one is sent: the order log takes it at
--      once, PostgreSQL behind it (vibex.agent.recorder). A row holds
--      exactly the strings that are sent.
--   4. the wire: entries (after their leverage), then their stop and target
--      once the entry was accepted. An answer that never came (timeout, 5xx,
--      malformed) leaves the order "unknown", never "rejected": the resolver
--      (vibex.agent.reconcile) looks it up until the venue answers, and the
--      stop and target of such an entry are sent once it resolves as accepted.
local dec = require "vibex.decimal"
local domain = require "vibex.exchange.domain"
local orders = require "vibex.exchange.orders"
local log = require "vibex.log"
local metrics = require "vibex.metrics"
local task = require "vibex.task"

local M = {}

local tlog = log.channel("trading")

local send_seconds = metrics.histogram("vibex_order_send_seconds",
  "From the policy's intents to an order's bytes handed to the venue's socket", { "account" })

local PRIORITY = { close = 1, cancel = 2, protect = 3, open = 4 }
local NOT_SENT = { retry = true, invalid = true, filter = true, banned = true, shutdown = true }
local CONDITIONAL = { stop = true, stop_market = true, take_profit = true, take_profit_market = true,
                      trailing_stop_market = true }

local function finite_pos(x) return type(x) == "number" and x == x and x > 0 and x < math.huge end

local function opposite(side) return side == "buy" and "sell" or "buy" end

-- ---- 1. legs ------------------------------------------------------------------------------

local function protect_legs(list, entry_side, symbol, it, parent)
  local exit_side = opposite(entry_side)
  if finite_pos(it.stop_loss) then
    list[#list + 1] = { kind = "protect", protect = "stop", symbol = symbol, side = exit_side, stop = it.stop_loss,
                        close_position = true, parent = parent }
  end
  if finite_pos(it.take_profit) then
    list[#list + 1] = { kind = "protect", protect = "take_profit", symbol = symbol, side = exit_side,
                        stop = it.take_profit, close_position = true, parent = parent }
  end
end

-- The exact quantity of an entry: an explicit quantity rounded down onto the
-- step, or the notional divided by the reference price, exactly.
local function entry_quantity(venue, symbol, it, price)
  local rules, err = venue:rules(symbol)
  if not rules then return nil, tostring(err) end
  local q, qerr
  if finite_pos(it.quantity) then
    q, qerr = rules:qty(it.quantity, true, "down")
  elseif finite_pos(it.size_usd) and finite_pos(price) then
    q, qerr = rules:qty_of_notional(it.size_usd, price, true)
  else
    return nil, "no positive size (size_usd or quantity)"
  end
  if not q then return nil, tostring(qerr) end
  if dec.cmp(q, "0") <= 0 then
    return nil, ("the size rounds to zero at the step of %s"):format(symbol)
  end
  return q
end

--- Intents -> legs for the gate (not yet prepared). Returns legs, bad
-- (intents that cannot become an order, with the reason).
function M.legs(a, intents, decisions, view)
  local list, bad = {}, {}
  local sorted = {}
  for i, it in ipairs(intents) do
    if type(it) == "table" then sorted[#sorted + 1] = { i = i, it = it } else
      bad[#bad + 1] = { rule = "intent", message = ("intent %d is a %s, not a table"):format(i, type(it)) }
    end
  end
  table.sort(sorted, function(x, y)
    local px, py = PRIORITY[x.it.action] or 9, PRIORITY[y.it.action] or 9
    if px ~= py then return px < py end
    return x.i < y.i
  end)
  for _, s in ipairs(sorted) do
    local it = s.it
    local sym = it.symbol
    local dcs = type(it.decision) == "number" and decisions[it.decision] or nil
    local function refuse(msg) bad[#bad + 1] = { rule = "intent", symbol = sym, message = msg } end
    if type(sym) ~= "string" or not view.symbols[sym] then
      refuse(("intent %d: unknown symbol %s"):format(s.i, tostring(sym)))
    elseif it.action == "open" then
      local side = it.side == "long" and "buy" or it.side == "short" and "sell" or nil
      local px = view.prices[sym]
      if not side then refuse(("open %s: side must be long or short, found %s"):format(sym, tostring(it.side)))
      else
        local q, qerr = entry_quantity(a.venue, sym, it, px)
        if not q then refuse(("open %s: %s"):format(sym, qerr)) else
          local entry = { kind = "entry", symbol = sym, side = side, quantity = q, qty = tonumber(q), price = px,
                          leverage = it.leverage or 1, confidence = it.confidence or (dcs and dcs.confidence) or 0,
                          plan = { stop_loss = it.stop_loss, take_profit = it.take_profit,
                                   invalidation = it.invalidation or (dcs and dcs.invalidation), confidence = it.confidence } }
          list[#list + 1] = entry
          protect_legs(list, side, sym, it, entry)
        end
      end
    elseif it.action == "close" then
      local pos = view.positions[sym]
      if not pos or pos.pending then refuse(("close %s: no open position"):format(sym)) else
        local exit = { kind = "exit", symbol = sym, side = pos.side == "long" and "sell" or "buy",
                       quantity = pos.quantity_text, qty = pos.qty, price = view.prices[sym], reduce_only = true }
        list[#list + 1] = exit
        -- the stop and target go only once the exit is in: a refused exit
        -- must not leave the position unprotected
        list[#list + 1] = { kind = "cancel", symbol = sym, which = "protective", after = exit }
      end
    elseif it.action == "protect" then
      local pos = view.positions[sym]
      if not pos or pos.pending then refuse(("protect %s: no open position"):format(sym)) else
        list[#list + 1] = { kind = "cancel", symbol = sym, which = "protective" }
        protect_legs(list, pos.side == "long" and "buy" or "sell", sym, it, nil)
        list[#list].replan = { stop_loss = it.stop_loss, take_profit = it.take_profit }
      end
    elseif it.action == "cancel" then
      list[#list + 1] = { kind = "cancel", symbol = sym }
    else
      refuse(("intent %d: unknown action %s"):format(s.i, tostring(it.action)))
    end
  end
  return list, bad
end

-- The venue order of a leg, in the domain's names.
local function leg_order(leg)
  if leg.kind == "protect" then
    return { symbol = leg.symbol, side = leg.side, type = leg.protect == "stop" and "stop_market" or "take_profit_market",
             stop_price = leg.stop, close_position = true, working_type = "mark_price", client_order_id = leg.client_order_id }
  end
  return { symbol = leg.symbol, side = leg.side, type = "market", quantity = leg.quantity,
           reduce_only = leg.reduce_only or nil, client_order_id = leg.client_order_id }
end

--- Number the order legs, derive their client ids and prepare each once:
-- the exact request. A leg that cannot be prepared is refused (with the
-- filter's reason), and so are the protective legs of a refused entry.
function M.prepare(a, acc, legs, view, cycle_key)
  local out, bad, leg_no = {}, {}, 0
  local failed = {}
  for _, leg in ipairs(legs) do
    if leg.kind == "cancel" then
      out[#out + 1] = leg
    elseif leg.parent and failed[leg.parent] then
      failed[leg] = true
    else
      leg_no = leg_no + 1
      leg.leg = leg_no
      -- a replay's orders are its run's (a second run of the same config
      -- must not meet the first's ids); a live account's are the cycle's, so
      -- a cycle tried again after a restart can never send an order twice
      leg.client_order_id = orders.client_order_id(acc.name, a.order_scope and (a.order_scope .. "/" .. cycle_key) or cycle_key,
                                                   leg_no)
      local quote = { mark = view.prices[leg.symbol], bid = view.books[leg.symbol] and view.books[leg.symbol].bid,
                      ask = view.books[leg.symbol] and view.books[leg.symbol].ask }
      local p, err = a.venue:prepare(leg_order(leg), { quote = quote })
      if not p then
        failed[leg] = true
        bad[#bad + 1] = { rule = err and err.filter or "order", symbol = leg.symbol, kind = leg.kind, side = leg.side,
                          message = ("%s %s: %s"):format(leg.kind, leg.symbol, err and err.message or tostring(err)) }
      else
        leg.params = p
        if p.quantity then leg.quantity, leg.qty = p.quantity, tonumber(p.quantity) end
        if p.stopPrice then leg.stop_price, leg.stop = p.stopPrice, tonumber(p.stopPrice) end
        out[#out + 1] = leg
      end
    end
  end
  return out, bad
end

--- The approved legs less the protective legs of entries the gate refused.
function M.without_orphans(approved)
  local ok = {}
  for _, o in ipairs(approved) do ok[o] = true end
  local out = {}
  for _, o in ipairs(approved) do
    if not o.parent or ok[o.parent] then out[#out + 1] = o end
  end
  return out
end

-- ---- 3. the record ---------------------------------------------------------------------

local function lower(v) return type(v) == "string" and v:lower() or nil end
local function truthy(v) return v == true or v == "true" end

local DBKIND = { entry = "entry", exit = "exit" }

--- The orders row of a prepared leg: exactly what is sent.
function M.row(acc, leg, cycle_key, verdict, run_id)
  local p = leg.params
  return {
    account = acc.name, client_order_id = p.newClientOrderId, symbol = p.symbol, side = lower(p.side),
    type = lower(p.type), quantity = p.quantity, price = p.price, stop_price = p.stopPrice,
    position_side = lower(p.positionSide or "BOTH"), time_in_force = p.timeInForce,
    reduce_only = truthy(p.reduceOnly), close_position = truthy(p.closePosition), working_type = lower(p.workingType),
    cycle_key = cycle_key, leg = leg.leg, kind = DBKIND[leg.kind] or leg.protect,
    parent_client_order_id = leg.parent and leg.parent.client_order_id or nil, risk = verdict, origin = leg.origin or "agent",
    run_id = run_id,
  }
end

-- ---- 4. the wire ---------------------------------------------------------------------------

-- Cancel a symbol's orders: all, or only the protective (conditional)
-- ones, so an exit sent just before is left to fill. One by one, so each
-- answer is recorded at once (the stream's event may come later, or not
-- before a shutdown closes it).
local function cancel(a, o)
  local venue = a.venue
  local open, err = venue:open_orders(o.symbol)
  if not open then return nil, err end
  local n = 0
  for _, x in ipairs(open) do
    if o.which ~= "protective" or CONDITIONAL[x.type] then
      local done, cerr = venue:cancel(o.symbol, { venue_order_id = x.venue_order_id })
      if done then
        if done.client_order_id then
          a.rq:update(done.client_order_id, { status = done.status, executed_quantity = done.executed_quantity,
                                              venue_time_ms = done.updated_ms })
        end
      elseif cerr and cerr.code ~= -2011 then
        return nil, cerr
      end
      n = n + 1
    end
  end
  return { canceled = n }
end

local function summary(leg, order, err, status)
  return { leg = leg.leg, kind = leg.kind == "protect" and leg.protect or leg.kind, symbol = leg.symbol, side = leg.side,
           quantity = leg.quantity, stop_price = leg.stop_price, client_order_id = leg.client_order_id,
           status = status or (order and order.status) or "rejected", error = err and tostring(err) or nil }
end

--- The outcome of a send, into the record and the account's state.
-- Returns "accepted" | "unknown" | "rejected".
function M.outcome(a, leg, order, err, sent_ms)
  local cid = leg.client_order_id
  if order then
    leg.accepted = true
    a.rq:state(cid, order, { sent_ms = sent_ms, resolved = order.found_by_lookup })
    return "accepted"
  end
  if err and err.kind == "shutdown" then
    -- never sent, and the process is stopping: the row stays pending, and
    -- the next start's reconciliation sends a stop or target whose entry
    -- is on the venue (an entry is not sent late: its decision is stale)
    return "pending"
  end
  if err and err.kind == "unknown" then
    leg.unknown = true
    -- the last error is kept with it; the status says the outcome is not known
    a.rq:update(cid, { status = "unknown", sent_ms = sent_ms, reject_reason = tostring(err) })
    return "unknown"
  end
  a.rq:update(cid, { status = "rejected", reject_reason = tostring(err), sent_ms = sent_ms })
  return "rejected"
end

local MSG = { unknown = "order outcome unknown: it is looked up until the venue answers",
              rejected = "order refused by the venue",
              pending = "order not sent: the process is stopping (a stop or target goes out at the next start)" }

--- Send one prepared leg: its leverage first (entries), then the order.
-- Returns the outcome ("accepted", "unknown", "rejected", or "pending" when
-- the process began stopping before it left) and the venue's order or the
-- error.
function M.send(a, acc, leg, now_ms, t0)
  local venue = a.venue
  if leg.kind == "entry" and a.leverage[leg.symbol] ~= leg.leverage then
    local lev = math.max(1, math.floor(leg.leverage + 0.5))
    local ok, lerr = venue:set_leverage(leg.symbol, lev)
    if ok then a.leverage[leg.symbol] = leg.leverage else
      tlog:warn("leverage not set", { account = acc.name, symbol = leg.symbol, leverage = lev, error = tostring(lerr) })
    end
  end
  local sent_ms = venue:now()
  local order, err = venue:send(leg.params)
  a.gate:sent(leg, now_ms)
  local sent_ns = venue.client.last_sent_ns
  if t0 and sent_ns and sent_ns > t0 then send_seconds:labels(acc.name):observe((sent_ns - t0) / 1e9) end
  -- a request refused before it left (breaker open, a ban, local checks, the
  -- loop stopping) was never sent
  local went = order or (err and not NOT_SENT[err.kind])
  local outcome = M.outcome(a, leg, order, err, went and sent_ms or nil)
  if outcome ~= "accepted" then
    local fn = outcome == "rejected" and tlog.warn or tlog.error
    fn(tlog, MSG[outcome], { account = acc.name, symbol = leg.symbol, kind = leg.kind,
                             client_order_id = leg.client_order_id, error = tostring(err) })
  end
  return outcome, order or err
end

--- The whole path for one cycle's intents. rec collects what happened
-- (orders, refusals); step(name) times the steps. Returns the approved legs.
local run

function M.run(agent, a, acc, intents, decisions, view, rec, step)
  -- from here to the first order's bytes nothing waits, and no collector
  -- step runs either: held until the task first waits (the order is on the
  -- wire) or, with a venue that never waits (the simulator), until the end
  local t0 = tonumber(task.hrtime())
  local outer = a.gc_held -- the cycle holds it already, to its end
  task.hold_gc()
  local ok, res = pcall(run, agent, a, acc, intents, decisions, view, rec, step, t0)
  if not outer then task.release_gc() end
  if not ok then error(res, 0) end
  return res
end

function run(agent, a, acc, intents, decisions, view, rec, step, t0)
  local legs, bad = M.legs(a, intents, decisions, view)
  if rec.manual_by then for _, l in ipairs(legs) do l.origin = "manual" end end
  local prepared, pbad = M.prepare(a, acc, legs, view, rec.cycle_key)
  for _, b in ipairs(pbad) do bad[#bad + 1] = b end
  for _, b in ipairs(bad) do rec.validation.refusals[#rec.validation.refusals + 1] = b end
  -- 2. the gate
  local approved, refused = a.gate:check(prepared, view, acc.risk)
  approved = M.without_orphans(approved)
  for _, r in ipairs(refused) do
    rec.validation.refusals[#rec.validation.refusals + 1] = { rule = r.rule, message = r.message, symbol = r.order.symbol,
                                                              kind = r.order.kind, side = r.order.side, qty = r.order.qty }
    agent:refused(acc, r.rule)
  end
  if step then step("risk") end
  local sends = 0
  for _, leg in ipairs(approved) do if leg.kind ~= "cancel" then sends = sends + 1 end end
  -- 3. the record: every leg before the first byte
  if sends > 0 then
    agent:record_decision_async(a, rec)
    local verdict = { gate = "approved", checked_ms = view.now_ms, limits = acc.risk }
    local recorded = {}
    for _, leg in ipairs(approved) do
      if leg.kind ~= "cancel" then
        local ok, err = a.rq:insert(M.row(acc, leg, rec.cycle_key, verdict, a.run_id))
        if not ok then
          tlog:error("ALERT: order not recorded, so not sent", { account = acc.name, symbol = leg.symbol, error = tostring(err),
                                                               alert = true })
          rec.error = "order record: " .. tostring(err)
          -- none of the cycle's legs goes out: those recorded before this
          -- one end as never sent, not as pending forever
          for _, id in ipairs(recorded) do
            a.rq:update(id, { status = "rejected", reject_reason = "not sent: another leg of its cycle could not be recorded" })
          end
          return {}
        end
        recorded[#recorded + 1] = leg.client_order_id
        a.known[leg.client_order_id] = true
      end
    end
  end
  -- 4. the wire
  for _, leg in ipairs(approved) do
    if leg.kind == "cancel" and leg.after and not leg.after.accepted then
      rec.orders[#rec.orders + 1] = { kind = "cancel", symbol = leg.symbol, status = "skipped",
                                      error = "the exit was not accepted: the protective orders stay" }
    elseif leg.kind == "cancel" then
      local res, err = cancel(a, leg)
      rec.orders[#rec.orders + 1] = { kind = "cancel", symbol = leg.symbol, status = res and "done" or "failed",
                                      error = err and tostring(err) or nil }
    elseif leg.parent and leg.parent.unknown then
      -- sent when the entry resolves as accepted (reconcile.lua)
      a.resolver:after(leg.parent, leg)
      rec.orders[#rec.orders + 1] = summary(leg, nil, nil, "pending")
    elseif leg.parent and not leg.parent.accepted then
      a.rq:update(leg.client_order_id, { status = "rejected", reject_reason = "not sent: its entry was not accepted" })
      rec.orders[#rec.orders + 1] = summary(leg, nil, "its entry was not accepted", "skipped")
    else
      local outcome, res = M.send(a, acc, leg, view.now_ms, t0)
      if outcome == "accepted" then
        if leg.kind == "entry" then
          leg.plan.opened = rec.cycle_key
          a.exit_plans[leg.symbol] = leg.plan
        end
        if leg.replan and a.exit_plans[leg.symbol] then
          for k, v in pairs(leg.replan) do a.exit_plans[leg.symbol][k] = v end
        end
      elseif outcome == "unknown" then
        a.resolver:watch(leg)
      end
      rec.orders[#rec.orders + 1] = summary(leg, outcome == "accepted" and res or nil,
                                            outcome ~= "accepted" and res or nil, outcome == "unknown" and "unknown" or nil)
    end
  end
  return approved
end

M.FINAL = domain.FINAL
return M
