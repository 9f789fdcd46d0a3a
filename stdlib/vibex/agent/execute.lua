--- vibex.agent.execute — from a policy's intents to concrete orders (sized,
-- rounded to the symbol's step and tick), and from orders the risk gate
-- approved to the venue.
--
-- Intents a policy script returns (a list):
--   {action = "open", symbol, side = "long" | "short", size_usd = n | quantity = n,
--    leverage, stop_loss, take_profit, confidence, invalidation, decision = i}
--   {action = "close", symbol}                       -- the whole position, then its orders
--   {action = "protect", symbol, stop_loss, take_profit} -- replace the protective orders
--   {action = "cancel", symbol}                      -- every open order of the symbol
-- Entries are MARKET orders; stops and targets are close-position
-- STOP_MARKET / TAKE_PROFIT_MARKET orders on the mark price, sent only
-- after their entry was accepted. Client order ids come from (account,
-- cycle, leg), so a re-sent order is recognisably the same order.
local log = require "vibex.log"

local M = {}

local tlog = log.channel("trading")

local PRIORITY = { close = 1, cancel = 2, protect = 3, open = 4 }

local function finite_pos(x) return type(x) == "number" and x == x and x > 0 and x < math.huge end

-- Round a quantity down to the symbol's step: the number, or nil, reason.
local function round_qty(venue, symbol, q)
  local rules, err = venue:symbol_rules(symbol)
  if not rules then return nil, tostring(err) end
  local s, rerr = rules:qty(("%.8f"):format(q), true, "down")
  if not s then return nil, tostring(rerr) end
  local n = tonumber(s)
  if not n or n <= 0 then return nil, ("quantity %.8f rounds to zero at the step of %s"):format(q, symbol) end
  return n, s
end

local function protects(list, entry_side, symbol, it, parent)
  local exit_side = entry_side == "BUY" and "SELL" or "BUY"
  if finite_pos(it.stop_loss) then
    list[#list + 1] = { kind = "protect", protect = "stop", symbol = symbol, side = exit_side, stop_price = it.stop_loss,
                        close_position = true, parent = parent }
  end
  if finite_pos(it.take_profit) then
    list[#list + 1] = { kind = "protect", protect = "take_profit", symbol = symbol, side = exit_side,
                        stop_price = it.take_profit, close_position = true, parent = parent }
  end
end

--- Intents -> concrete orders for the gate. Returns orders, bad (intents
-- that cannot become an order, with the reason).
function M.materialize(a, intents, decisions, view)
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
    local dec = type(it.decision) == "number" and decisions[it.decision] or nil
    local function refuse(msg) bad[#bad + 1] = { rule = "intent", symbol = sym, message = msg } end
    if type(sym) ~= "string" or not view.symbols[sym] then
      refuse(("intent %d: unknown symbol %s"):format(s.i, tostring(sym)))
    elseif it.action == "open" then
      local side = it.side == "long" and "BUY" or it.side == "short" and "SELL" or nil
      local px = view.prices[sym]
      local q = it.quantity or (finite_pos(it.size_usd) and finite_pos(px) and it.size_usd / px or nil)
      if not side then refuse(("open %s: side must be long or short, found %s"):format(sym, tostring(it.side)))
      elseif not finite_pos(q) then refuse(("open %s: no positive size"):format(sym))
      else
        local n, qerr = round_qty(a.venue, sym, q)
        if not n then refuse(("open %s: %s"):format(sym, qerr)) else
          local entry = { kind = "entry", symbol = sym, side = side, qty = n, price = px, leverage = it.leverage or 1,
                          confidence = it.confidence or (dec and dec.confidence) or 0,
                          plan = { stop_loss = it.stop_loss, take_profit = it.take_profit,
                                   invalidation = it.invalidation or (dec and dec.invalidation), confidence = it.confidence } }
          list[#list + 1] = entry
          protects(list, side, sym, it, entry)
        end
      end
    elseif it.action == "close" then
      local pos = view.positions[sym]
      if not pos then refuse(("close %s: no open position"):format(sym)) else
        list[#list + 1] = { kind = "exit", symbol = sym, side = pos.side == "long" and "SELL" or "BUY", qty = pos.qty,
                            price = view.prices[sym], reduce_only = true }
        list[#list + 1] = { kind = "cancel", symbol = sym, which = "protective" }
      end
    elseif it.action == "protect" then
      local pos = view.positions[sym]
      if not pos then refuse(("protect %s: no open position"):format(sym)) else
        list[#list + 1] = { kind = "cancel", symbol = sym, which = "protective" }
        protects(list, pos.side == "long" and "BUY" or "SELL", sym, it, nil)
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

--- The approved orders less the protective orders of entries the gate
-- refused (nothing to protect).
function M.without_orphans(approved)
  local ok = {}
  for _, o in ipairs(approved) do ok[o] = true end
  local out = {}
  for _, o in ipairs(approved) do
    if not o.parent or ok[o.parent] then out[#out + 1] = o end
  end
  return out
end

local CONDITIONAL = { STOP = true, STOP_MARKET = true, TAKE_PROFIT = true, TAKE_PROFIT_MARKET = true,
                      TRAILING_STOP_MARKET = true }

-- Cancel a symbol's orders: all of them, or only the protective
-- (conditional) ones, so an exit sent just before is left to fill.
local function cancel(venue, o)
  if o.which ~= "protective" then return venue:cancel_all(o.symbol) end
  local open, err = venue:open_orders(o.symbol)
  if not open then return nil, err end
  local n = 0
  for _, x in ipairs(open) do
    if CONDITIONAL[x.type or x.origType] then
      local ok, cerr = venue:cancel { symbol = o.symbol, order_id = x.orderId }
      if not ok then return nil, cerr end
      n = n + 1
    end
  end
  return { canceled = n }
end

local function order_summary(o, res, err)
  return { leg = o.leg, kind = o.kind, symbol = o.symbol, side = o.side, qty = o.qty, stop_price = o.stop_price,
           type = o.type, client_order_id = o.client_id, status = res and res.status or "REJECTED",
           error = err and tostring(err) or nil }
end

-- The venue order for a concrete order.
local function venue_order(o, acc, rec)
  local v = { symbol = o.symbol, side = o.side, account = acc.name, decision = rec.cycle_key, leg = o.leg }
  if o.kind == "protect" then
    v.type = o.protect == "stop" and "STOP_MARKET" or "TAKE_PROFIT_MARKET"
    v.stopPrice = ("%.8f"):format(o.stop_price)
    v.closePosition = true
    v.workingType = "MARK_PRICE"
  else
    v.type = "MARKET"
    v.quantity = ("%.8f"):format(o.qty)
    if o.reduce_only then v.reduceOnly = true end
  end
  return v
end

--- Send the approved orders, in order. Entries set the symbol's leverage
-- first; protective orders go only after their entry was accepted. Every
-- order is written to the database before it is sent, then updated with
-- the venue's answer.
function M.run(agent, a, acc, approved, rec, view)
  local venue, R = a.venue, agent.repos
  local leg = 0
  for _, o in ipairs(approved) do
    if o.kind == "cancel" then
      local res, err = cancel(venue, o)
      rec.orders[#rec.orders + 1] = { kind = "cancel", symbol = o.symbol, status = res and "DONE" or "FAILED",
                                      error = err and tostring(err) or nil }
    elseif o.parent and not o.parent.accepted then
      rec.orders[#rec.orders + 1] = { kind = o.kind, symbol = o.symbol, side = o.side, status = "SKIPPED",
                                      error = "its entry was not accepted" }
    else
      leg = leg + 1
      o.leg = leg
      if o.kind == "entry" and a.leverage[o.symbol] ~= o.leverage then
        local lev = math.max(1, math.floor(o.leverage + 0.5))
        local ok, lerr = venue:set_leverage(o.symbol, lev)
        if ok then a.leverage[o.symbol] = o.leverage else
          tlog:warn("leverage not set", { account = acc.name, symbol = o.symbol, leverage = lev, error = tostring(lerr) })
        end
      end
      local vo = venue_order(o, acc, rec)
      local p = venue:order_params(vo)
      o.client_id, o.type = p.newClientOrderId, p.type
      if R then
        R.orders:insert { account = acc.name, client_order_id = p.newClientOrderId, symbol = o.symbol, side = o.side,
                          type = p.type, quantity = p.quantity, stop_price = p.stopPrice, reduce_only = p.reduceOnly or false,
                          close_position = p.closePosition or false, working_type = p.workingType, leg = leg,
                          cycle_key = rec.cycle_key }
      end
      vo.newClientOrderId = p.newClientOrderId
      local res, err = venue:place(vo)
      a.gate:sent(o, view.now_ms)
      if res then
        o.accepted = true
        if o.kind == "entry" then
          o.plan.opened = rec.cycle_key
          a.exit_plans[o.symbol] = o.plan
        end
        if o.replan and a.exit_plans[o.symbol] then
          for k, v in pairs(o.replan) do a.exit_plans[o.symbol][k] = v end
        end
      end
      if R then
        R.orders:update(p.newClientOrderId, res and { status = res.status, executed_qty = res.executedQty,
                                                       avg_price = res.avgPrice ~= "0" and res.avgPrice or nil,
                                                       venue_order_id = res.orderId }
                                          or { status = "REJECTED", reject_reason = tostring(err) })
      end
      rec.orders[#rec.orders + 1] = order_summary(o, res, err)
      if not res then
        tlog:warn("order refused by the venue", { account = acc.name, symbol = o.symbol, kind = o.kind, error = tostring(err) })
      end
    end
  end
end

return M
