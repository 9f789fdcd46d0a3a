--- vibex.exchange.domain — the trading vocabulary, and the translation from
-- the Binance-family wire format (Aster, Binance USDⓈ-M, and the simulated
-- venue, which speaks the same) into it. This is the adapters' edge: past
-- it, nothing sees `positionAmt`, `o.X` or `o.z`.
--
-- The names (DESIGN.md "One vocabulary"), the same in Lua, SQL and the API:
--
--   order     client_order_id, venue_order_id, symbol, side ("buy"|"sell"),
--             position_side ("both"|"long"|"short"), type ("market", "limit",
--             "stop_market", "take_profit_market", …), status ("new",
--             "partially_filled", "filled", "canceled", "expired",
--             "rejected"; vibex adds "pending" and "unknown"), quantity,
--             executed_quantity, average_price, price, stop_price,
--             reduce_only, close_position, working_type ("mark_price" |
--             "contract_price"), time_in_force, updated_ms
--   fill      trade_id, client_order_id, venue_order_id, symbol, side,
--             price, quantity, fee, fee_asset, realized_pnl, maker, time_ms
--   position  symbol, position_side, quantity (signed), side ("long" |
--             "short" | nil when flat), entry_price, mark_price,
--             unrealized_pnl, leverage, liquidation_price, margin_type
--   balance   asset, wallet, available, unrealized_pnl
--   events    {kind = "order", time_ms, order, fill?}
--             {kind = "account", time_ms, reason, balances, positions}
--             {kind = "margin_call", time_ms, positions}
--
-- Money, prices and quantities stay exact decimal strings; times are epoch
-- milliseconds; flags are booleans.
local M = {}

local STATUS = {
  NEW = "new", PARTIALLY_FILLED = "partially_filled", FILLED = "filled", CANCELED = "canceled", CANCELLED = "canceled",
  EXPIRED = "expired", EXPIRED_IN_MATCH = "expired", REJECTED = "rejected",
  NEW_INSURANCE = "filled", NEW_ADL = "filled", -- liquidation and auto-deleverage fills
}
M.STATUS = STATUS

--- Statuses after which an order never changes again.
M.FINAL = { filled = true, canceled = true, expired = true, rejected = true }
--- Statuses of an order that may still fill.
M.OPEN = { new = true, partially_filled = true }

local function lower(v) return type(v) == "string" and v:lower() or nil end
local function truthy(v) return v == true or v == "true" end
local function num(v) return tonumber(v) or 0 end

-- "0" and "0.00" mean "none" for prices the venue reports on every order
local function price_or_nil(v)
  if v == nil or v == "" then return nil end
  if num(v) == 0 then return nil end
  return tostring(v)
end

function M.status(s) return STATUS[s] or lower(s) end

--- An order as REST reports it (/order, /openOrders, /allOrders).
function M.order(o)
  if type(o) ~= "table" then return nil end
  return {
    client_order_id = o.clientOrderId, venue_order_id = o.orderId ~= nil and tostring(o.orderId) or nil,
    symbol = o.symbol, side = lower(o.side), position_side = lower(o.positionSide or "BOTH"),
    type = lower(o.origType or o.type), status = M.status(o.status),
    quantity = o.origQty, executed_quantity = o.executedQty or "0", average_price = price_or_nil(o.avgPrice),
    price = price_or_nil(o.price), stop_price = price_or_nil(o.stopPrice),
    reduce_only = truthy(o.reduceOnly), close_position = truthy(o.closePosition),
    working_type = lower(o.workingType), time_in_force = o.timeInForce,
    updated_ms = tonumber(o.updateTime) or tonumber(o.time), created_ms = tonumber(o.time),
  }
end

--- A trade as REST reports it (/userTrades); the client id is not in it,
-- so the caller who knows the order passes it.
function M.trade(t, client_order_id)
  return {
    trade_id = tostring(t.id), client_order_id = client_order_id, venue_order_id = tostring(t.orderId),
    symbol = t.symbol, side = lower(t.side), price = t.price, quantity = t.qty, fee = t.commission or "0",
    fee_asset = t.commissionAsset, realized_pnl = t.realizedPnl or "0", maker = truthy(t.maker),
    time_ms = tonumber(t.time),
  }
end

--- A position as REST reports it (/positionRisk).
function M.position(p)
  local q = num(p.positionAmt)
  return {
    symbol = p.symbol, position_side = lower(p.positionSide or "BOTH"), quantity = p.positionAmt or "0",
    side = q > 0 and "long" or q < 0 and "short" or nil, entry_price = p.entryPrice,
    mark_price = price_or_nil(p.markPrice), unrealized_pnl = p.unRealizedProfit or "0",
    leverage = tonumber(p.leverage), liquidation_price = price_or_nil(p.liquidationPrice),
    margin_type = lower(p.marginType), isolated_margin = p.isolatedMargin,
  }
end

--- A balance as REST reports it (/balance).
function M.balance(b)
  return {
    asset = b.asset, wallet = b.balance or b.walletBalance, cross_wallet = b.crossWalletBalance,
    available = b.availableBalance, unrealized_pnl = b.crossUnPnl or b.unrealizedProfit or "0",
  }
end

-- ORDER_TRADE_UPDATE's order object ("o").
local function event_order(o, E)
  return {
    client_order_id = o.c, venue_order_id = o.i ~= nil and tostring(o.i) or nil, symbol = o.s, side = lower(o.S),
    position_side = lower(o.ps or "BOTH"), type = lower(o.ot or o.o), status = M.status(o.X),
    quantity = o.q, executed_quantity = o.z or "0", average_price = price_or_nil(o.ap), price = price_or_nil(o.p),
    stop_price = price_or_nil(o.sp), reduce_only = truthy(o.R), close_position = truthy(o.cp),
    working_type = lower(o.wt), time_in_force = o.f, updated_ms = tonumber(o.T) or E,
  }
end

--- A user-data stream event (ORDER_TRADE_UPDATE, ACCOUNT_UPDATE,
-- MARGIN_CALL) in the domain's shape, or nil for anything else. The
-- stream's own marks (late, stale) come along.
function M.event(ev)
  local E = tonumber(ev.E) or 0
  if ev.e == "ORDER_TRADE_UPDATE" and type(ev.o) == "table" then
    local o = ev.o
    local out = { kind = "order", time_ms = E, order = event_order(o, E), execution = lower(o.x), late = ev.late,
                  stale = ev.stale }
    if o.x == "TRADE" and num(o.l) > 0 then
      out.fill = {
        trade_id = tostring(o.t), client_order_id = o.c, venue_order_id = o.i ~= nil and tostring(o.i) or nil,
        symbol = o.s, side = lower(o.S), price = o.L, quantity = o.l, fee = o.n or "0", fee_asset = o.N,
        realized_pnl = o.rp or "0", maker = truthy(o.m), time_ms = tonumber(o.T) or E,
      }
    end
    return out
  end
  if ev.e == "ACCOUNT_UPDATE" and type(ev.a) == "table" then
    local balances, positions = {}, {}
    for i, b in ipairs(ev.a.B or {}) do
      balances[i] = { asset = b.a, wallet = b.wb, cross_wallet = b.cw, change = b.bc or "0" }
    end
    for i, p in ipairs(ev.a.P or {}) do
      local q = num(p.pa)
      positions[i] = { symbol = p.s, quantity = p.pa, side = q > 0 and "long" or q < 0 and "short" or nil,
                       entry_price = p.ep, unrealized_pnl = p.up, margin_type = lower(p.mt),
                       isolated_wallet = p.iw, position_side = lower(p.ps or "BOTH") }
    end
    -- seq: the simulated venue numbers its events (several share a millisecond)
    return { kind = "account", time_ms = E, seq = tonumber(ev.vx_seq), reason = lower(ev.a.m), balances = balances,
             positions = positions }
  end
  if ev.e == "MARGIN_CALL" then
    local positions = {}
    for i, p in ipairs(ev.p or {}) do
      positions[i] = { symbol = p.s, position_side = lower(p.ps), quantity = p.pa, margin_type = lower(p.mt),
                       mark_price = p.mp, unrealized_pnl = p.up, maintenance_margin = p.mm }
    end
    return { kind = "margin_call", time_ms = E, cross_wallet = ev.cw, positions = positions }
  end
  return nil
end

return M
