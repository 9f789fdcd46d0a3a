--- vibex.agent.risk — the risk gate: the last code between any strategy and
-- the exchange. Scripts never see it and cannot skip it: the executor
-- (vibex.agent.execute), the only code that sends orders, calls it on every
-- cycle's legs and sends only what `gate:check` approved.
--
--   local gate = risk.gate{account = "trend"}
--   local approved, refused = gate:check(orders, view, limits)
--   -- refused: {{order = o, rule = "max_leverage", message = "…"}}
--   gate:sent(order, now_ms)          -- after a placement, for the order rate
--
-- orders: the legs the executor made from a policy's intents, already
-- prepared (rounded, filter-checked), so the gate judges what would be sent:
--   {kind = "entry" | "exit" | "protect" | "cancel", symbol, side = "buy" | "sell",
--    qty (number), price (reference price), leverage, confidence,
--    reduce_only, close_position, stop (number), protect = "stop" | "take_profit"}
-- view: what the account looks like now:
--   {now_ms, symbols = {SYM = true}, prices = {SYM = n}, positions = {SYM = {side, qty, notional}},
--    equity, available, outage (the database is away and on_outage forbids entries),
--    pyramiding (the strategy allows adding to a position)}
-- limits: the account's risk section of the config (read at every check, so
-- a reloaded limit applies at the next cycle).
--
-- Rules, in the order they are tried (the first that fires is recorded):
--   entries   symbol, quantity, min_confidence, max_leverage, max_daily_loss,
--             database_outage, pyramiding, opposite_position, max_open_positions,
--             max_position_notional, max_total_notional, free_margin,
--             max_orders_per_minute
--   exits     symbol, reduce_only (an exit must be reduce-only or close-position)
--   protect   symbol, reduce_only, protective_side (a stop that would fire at once)
-- Exits and protective orders are never refused for the order rate or the
-- daily loss: a way out of a position is never blocked. They still count
-- towards the rate.
local log = require "vibex.log"

local M = {}

local tlog = log.channel("trading")

local Gate = {}
Gate.__index = Gate

function M.gate(o)
  o = o or {}
  return setmetatable({ account = o.account or "?", sent_at = {}, day = nil, day_start_equity = nil,
                        alerted_day = nil }, Gate)
end

local DAY_MS = 86400000

--- The UTC day of a time, and the day's starting equity (the first equity
-- seen that day).
function Gate:roll_day(now_ms, equity)
  local day = math.floor(now_ms / DAY_MS)
  if self.day ~= day then
    self.day, self.day_start_equity = day, equity
  end
end

function Gate:daily_loss(equity)
  if not self.day_start_equity or not equity then return 0 end
  return self.day_start_equity - equity
end

function Gate:orders_last_minute(now_ms)
  local keep, n = {}, 0
  for _, t in ipairs(self.sent_at) do
    if t > now_ms - 60000 then keep[#keep + 1] = t; n = n + 1 end
  end
  self.sent_at = keep
  return n
end

function Gate:sent(_, now_ms) self.sent_at[#self.sent_at + 1] = now_ms end

local function finite_pos(x) return type(x) == "number" and x == x and x > 0 and x < math.huge end

-- Each rule returns a message when it fires, nil when the order passes.
local function check_entry(self, o, view, limits, acc)
  if not view.symbols[o.symbol] then return "symbol", ("%s is not one of the account's symbols"):format(tostring(o.symbol)) end
  if not finite_pos(o.qty) or not finite_pos(o.price) then return "quantity", "quantity and price must be positive numbers" end
  local conf = o.confidence or 0
  if conf < limits.min_confidence then
    return "min_confidence", ("confidence %.2f is below %.2f"):format(conf, limits.min_confidence)
  end
  local lev = o.leverage or 1
  if not finite_pos(lev) or lev > limits.max_leverage then
    return "max_leverage", ("leverage %s is above %s"):format(tostring(lev), limits.max_leverage)
  end
  local lost = self:daily_loss(view.equity)
  if lost >= limits.max_daily_loss then
    if self.alerted_day ~= self.day then
      self.alerted_day = self.day
      tlog:error("ALERT: daily loss limit reached; new entries blocked until the next UTC day",
        { account = self.account, loss = ("%.2f"):format(lost), limit = limits.max_daily_loss, alert = true })
    end
    return "max_daily_loss", ("down %.2f today, limit %.2f: no new entries until the next UTC day"):format(lost, limits.max_daily_loss)
  end
  if view.outage then return "database_outage", view.outage_why or "the database is unreachable and on_outage = no_new_positions" end
  local notional = o.qty * o.price
  local pos = acc.positions[o.symbol]
  local side = o.side == "buy" and "long" or "short"
  if pos and pos.side == side and not view.pyramiding then
    return "pyramiding", ("already %s %s and the strategy does not allow adding to a position"):format(side, o.symbol)
  end
  if pos and pos.side ~= side then
    return "opposite_position", ("%s is %s: close it before opening %s"):format(o.symbol, pos.side, side)
  end
  if not pos and acc.count >= limits.max_open_positions then
    return "max_open_positions", ("%d positions open, limit %d"):format(acc.count, limits.max_open_positions)
  end
  local existing = pos and pos.notional or 0
  if existing + notional > limits.max_position_notional then
    return "max_position_notional", ("%s notional would be %.2f, limit %.2f"):format(o.symbol, existing + notional,
      limits.max_position_notional)
  end
  if acc.total + notional > limits.max_total_notional then
    return "max_total_notional", ("total notional would be %.2f, limit %.2f"):format(acc.total + notional, limits.max_total_notional)
  end
  local margin = notional / lev
  if view.available and margin > acc.available then
    return "free_margin", ("needs %.2f margin, %.2f free"):format(margin, acc.available)
  end
  if acc.rate + 1 > limits.max_orders_per_minute then
    return "max_orders_per_minute", ("%d orders in the last minute, limit %d"):format(acc.rate, limits.max_orders_per_minute)
  end
end

local function check_exit(_, o, view)
  if not view.symbols[o.symbol] then return "symbol", ("%s is not one of the account's symbols"):format(tostring(o.symbol)) end
  if not (o.reduce_only or o.close_position) then return "reduce_only", "an exit must be reduce-only or close-position" end
  if o.kind == "exit" and not o.close_position and not finite_pos(o.qty) then return "quantity", "quantity must be positive" end
  if o.kind == "protect" then
    local px = view.prices[o.symbol]
    local stop = o.stop or tonumber(o.stop_price)
    if not finite_pos(stop) then return "protective_side", "a protective order needs a stop price" end
    -- a sell stop protects a long: it must sit below the price; a sell take-profit above it
    local below = (o.side == "sell") == (o.protect == "stop")
    if px and ((below and stop >= px) or (not below and stop <= px)) then
      return "protective_side", ("%s %s at %s would fire at once (price %s)"):format(o.protect, o.side, stop, px)
    end
  end
end

--- Check concrete orders. Returns approved, refused. Approved entries
-- count against the limits of the ones after them.
function Gate:check(orders, view, limits)
  self:roll_day(view.now_ms, view.equity)
  local acc = { positions = {}, count = 0, total = 0, available = view.available or math.huge,
                rate = self:orders_last_minute(view.now_ms) }
  for sym, p in pairs(view.positions or {}) do
    acc.positions[sym] = { side = p.side, notional = p.notional }
    acc.count, acc.total = acc.count + 1, acc.total + p.notional
  end
  local approved, refused = {}, {}
  for _, o in ipairs(orders) do
    local rule, msg
    if o.kind == "entry" then
      rule, msg = check_entry(self, o, view, limits, acc)
    elseif o.kind == "exit" or o.kind == "protect" then
      rule, msg = check_exit(self, o, view)
    elseif o.kind ~= "cancel" then
      rule, msg = "kind", ("unknown order kind %q"):format(tostring(o.kind))
    end
    if rule then
      refused[#refused + 1] = { order = o, rule = rule, message = msg }
      tlog:warn("risk gate refused an order", { account = self.account, rule = rule, reason = msg, symbol = o.symbol,
                                                 kind = o.kind, side = o.side })
    else
      approved[#approved + 1] = o
      if o.kind ~= "cancel" then acc.rate = acc.rate + 1 end
      if o.kind == "entry" then
        local n = o.qty * o.price
        local p = acc.positions[o.symbol]
        if not p then
          p = { side = o.side == "buy" and "long" or "short", notional = 0 }
          acc.positions[o.symbol] = p
          acc.count = acc.count + 1
        end
        p.notional, acc.total = p.notional + n, acc.total + n
        acc.available = acc.available - n / (o.leverage or 1)
      end
    end
  end
  return approved, refused
end

return M
