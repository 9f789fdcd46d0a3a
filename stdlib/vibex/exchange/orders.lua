--- vibex.exchange.orders — order preparation both venues share (the Aster /
-- Binance adapter and the simulated venue): parameter names, client order
-- ids, the combinations a venue refuses, rounding and symbol filters.
--
--   local p, err = orders.prepare(rules, {symbol = "BTCUSDT", side = "buy", type = "market", quantity = "0.012"},
--                                 {account = "main", quote = {mark = 60010.5, bid = 60010, ask = 60011}})
--   -- p: the venue's parameters with every price and quantity an exact decimal string
--   orders.client_order_id("main", "2026-12-06T12:00:00Z", 2)   -- "vx…" (32 characters)
--
-- Orders come in domain names (quantity, stop_price, reduce_only,
-- close_position, client_order_id, time_in_force, position_side,
-- working_type, side "buy"/"sell", type "market"/"stop_market"/…) or in the
-- venue's own (newClientOrderId, stopPrice, …, upper case); both give the
-- same parameters. Everything refused here is refused before a byte is
-- sent, with the reason, as a vibex.exchange.errors value of kind
-- "invalid" or "filter".
local crypto = require "vibex.core.crypto"
local errors = require "vibex.exchange.errors"

local M = {}

local ALIASES = {
  qty = "quantity", stop = "stopPrice", stop_price = "stopPrice", reduce_only = "reduceOnly",
  close_position = "closePosition", tif = "timeInForce", time_in_force = "timeInForce",
  position_side = "positionSide", working_type = "workingType", callback_rate = "callbackRate",
  activation_price = "activationPrice", client_id = "newClientOrderId", client_order_id = "newClientOrderId",
  price_protect = "priceProtect",
}
-- fields that describe the order to vibex and are never sent
local LOCAL = { decision = true, leg = true, account = true, cycle = true, mark_price = true, kind = true }
local UPPER = { side = true, type = true, timeInForce = true, positionSide = true, workingType = true }

--- The client order id of (account, cycle, leg): the same inputs always
-- give the same id, so an order sent again is recognisably the same order
-- (the venue refuses a duplicate while the first is open, and a lookup by
-- this id finds it). "vx" + 30 hex digits of SHA-256: 32 characters.
function M.client_order_id(account, cycle, leg)
  return "vx" .. crypto.sha256(("%s|%s|%s"):format(account, cycle, leg or 1)):sub(1, 30)
end

--- The venues' rule for client order ids: 1 to 36 of [.A-Z:/a-z0-9_-].
function M.check_client_id(id)
  if type(id) ~= "string" then
    return nil, errors.new("invalid", ("client order id must be a string, got %s"):format(type(id)), { venue = "local" })
  end
  if #id < 1 or #id > 36 then
    return nil, errors.new("invalid", ("client order id %q has %d characters; the venue allows 1 to 36"):format(id, #id),
      { venue = "local" })
  end
  local bad = id:find("[^%.A-Z:/a-z0-9_%-]")
  if bad then
    return nil, errors.new("invalid", ("client order id %q has %q at position %d; allowed are letters, digits and . : / _ -")
      :format(id, id:sub(bad, bad), bad), { venue = "local" })
  end
  return true
end

local function truthy(v) return v == true or v == "true" end

--- The venue's parameters from an order table (domain or venue names).
-- o.account and o.cycle (or o.decision) + o.leg derive the client id when
-- none is given; without them an id is made from the time and a random
-- number (a REPL order).
function M.params(order, o)
  local p = {}
  for k, v in pairs(order) do
    if not LOCAL[k] then
      local name = ALIASES[k] or k
      if UPPER[name] and type(v) == "string" then v = v:upper() end
      p[name] = v
    end
  end
  p.type = p.type or (p.price and "LIMIT" or "MARKET")
  if (p.type == "LIMIT" or p.type == "STOP" or p.type == "TAKE_PROFIT") and not p.timeInForce then p.timeInForce = "GTC" end
  if not p.newClientOrderId then
    local account = order.account or (o and o.account) or "default"
    local cycle = order.cycle or order.decision
    if not cycle then
      local runtime = require "vibex.core.runtime"
      cycle = ("%d-%d"):format(runtime.wall_ms(), math.random(1e9))
    end
    p.newClientOrderId = M.client_order_id(account, cycle, order.leg)
  end
  return p
end

-- The combinations a venue refuses, caught here with the reason.
local function check_combination(p)
  local close = truthy(p.closePosition)
  if close then
    if p.type ~= "STOP_MARKET" and p.type ~= "TAKE_PROFIT_MARKET" then
      return nil, errors.new("invalid", ("closePosition works only with STOP_MARKET or TAKE_PROFIT_MARKET, not %s")
        :format(tostring(p.type)), { venue = "local" })
    end
    if p.quantity ~= nil then
      return nil, errors.new("invalid", "a closePosition order closes the whole position: it takes no quantity (drop it, or send reduceOnly with a quantity instead)",
        { venue = "local" })
    end
    if p.reduceOnly ~= nil then
      return nil, errors.new("invalid", "closePosition cannot be combined with reduceOnly (a close-position order is reduce-only already)",
        { venue = "local" })
    end
  end
  if p.side ~= "BUY" and p.side ~= "SELL" then
    return nil, errors.new("invalid", ("side must be buy or sell, got %s"):format(tostring(p.side)), { venue = "local" })
  end
  if p.type == "MARKET" and p.timeInForce ~= nil then
    return nil, errors.new("invalid", "a MARKET order takes no timeInForce", { venue = "local" })
  end
  return true
end

--- Parameters, checks, rounding and filters: the exact request, or nil, err.
-- o: account (for client ids), quote = {mark, bid, ask} (numbers or
-- decimal strings) for the notional and price-band checks of orders
-- without a price.
function M.prepare(rules, order, o)
  local p = M.params(order, o)
  local ok, err = M.check_client_id(p.newClientOrderId)
  if not ok then return nil, err end
  ok, err = check_combination(p)
  if not ok then return nil, err end
  local quote = (o and o.quote) or {}
  return rules:format(p, quote.mark or order.mark_price, quote)
end

--- A venue's prepare(): the symbol's rules from the venue, then prepare().
function M.prepare_on(venue, order, o)
  local rules, err = venue:symbol_rules(order.symbol)
  if not rules then return nil, err end
  return M.prepare(rules, order, { account = venue.account, quote = o and o.quote })
end

return M
