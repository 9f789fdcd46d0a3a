--- vibex.exchange.filters — a symbol's trading rules from exchange info,
-- and orders rounded and checked against them before anything is sent.
--
--   local rules = filters.from_symbol(info.symbols[i])
--   local o, err = rules:format{side = "BUY", type = "LIMIT", price = 27123.456, quantity = 0.0123}
--   -- o.price = "27123.4", o.quantity = "0.012"; or nil, err naming the filter
--
-- Rounding (integer arithmetic on scaled decimals, vibex.decimal):
--   quantity     down to the step (never more than asked)
--   LIMIT price  BUY down, SELL up to the tick (never a worse price than asked)
--   stop price,  to the nearest tick
--   activation
-- Then every filter is checked: PRICE_FILTER, LOT_SIZE / MARKET_LOT_SIZE,
-- MIN_NOTIONAL (mark price for orders without a price) and PERCENT_PRICE
-- (a LIMIT price against the mark; a MARKET order's side of the book, the
-- price it would take, against the mark).
local dec = require "vibex.decimal"
local errors = require "vibex.exchange.errors"

local M = {}

local Rules = {}
Rules.__index = Rules

local MARKETISH = { MARKET = true, STOP_MARKET = true, TAKE_PROFIT_MARKET = true, TRAILING_STOP_MARKET = true }
local WITH_PRICE = { LIMIT = true, STOP = true, TAKE_PROFIT = true }
local WITH_STOP = { STOP = true, STOP_MARKET = true, TAKE_PROFIT = true, TAKE_PROFIT_MARKET = true }

local function nonzero(v) return v ~= nil and not dec.is_zero(v) end

--- Rules from one entry of exchangeInfo.symbols.
function M.from_symbol(s)
  local r = setmetatable({ symbol = s.symbol, status = s.status }, Rules)
  for _, f in ipairs(s.filters or {}) do
    local t = f.filterType
    if t == "PRICE_FILTER" then
      r.min_price, r.max_price, r.tick = f.minPrice, f.maxPrice, f.tickSize
    elseif t == "LOT_SIZE" then
      r.min_qty, r.max_qty, r.step = f.minQty, f.maxQty, f.stepSize
    elseif t == "MARKET_LOT_SIZE" then
      r.market_min_qty, r.market_max_qty, r.market_step = f.minQty, f.maxQty, f.stepSize
    elseif t == "MIN_NOTIONAL" then
      r.min_notional = f.notional or f.minNotional
    elseif t == "PERCENT_PRICE" then
      r.multiplier_up, r.multiplier_down = f.multiplierUp, f.multiplierDown
    elseif t == "MAX_NUM_ORDERS" then
      r.max_orders = f.limit
    elseif t == "MAX_NUM_ALGO_ORDERS" then
      r.max_algo_orders = f.limit
    end
  end
  return r
end

local function refuse(filter, msg, o)
  return nil, errors.new("filter", msg, { filter = filter, venue = "local", symbol = o and o.symbol })
end

--- Round a price onto the tick grid; mode "down", "up" or "nearest".
function Rules:price(p, mode)
  if not nonzero(self.tick) then return dec.normalize(p, "price") end
  return dec.round(p, self.tick, mode or "nearest", self.min_price, "price")
end

--- Round a quantity onto the step grid (down unless told otherwise).
function Rules:qty(q, market, mode)
  local step = market and nonzero(self.market_step) and self.market_step or self.step
  local base = market and self.market_min_qty or self.min_qty
  if not nonzero(step) then return dec.normalize(q, "quantity") end
  return dec.round(q, step, mode or "down", base, "quantity")
end

--- The quantity a notional buys at a price, onto the step grid, rounded
-- down exactly (never through a binary double): notional / price.
function Rules:qty_of_notional(notional, price, market)
  local step = market and nonzero(self.market_step) and self.market_step or self.step
  local base = market and self.market_min_qty or self.min_qty
  if not nonzero(step) then return dec.div_round(notional, price, "0.00000001", "down") end
  return dec.div_round(notional, price, step, "down", base)
end

function Rules:check_price(p, what)
  what = what or "price"
  if dec.cmp(p, "0") <= 0 then return refuse("PRICE_FILTER", ("%s %s must be positive"):format(what, p)) end
  if nonzero(self.min_price) and dec.cmp(p, self.min_price) < 0 then
    return refuse("PRICE_FILTER", ("%s %s is below minPrice %s of %s"):format(what, p, self.min_price, self.symbol))
  end
  if nonzero(self.max_price) and dec.cmp(p, self.max_price) > 0 then
    return refuse("PRICE_FILTER", ("%s %s is above maxPrice %s of %s"):format(what, p, self.max_price, self.symbol))
  end
  return true
end

function Rules:check_qty(q, market, asked)
  local lo = market and self.market_min_qty or self.min_qty
  local hi = market and self.market_max_qty or self.max_qty
  local name = market and self.market_max_qty and "MARKET_LOT_SIZE" or "LOT_SIZE"
  if dec.cmp(q, "0") <= 0 then
    return refuse(name, ("quantity %s rounds to %s at stepSize %s of %s"):format(tostring(asked or q), q, self.step or "?", self.symbol))
  end
  if lo and dec.cmp(q, lo) < 0 then
    return refuse(name, ("quantity %s is below minQty %s of %s"):format(q, lo, self.symbol))
  end
  if nonzero(hi) and dec.cmp(q, hi) > 0 then
    return refuse(name, ("quantity %s is above maxQty %s of %s"):format(q, hi, self.symbol))
  end
  return true
end

--- Round and check an order. Returns a copy with price, stopPrice,
-- activationPrice and quantity as exact decimal strings, or nil and a
-- "filter" error that names the filter. `mark` is the mark price (for
-- MIN_NOTIONAL of orders without a price and for PERCENT_PRICE); `book`
-- ({bid, ask}, optional) is what a MARKET order would take.
function Rules:format(order, mark, book)
  local o = {}
  for k, v in pairs(order) do o[k] = v end
  o.symbol = o.symbol or self.symbol
  if self.status and self.status ~= "TRADING" then
    return refuse("STATUS", ("%s is not trading (status %s)"):format(self.symbol, self.status), o)
  end
  local typ, side = o.type, o.side
  local market = MARKETISH[typ]
  local err
  if WITH_PRICE[typ] then
    if o.price == nil then return nil, errors.new("invalid", typ .. " order needs a price", { venue = "local" }) end
    local mode = typ == "LIMIT" and (side == "BUY" and "down" or "up") or "nearest"
    o.price, err = self:price(o.price, mode)
    if not o.price then return refuse("PRICE_FILTER", err, o) end
    local ok, e = self:check_price(o.price)
    if not ok then return nil, e end
  end
  if WITH_STOP[typ] then
    if o.stopPrice == nil then return nil, errors.new("invalid", typ .. " order needs a stopPrice", { venue = "local" }) end
    o.stopPrice, err = self:price(o.stopPrice, "nearest")
    if not o.stopPrice then return refuse("PRICE_FILTER", err, o) end
    local ok, e = self:check_price(o.stopPrice, "stopPrice")
    if not ok then return nil, e end
  end
  if o.activationPrice ~= nil then
    o.activationPrice, err = self:price(o.activationPrice, "nearest")
    if not o.activationPrice then return refuse("PRICE_FILTER", err, o) end
  end
  local close = o.closePosition == true or o.closePosition == "true"
  if not close then
    if o.quantity == nil then return nil, errors.new("invalid", "order needs a quantity (or closePosition = true)", { venue = "local" }) end
    local asked = o.quantity
    o.quantity, err = self:qty(asked, market)
    if not o.quantity then return refuse("LOT_SIZE", err, o) end
    local ok, e = self:check_qty(o.quantity, market, asked)
    if not ok then return nil, e end
  end
  local reduce = o.reduceOnly == true or o.reduceOnly == "true"
  local ref = o.price or o.stopPrice or mark
  if not close and not reduce and nonzero(self.min_notional) and ref then
    local s = dec.cmp_product(o.quantity, ref, self.min_notional)
    if s and s < 0 then
      return refuse("MIN_NOTIONAL", ("notional %s x %s is below the minimum %s of %s (or set reduceOnly)")
        :format(o.quantity, dec.normalize(ref), self.min_notional, self.symbol), o)
    end
  end
  if typ == "MARKET" and mark and book and self.multiplier_up then
    local take = side == "BUY" and book.ask or book.bid
    if take and tonumber(take) and tonumber(take) > 0 then
      if side == "BUY" and dec.cmp_products(take, "1", mark, self.multiplier_up) > 0 then
        return refuse("PERCENT_PRICE", ("a MARKET BUY would take the ask %s, above mark %s x multiplierUp %s")
          :format(dec.normalize(take), dec.normalize(mark), self.multiplier_up), o)
      end
      if side == "SELL" and dec.cmp_products(take, "1", mark, self.multiplier_down) < 0 then
        return refuse("PERCENT_PRICE", ("a MARKET SELL would take the bid %s, below mark %s x multiplierDown %s")
          :format(dec.normalize(take), dec.normalize(mark), self.multiplier_down), o)
      end
    end
  end
  if typ == "LIMIT" and mark and self.multiplier_up then
    if side == "BUY" and dec.cmp_products(o.price, "1", mark, self.multiplier_up) > 0 then
      return refuse("PERCENT_PRICE", ("BUY price %s is above mark %s x multiplierUp %s")
        :format(o.price, dec.normalize(mark), self.multiplier_up), o)
    end
    if side == "SELL" and dec.cmp_products(o.price, "1", mark, self.multiplier_down) < 0 then
      return refuse("PERCENT_PRICE", ("SELL price %s is below mark %s x multiplierDown %s")
        :format(o.price, dec.normalize(mark), self.multiplier_down), o)
    end
  end
  return o
end

return M
