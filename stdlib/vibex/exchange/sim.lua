--- vibex.exchange.sim — the simulated venue behind the exchange interface.
--
--   local paper = exchange.sim{balance = 10000}            -- BTCUSDT, ETHUSDT, XRPUSDT by default
--   paper:tick("BTCUSDT", 60000)                            -- a traded price, or
--   paper:candle("BTCUSDT", {open_time=…, open=…, high=…, low=…, close=…}, "1m")
--   paper:place{symbol = "BTCUSDT", side = "BUY", type = "MARKET", quantity = 0.01}
--   paper:positions(), paper:balances(), paper:open_orders("BTCUSDT")
--   local us = paper:user_stream{on_order = fn, on_account = fn}   -- same events as live
--
-- Orders go through the same rounding and filter checks as the live
-- adapter (vibex.exchange.filters, the same error kinds), then into the C
-- engine (runtime/sim.c: integer 1e-8 money, matching, triggers, margin,
-- funding, liquidation). Results and events have the live venue's shapes:
-- orders as /order answers, user events as ORDER_TRADE_UPDATE and
-- ACCOUNT_UPDATE. The engine's clock is the market data's: an order placed
-- between prices executes at the next one.
local recent = require "vibex.recent"
local ffi = require "ffi"
local time = require "vibex.time"
local dec = require "vibex.decimal"
local errors = require "vibex.exchange.errors"
local verrors = require "vibex.errors"
local filters = require "vibex.exchange.filters"
local orders = require "vibex.exchange.orders"

require "vibex.cdef" -- the declarations (one registry, checked against the headers at build time)

local C = ffi.C
local M = {}

local TYPES = { MARKET = 0, LIMIT = 1, STOP_MARKET = 2, TAKE_PROFIT_MARKET = 3, STOP = 4, TAKE_PROFIT = 5,
                TRAILING_STOP_MARKET = 6 }
local TYPE_NAMES = {}
for k, v in pairs(TYPES) do TYPE_NAMES[v] = k end
local TIFS = { GTC = 0, IOC = 1, FOK = 2, GTX = 3 }
local SIDES = { BOTH = 0, LONG = 1, SHORT = 2 }
local SIDE_NAMES = { [0] = "BOTH", "LONG", "SHORT" }
local STATUS = { [0] = "NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED", "REJECTED" }
local EV_ORDER, EV_FILL, EV_ACCOUNT, EV_FUNDING, EV_LIQUIDATION = 1, 2, 3, 4, 5
local MESSAGES = {
  [-2019] = "Margin is insufficient.", [-2022] = "ReduceOnly Order is rejected.", [-2011] = "Unknown order sent.",
  [-4014] = "Price not increased by tick size.", [-4003] = "Quantity less than or equal to zero.",
  [-4164] = "Order's notional must be no smaller than the minimum.", [-1121] = "Invalid symbol.",
  [-5022] = "Due to the order could not be executed as maker, the Post Only order will be rejected.",
  [-1102] = "A mandatory parameter was not sent, was empty/null, or malformed.", [-4028] = "Leverage is not valid.",
  [-4061] = "Order's position side does not match user's setting.", [-1106] = "Parameter 'reduceOnly' sent when not required.",
  [-4068] = "The position side cannot be changed if there exists position or open orders.",
  [-4048] = "Margin type cannot be changed if there exists position or open orders.",
}

--- Default symbols, like the fake venue's (and Aster's) rules.
M.DEFAULT_SYMBOLS = {
  BTCUSDT = { tick = "0.1", step = "0.001", min_qty = "0.001", max_qty = "1000", min_notional = "5" },
  ETHUSDT = { tick = "0.01", step = "0.001", min_qty = "0.001", max_qty = "10000", min_notional = "5" },
  XRPUSDT = { tick = "0.0001", step = "0.1", min_qty = "0.1", max_qty = "1000000", min_notional = "5" },
}

-- ---- units: decimal strings/numbers <-> int64 of 1e-8 ------------------------------

local SCALE = 8
local P10 = {}
for i = 0, 18 do P10[i] = ffi.new("int64_t", 10) ^ i end

local function units(v, what)
  local d, err = dec.parse(v, what)
  if not d then error(err, 3) end
  if d.scale > SCALE then error(("%s %s has more than 8 decimals"):format(what, tostring(v)), 3) end
  return d.m * P10[SCALE - d.scale]
end
M.units = units

local outbuf = ffi.new("char[48]")
local function text(u) return ffi.string(outbuf, C.vx_format_scaled(u, SCALE, outbuf)) end
M.text = text

local nsz = ffi.new("size_t[1]")

local function ppm(v) return tonumber(units(v, "rate") / 100) end -- 1e-8 -> 1e-6

-- ---- the venue ------------------------------------------------------------------------------

local Sim = {}
Sim.__index = Sim
Sim.__tostring = function(s) return ("<exchange sim %s: wallet %s>"):format(s.account, text(C.vx_sim_wallet(s.engine))) end
function Sim:order_params(order) return orders.params(order, { account = self.account }) end

--- Round and check an order exactly as the live adapter does (vibex.exchange.orders).
function Sim:prepare(order, o) return orders.prepare_on(self, order, o) end

--- o: balance (10000), symbols ({NAME = {tick, step, min_qty, max_qty,
-- min_notional, maker_fee ("0.0002"), taker_fee ("0.0004"), maint_margin
-- ("0.004"), liq_fee ("0.015"), max_leverage (125), slippage_bps (2),
-- impact_bps (0: extra market slippage of impact_bps × qty / candle volume),
-- latency_ms (0: orders take part from the next price), queue_ms (0: a
-- resting limit fills as soon as the price trades through it)}}),
-- account (for client order ids).
function M.new(o)
  o = o or {}
  local engine = C.vx_sim_new(units(o.balance or 10000, "balance"))
  if engine == nil then error("sim: out of memory") end
  local s = setmetatable({ venue = "sim", account = o.account or "paper", engine = ffi.gc(engine, C.vx_sim_free),
                           index = {}, names = {}, specs = {}, rules = {}, handlers = {}, orders = {}, now_ms = 0,
                           by_client = {}, open = {}, requests = {}, qty_units = {}, finished = {}, history = o.history or 1000, trades = {},
                           tick_units = {} }, Sim)
  local names = {}
  for name in pairs(o.symbols or M.DEFAULT_SYMBOLS) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do s:_add_symbol(name, (o.symbols or M.DEFAULT_SYMBOLS)[name]) end
  return s
end

function Sim:_add_symbol(name, spec)
  local cfg = ffi.new("vx_sim_symbol_cfg")
  ffi.copy(cfg.name, name, math.min(#name, 23))
  cfg.tick, cfg.step = units(spec.tick, "tick"), units(spec.step, "step")
  cfg.min_qty, cfg.max_qty = units(spec.min_qty or spec.step, "min_qty"), units(spec.max_qty or "1000000", "max_qty")
  cfg.min_notional = units(spec.min_notional or "5", "min_notional")
  cfg.maker_fee_ppm, cfg.taker_fee_ppm = ppm(spec.maker_fee or "0.0002"), ppm(spec.taker_fee or "0.0004")
  cfg.maint_margin_ppm, cfg.liq_fee_ppm = ppm(spec.maint_margin or "0.004"), ppm(spec.liq_fee or "0.015")
  cfg.max_leverage, cfg.slippage_bps = spec.max_leverage or 125, spec.slippage_bps or 2
  cfg.latency_ms, cfg.queue_ms = spec.latency_ms or 0, spec.queue_ms or 0
  cfg.impact_bps = spec.impact_bps or 0
  local i = C.vx_sim_add_symbol(self.engine, cfg)
  if i < 0 then error("sim: cannot add symbol " .. name, 3) end
  self.index[name], self.names[i] = i, name
  self.tick_units[name] = cfg.tick
  self.specs[name] = spec
  self.rules[name] = filters.from_symbol(self:_symbol_info(name))
end

function Sim:_symbol_info(name)
  local sp = self.specs[name]
  return { symbol = name, status = "TRADING", quoteAsset = "USDT", marginAsset = "USDT", filters = {
    { filterType = "PRICE_FILTER", minPrice = sp.tick, maxPrice = "10000000", tickSize = sp.tick },
    { filterType = "LOT_SIZE", minQty = sp.min_qty or sp.step, maxQty = sp.max_qty or "1000000", stepSize = sp.step },
    { filterType = "MARKET_LOT_SIZE", minQty = sp.min_qty or sp.step, maxQty = sp.max_qty or "1000000", stepSize = sp.step },
    { filterType = "MIN_NOTIONAL", notional = sp.min_notional or "5" },
  } }
end

-- ---- interface: market data ------------------------------------------------------------------

function Sim:ping() return {} end
function Sim:server_time() return self.now_ms end
function Sim:now() return self.now_ms end
function Sim:sync_time() return 0 end

function Sim:exchange_info()
  local out = { timezone = "UTC", serverTime = self.now_ms, symbols = {} }
  for i = 0, #self.names do
    if self.names[i] then out.symbols[#out.symbols + 1] = self:_symbol_info(self.names[i]) end
  end
  return out
end

function Sim:symbol_rules(symbol)
  local r = self.rules[symbol]
  if not r then return nil, errors.from_code(-1121, MESSAGES[-1121], { venue = "sim", symbol = symbol }) end
  return r
end

function Sim:_sym(symbol)
  local i = self.index[symbol]
  if not i then return nil, errors.from_code(-1121, MESSAGES[-1121], { venue = "sim", symbol = symbol }) end
  return i
end

function Sim:ticker(symbol)
  local i, err = self:_sym(symbol)
  if not i then return nil, err end
  return { symbol = symbol, price = text(C.vx_sim_position_of(self.engine, i).last_price), time = self.now_ms }
end
Sim.mark_price = function(self, symbol)
  local t, err = self:ticker(symbol)
  if not t then return nil, err end
  return { symbol = symbol, markPrice = t.price, indexPrice = t.price, time = self.now_ms }
end
Sim.premium_index = Sim.mark_price

--- A traded price (number or decimal string) at time_ms (default: now).
function Sim:tick(symbol, price, time_ms)
  local i = assert(self.index[symbol], "sim: unknown symbol " .. tostring(symbol))
  self.now_ms = math.max(self.now_ms, time_ms or self.now_ms)
  C.vx_sim_tick(self.engine, i, units(price, "price"), self.now_ms)
  self:_drain()
end

--- The mark price (premium index): positions are valued and liquidated
-- at it, and MARK_PRICE conditional orders trigger on it.
function Sim:mark(symbol, price, time_ms)
  local i = assert(self.index[symbol], "sim: unknown symbol " .. tostring(symbol))
  self.now_ms = math.max(self.now_ms, time_ms or self.now_ms)
  C.vx_sim_mark(self.engine, i, units(price, "mark"), self.now_ms)
  self:_drain()
end

--- A candle {open_time, open, high, low, close} of `interval` (ms or "1m"…).
function Sim:candle(symbol, k, interval)
  local i = assert(self.index[symbol], "sim: unknown symbol " .. tostring(symbol))
  local iv = type(interval) == "number" and interval or time.INTERVAL_MS[interval or "1m"]
  if k.volume then
    C.vx_sim_candle_v(self.engine, i, k.open_time, units(k.open, "open"), units(k.high, "high"), units(k.low, "low"),
      units(k.close, "close"), units(k.volume, "volume"), iv)
  else
    C.vx_sim_candle(self.engine, i, k.open_time, units(k.open, "open"), units(k.high, "high"), units(k.low, "low"),
      units(k.close, "close"), iv)
  end
  self.now_ms = math.max(self.now_ms, k.open_time + iv - 1)
  self:_drain()
end

--- The replay fast path: a candle whose prices are already in engine units
-- (int64 of 1e-8, see sim.units) for symbol index i. Events are drained
-- only when there are any.
function Sim:candle_units(i, open_time, o, h, l, c, interval_ms)
  C.vx_sim_candle(self.engine, i, open_time, o, h, l, c, interval_ms)
  local t = open_time + interval_ms - 1
  if t > self.now_ms then self.now_ms = t end
  C.vx_sim_events(self.engine, nsz)
  if nsz[0] ~= 0 then self:_drain() end
end

--- The same with the candle's volume (units): market orders pay the
-- impact slippage against it.
function Sim:candle_units_v(i, open_time, o, h, l, c, v, interval_ms)
  C.vx_sim_candle_v(self.engine, i, open_time, o, h, l, c, v, interval_ms)
  local t = open_time + interval_ms - 1
  if t > self.now_ms then self.now_ms = t end
  C.vx_sim_events(self.engine, nsz)
  if nsz[0] ~= 0 then self:_drain() end
end

--- The mark price in units (int64 of 1e-8) for symbol index i.
function Sim:mark_units(i, mark, time_ms)
  if time_ms > self.now_ms then self.now_ms = time_ms end
  C.vx_sim_mark(self.engine, i, mark, self.now_ms)
  C.vx_sim_events(self.engine, nsz)
  if nsz[0] ~= 0 then self:_drain() end
end

--- Replay stored candles through this venue (vibex.exchange.sim_replay):
--- data = {SYMBOL = {rows}}; o.interval, o.speed, o.on_candle, o.funding.
--- Returns the number of candles replayed.
function Sim:replay(data, o) return require("vibex.exchange.sim_replay").run(self, data, o) end

--- Paper trading next to a real market: feed this venue from a live
-- market stream (vibex.exchange.streams): each kline's close and each
-- book ticker's mid becomes a traded price here, each mark price update
-- the mark. The stream's own handlers still run.
function Sim:follow(md)
  md:chain("on_mark_price", function(m)
    if self.index[m.s] then self:mark(m.s, m.p, tonumber(m.E)) end
  end)
  md:chain("on_kline", function(k)
    if self.index[k.symbol] then self:tick(k.symbol, k.close, k.event_time or k.close_time) end
  end)
  md:chain("on_book_ticker", function(b)
    if self.index[b.s] then
      local okb, bid = pcall(units, b.b, "bid")
      local oka, ask = pcall(units, b.a, "ask")
      if okb and oka then -- a malformed quote is skipped, not raised into the stream
        local mid, tick = (bid + ask) / 2, self.tick_units[b.s]
        C.vx_sim_tick(self.engine, self.index[b.s], mid - mid % tick, math.max(self.now_ms, tonumber(b.E) or 0))
        self.now_ms = math.max(self.now_ms, tonumber(b.E) or 0)
        self:_drain()
      end
    end
  end)
  return self
end

--- Settle funding at `rate` (e.g. "0.0001") and the mark price.
function Sim:funding(symbol, rate, mark, time_ms)
  local i = assert(self.index[symbol], "sim: unknown symbol " .. tostring(symbol))
  self.now_ms = math.max(self.now_ms, time_ms or self.now_ms)
  C.vx_sim_funding(self.engine, i, units(rate, "rate"), units(mark, "mark"), self.now_ms)
  self:_drain()
end

-- ---- interface: account ------------------------------------------------------------------------

function Sim:balances()
  local w, eq, av = C.vx_sim_wallet(self.engine), C.vx_sim_equity(self.engine), C.vx_sim_available(self.engine)
  return { { asset = "USDT", balance = text(w), crossWalletBalance = text(w), crossUnPnl = text(eq - w),
             availableBalance = text(av), maxWithdrawAmount = text(av) } }
end

function Sim:account_info()
  local b = self:balances()[1]
  return { totalWalletBalance = b.balance, totalUnrealizedProfit = b.crossUnPnl, availableBalance = b.availableBalance,
           assets = self:balances(), positions = self:positions() }
end

function Sim:positions(symbol)
  local out = {}
  local sides = self.hedge and { 1, 2 } or { 0 }
  for i = 0, #self.names do
    local name = self.names[i]
    if name and (not symbol or symbol == name) then
      for _, ps in ipairs(sides) do
        local p = C.vx_sim_position_side(self.engine, i, ps)
        local upnl = C.vx_sim_unrealized(self.engine, i, ps)
        out[#out + 1] = { symbol = name, positionAmt = text(p.qty), entryPrice = text(p.entry_price),
                          markPrice = text(p.last_price), unRealizedProfit = text(upnl), leverage = tostring(p.leverage),
                          marginType = p.isolated == 1 and "isolated" or "cross", isolatedMargin = text(p.isolated_margin),
                          positionSide = SIDE_NAMES[ps] }
      end
    end
  end
  return out
end

function Sim:set_leverage(symbol, leverage)
  local i, err = self:_sym(symbol)
  if not i then return nil, err end
  local rc = C.vx_sim_set_leverage(self.engine, i, leverage)
  if rc ~= 0 then return nil, errors.from_code(rc, MESSAGES[rc], { venue = "sim", symbol = symbol }) end
  return { symbol = symbol, leverage = leverage }
end

function Sim:set_margin_type(symbol, mt)
  local i, err = self:_sym(symbol)
  if not i then return nil, err end
  local iso = mt == "ISOLATED"
  if not iso and mt ~= "CROSSED" and mt ~= "CROSS" then
    return nil, errors.from_code(-1102, "marginType must be ISOLATED or CROSSED.", { venue = "sim" })
  end
  local rc = C.vx_sim_set_isolated(self.engine, i, iso and 1 or 0)
  if rc ~= 0 then return nil, errors.from_code(rc, MESSAGES[rc], { venue = "sim", symbol = symbol }) end
  return { code = 200, msg = "success" }
end

function Sim:set_position_mode(hedge)
  local rc = C.vx_sim_set_hedge(self.engine, hedge and 1 or 0)
  if rc ~= 0 then return nil, errors.from_code(rc, MESSAGES[rc], { venue = "sim" }) end
  self.hedge = hedge and true or false
  return { code = 200, msg = "success" }
end
function Sim:position_mode() return { dualSidePosition = self.hedge or false } end

-- ---- interface: orders ------------------------------------------------------------------------

local req = ffi.new("vx_sim_order_req")

function Sim:place(order, o)
  local p, err = self:prepare(order, o)
  if not p then return nil, err end
  return self:send_order(p)
end

--- Send parameters made by prepare(), as they are (the live adapter's
-- send_order): the venue's order, or nil, err.
function Sim:send_order(p)
  local i, serr = self:_sym(p.symbol)
  if not i then return nil, serr end
  local t = TYPES[p.type]
  if not t then return nil, errors.from_code(-1102, ("Invalid orderType %s."):format(tostring(p.type)), { venue = "sim" }) end
  ffi.fill(req, ffi.sizeof(req))
  req.symbol, req.side, req.type = i, p.side == "BUY" and 1 or -1, t
  req.tif = TIFS[p.timeInForce or "GTC"] or 0
  req.price = p.price and units(p.price, "price") or 0
  req.qty = p.quantity and units(p.quantity, "quantity") or 0
  req.stop_price = p.stopPrice and units(p.stopPrice, "stopPrice") or 0
  req.activation_price = p.activationPrice and units(p.activationPrice, "activationPrice") or 0
  req.callback_ppm = p.callbackRate and math.floor(tonumber(p.callbackRate) * 10000 + 0.5) or 0
  req.reduce_only = (p.reduceOnly == true or p.reduceOnly == "true") and 1 or 0
  req.close_position = (p.closePosition == true or p.closePosition == "true") and 1 or 0
  req.position_side = SIDES[p.positionSide or (self.hedge and "" or "BOTH")] or -1
  req.working_mark = p.workingType == "MARK_PRICE" and 1 or 0
  ffi.copy(req.client_id, p.newClientOrderId, math.min(#p.newClientOrderId, 39))
  local prev = self.by_client[p.newClientOrderId]
  if prev and self.open[prev] then
    return nil, errors.from_code(-4015, "Client order id is not valid.", { venue = "sim" }) -- a duplicate id
  end
  local id = tonumber(C.vx_sim_place(self.engine, req, self.now_ms))
  if id > 0 then
    local keep = {}
    for k, v in pairs(p) do keep[k] = v end
    self.requests[id] = keep
  end
  self:_drain()
  if id < 0 then return nil, errors.from_code(id, MESSAGES[id] or "rejected", { venue = "sim", symbol = p.symbol }) end
  return self.orders[id]
end

function Sim:place_batch(orders)
  local out = {}
  for i, o in ipairs(orders) do
    local r, err = self:place(o)
    out[i] = r or err
  end
  return out
end

--- An order by id or client id (a client id reused after a cancel or a
-- modify names the newest order that carried it).
function Sim:_find(symbol, o)
  local id = o.order_id and tonumber(o.order_id) or (o.client_id and self.by_client[o.client_id])
  local v = id and self.orders[id]
  if v and v.symbol == symbol then return id, v end
end

function Sim:get_order(symbol, o)
  local _, v = self:_find(symbol, o)
  if not v then return nil, errors.from_code(-2013, "Order does not exist.", { venue = "sim" }) end
  return v
end

function Sim:cancel(o)
  local id = self:_find(o.symbol, o)
  if not id then return nil, errors.from_code(-2011, MESSAGES[-2011], { venue = "sim" }) end
  local rc = C.vx_sim_cancel(self.engine, id, self.now_ms)
  self:_drain()
  if rc ~= 0 then return nil, errors.from_code(rc, MESSAGES[rc], { venue = "sim" }) end
  return self.orders[id]
end

function Sim:cancel_all(symbol)
  local ids = {}
  for id in pairs(self.open) do
    if self.orders[id].symbol == symbol then ids[#ids + 1] = id end
  end
  table.sort(ids)
  for _, id in ipairs(ids) do C.vx_sim_cancel(self.engine, id, self.now_ms) end
  self:_drain()
  return { code = 200, msg = "The operation of cancel all open order is done." }
end

--- Modify a resting LIMIT: cancel and place again with the same client id.
function Sim:modify(o)
  local id, v = self:_find(o.symbol, o)
  if not id or v.status ~= "NEW" or v.type ~= "LIMIT" then
    return nil, errors.from_code(-4000, "Invalid order status.", { venue = "sim" })
  end
  C.vx_sim_cancel(self.engine, id, self.now_ms)
  self:_drain()
  return self:place { symbol = v.symbol, side = v.side, type = "LIMIT", price = o.price, quantity = o.quantity or v.origQty,
                      timeInForce = v.timeInForce, newClientOrderId = v.clientOrderId }
end

function Sim:open_orders(symbol)
  local out = {}
  for id in pairs(self.open) do
    local v = self.orders[id]
    if not symbol or v.symbol == symbol then out[#out + 1] = v end
  end
  table.sort(out, function(a, b) return a.orderId < b.orderId end)
  return out
end

-- ---- state that survives -----------------------------------------------------------------------

--- Everything needed to carry on after a restart, as plain JSON-able data:
-- the wallet, positions (with leverage and last price), open orders (as
-- the requests that re-create them) and the clock. Money stays decimal strings.
function Sim:snapshot()
  local snap = { version = 1, account = self.account, wallet = text(C.vx_sim_wallet(self.engine)), now_ms = self.now_ms,
                 hedge = self.hedge or false, positions = {}, open_orders = {} }
  for i = 0, #self.names do
    local name = self.names[i]
    if name then
      for ps = 0, 2 do
        local p = C.vx_sim_position_side(self.engine, i, ps)
        if ps == 0 or p.qty ~= 0 then
          snap.positions[#snap.positions + 1] = { symbol = name, side = SIDE_NAMES[ps], qty = text(p.qty),
            entry_price = text(p.entry_price), leverage = p.leverage, last_price = text(p.last_price),
            isolated = p.isolated == 1, isolated_margin = text(p.isolated_margin) }
        end
      end
    end
  end
  for _, v in ipairs(self:open_orders()) do
    local meta = self.requests[v.orderId] or {}
    snap.open_orders[#snap.open_orders + 1] = meta
  end
  local max_id = 0
  for id in pairs(self.orders) do if id > max_id then max_id = id end end
  snap.next_order_id = max_id + 1
  snap.next_trade_id = tonumber(C.vx_sim_next_trade_id(self.engine))
  return snap
end

--- Move the id counters forward (never back): next order id, next trade id.
-- A restored paper account continues past every id it handed out (the
-- caller also passes the largest the record holds: fills recorded after the
-- last snapshot); a replay run starts at a range of its own.
function Sim:set_ids(next_order_id, next_trade_id)
  C.vx_sim_set_ids(self.engine, next_order_id or 0, next_trade_id or 0)
end

--- Bring a snapshot back into this (fresh) venue: nil, err on a bad snapshot.
function Sim:restore(snap)
  if type(snap) ~= "table" or snap.version ~= 1 then return nil, verrors.new("invalid", "sim.restore: not a version 1 snapshot", { source = "sim" }) end
  C.vx_sim_restore(self.engine, units(snap.wallet, "wallet"), snap.next_order_id or 1)
  C.vx_sim_set_ids(self.engine, 0, snap.next_trade_id or 0)
  C.vx_sim_restore_mode(self.engine, snap.hedge and 1 or 0)
  self.hedge = snap.hedge or false
  self.now_ms = snap.now_ms or 0
  for _, p in ipairs(snap.positions or {}) do
    local i = self.index[p.symbol]
    if not i then return nil, verrors.new("invalid", ("sim.restore: symbol %s is not configured"):format(tostring(p.symbol)), { source = "sim" }) end
    local rc = C.vx_sim_restore_position(self.engine, i, SIDES[p.side or "BOTH"] or 0, units(p.qty, "qty"),
      units(p.entry_price, "entry_price"), p.leverage, units(p.last_price, "last_price"), p.isolated and 1 or 0,
      units(p.isolated_margin or "0", "isolated_margin"))
    if rc ~= 0 then return nil, verrors.new("invalid", ("sim.restore: %s: %s"):format(p.symbol, MESSAGES[rc] or rc), { source = "sim" }) end
  end
  for _, o in ipairs(snap.open_orders or {}) do
    local _, err = self:place(o)
    if err then return nil, verrors.wrap(err, "invalid", ("sim.restore: open order %s: %s"):format(tostring(o.newClientOrderId), tostring(err)), { source = "sim" }) end
  end
  return true
end

-- ---- events -------------------------------------------------------------------------------------

--- Subscribe to the user-data events (the live shapes). Several may be open.
function Sim:user_stream(h)
  local us = { orders = recent.map(1000), handlers = h or {} }
  function us.close() us.closed = true; self.handlers_closed = true end
  function us.connected() return not us.closed end
  self.handlers[#self.handlers + 1] = us
  return us
end

function Sim:_emit(route, ev)
  if self.handlers_closed then -- closed streams leave the list between events, never during one
    local open = {}
    for _, us in ipairs(self.handlers) do if not us.closed then open[#open + 1] = us end end
    self.handlers, self.handlers_closed = open, false
  end
  for _, us in ipairs(self.handlers) do
    if not us.closed then
      if route == "on_order" then
        local o = ev.o
        us.orders[o.c] = { status = o.X, executed = o.z, avg_price = o.ap, order_id = o.i, symbol = o.s, E = ev.E,
                           side = o.S, type = o.o }
      end
      local fn = us.handlers[route]
      if fn then fn(ev) end
    end
  end
end

--- The last `history` fills stay queryable, as the venue's /userTrades.
function Sim:_keep_trade(t)
  local list = self.trades
  list[#list + 1] = t
  if #list > self.history * 2 then
    local keep = {}
    for k = #list - self.history + 1, #list do keep[#keep + 1] = list[k] end
    self.trades = keep
  end
end

--- Fills, oldest first: o.order_id narrows to one order.
function Sim:user_trades(symbol, o)
  o = o or {}
  local out = {}
  for _, t in ipairs(self.trades) do
    if (not symbol or t.symbol == symbol) and (not o.order_id or t.orderId == tonumber(o.order_id)) then
      out[#out + 1] = t
    end
  end
  return out
end

--- A finished order stays queryable (get_order) among the last
-- `history` (1000) finished ones; older ones are forgotten, so a long
-- paper run does not grow without bound.
function Sim:_retire(id)
  self.requests[id], self.qty_units[id] = nil, nil
  local fin = self.finished
  if fin[#fin] == id then return end
  fin[#fin + 1] = id
  if #fin > self.history * 2 then
    local keep = {}
    for k = #fin - self.history + 1, #fin do keep[#keep + 1] = fin[k] end
    for k = 1, #fin - self.history do
      local old = fin[k]
      local v = self.orders[old]
      if v and not self.open[old] then
        if self.by_client[v.clientOrderId] == old then self.by_client[v.clientOrderId] = nil end
        self.orders[old] = nil
      end
    end
    self.finished = keep
  end
end

--- Turn the engine's events into orders, fills and account updates.
function Sim:_drain()
  local evs = C.vx_sim_events(self.engine, nsz)
  local n = tonumber(nsz[0])
  if n == 0 then return end
  local batch = {}
  for k = 0, n - 1 do
    local b = self:_event(evs[k])
    if b then batch[#batch + 1] = b end
  end
  C.vx_sim_clear_events(self.engine) -- before the handlers run: they may place orders
  for _, b in ipairs(batch) do self:_emit(b[1], b[2]) end
end

function Sim:_event(e)
  local sym = self.names[e.symbol]
  local E = tonumber(e.time_ms)
  if e.kind == EV_ORDER and STATUS[e.status] == "REJECTED" then return nil end -- refused synchronously, as live
  if e.kind == EV_ORDER or e.kind == EV_FILL then
    local id = tonumber(e.order_id)
    local v = self.orders[id]
    if not v then
      v = { orderId = id, symbol = sym, clientOrderId = ffi.string(e.client_id), side = e.side == 1 and "BUY" or "SELL",
            type = TYPE_NAMES[e.type], origType = TYPE_NAMES[e.type], price = text(e.kind == EV_ORDER and e.price or 0),
            origQty = text(e.qty), executedQty = "0", avgPrice = "0", timeInForce = "GTC", reduceOnly = false,
            positionSide = SIDE_NAMES[e.position_side], status = "NEW", time = E }
      local req = self.requests[id] -- what was asked, as the venue reports it back
      if req then
        v.reduceOnly = req.reduceOnly == true or req.reduceOnly == "true"
        v.closePosition = req.closePosition == true or req.closePosition == "true"
        v.stopPrice = req.stopPrice or "0"
        v.workingType = req.workingType or "CONTRACT_PRICE"
        v.timeInForce = req.timeInForce or v.timeInForce
      end
      self.orders[id] = v
      self.by_client[v.clientOrderId] = id
    end
    if e.kind == EV_ORDER and e.qty ~= 0 then -- a close-position order learns its size when it fires
      self.qty_units[id] = e.qty
      v.origQty = text(e.qty)
    end
    local x = "NEW"
    if e.kind == EV_FILL then
      v.executedQty, v.avgPrice = text(e.filled), text(e.avg_price)
      x = "TRADE"
    else
      v.status = STATUS[e.status]
      v.type = TYPE_NAMES[e.type]
      x = ({ CANCELED = "CANCELED", EXPIRED = "EXPIRED", REJECTED = "REJECTED" })[v.status] or (v.status == "FILLED" and "TRADE" or "NEW")
      if v.status == "FILLED" then self.open[id] = nil self:_retire(id) return nil end -- the fill event carried it
    end
    if e.kind == EV_FILL then
      v.status = e.filled == self.qty_units[id] and "FILLED" or "PARTIALLY_FILLED"
      self:_keep_trade { symbol = sym, id = tonumber(e.trade_id), orderId = id, side = v.side, price = text(e.price),
                         qty = text(e.qty), realizedPnl = text(e.realized_pnl), commission = text(e.fee),
                         commissionAsset = "USDT", time = E, maker = e.maker == 1, positionSide = v.positionSide }
    end
    v.updateTime = E
    self.open[id] = (v.status == "NEW" or v.status == "PARTIALLY_FILLED") or nil
    if not self.open[id] then self:_retire(id) end
    return { "on_order", { e = "ORDER_TRADE_UPDATE", E = E, T = E, o = {
      s = sym, c = v.clientOrderId, S = v.side, o = v.type, f = v.timeInForce, q = v.origQty, p = v.price,
      ap = v.avgPrice, sp = v.stopPrice or "0", x = x, X = v.status, i = id, l = e.kind == EV_FILL and text(e.qty) or "0",
      z = v.executedQty, L = e.kind == EV_FILL and text(e.price) or "0", n = e.kind == EV_FILL and text(e.fee) or "0",
      N = "USDT", T = E, t = e.kind == EV_FILL and tonumber(e.trade_id) or 0, m = e.maker == 1, R = v.reduceOnly,
      ps = v.positionSide, rp = e.kind == EV_FILL and text(e.realized_pnl) or "0" } } }
  end
  if e.kind == EV_ACCOUNT or e.kind == EV_FUNDING or e.kind == EV_LIQUIDATION then
    local P = {}
    if sym then
      local iso = e.isolated_margin ~= 0
      P[1] = { s = sym, pa = text(e.position), ep = text(e.entry_price), up = "0", mt = iso and "isolated" or "cross",
               iw = text(e.isolated_margin), ps = SIDE_NAMES[e.position_side] }
    end
    local reason = ({ [EV_ACCOUNT] = "ORDER", [EV_FUNDING] = "FUNDING_FEE", [EV_LIQUIDATION] = "LIQUIDATION" })[e.kind]
    -- vx_seq (ours, not a venue field): the event's number, so of two updates in one millisecond the later is known
    self.account_seq = (self.account_seq or 0) + 1
    return { "on_account", { e = "ACCOUNT_UPDATE", E = E, T = E, vx_seq = self.account_seq, a = { m = reason,
      B = { { a = "USDT", wb = text(e.wallet), cw = text(e.wallet), bc = e.kind == EV_FUNDING and text(e.realized_pnl) or "0" } },
      P = P } } }
  end
end

return M
