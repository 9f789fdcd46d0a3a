--- vibex.agent.view — the account as the risk gate and the scripts see it:
-- balances, positions and prices now (from the venue, in the trading
-- vocabulary of vibex.exchange.venue), and the context input a context
-- script receives. Methods of the agent (mixed into vibex.agent's Agent).
local safe_ta = require "vibex.sandbox.ta"

local Agent = {}

local function num(x) return tonumber(x) or 0 end
-- a signed decimal string without its sign (a position's size)
local function unsigned_text(q) return type(q) == "string" and (q:gsub("^%-", "")) or q end

--- Balances, positions and prices now. prices: the reference price per
-- symbol (the mark where the market data has one, else the last close),
-- from the cycle's market view.
function Agent:view(a, acc)
  local v = a.venue
  local bals, berr = v:balances()
  if not bals then return nil, "balances: " .. tostring(berr) end
  local wallet, available, upnl = 0, 0, 0
  for _, b in ipairs(bals) do
    if b.asset == "USDT" then
      wallet, available, upnl = num(b.wallet), num(b.available), num(b.unrealized_pnl)
    end
  end
  local plist, perr = v:positions()
  if not plist then return nil, "positions: " .. tostring(perr) end
  local mv = a.mview
  local view = { now_ms = self:now(a), symbols = {}, prices = {}, books = {}, positions = {}, list = {}, wallet = wallet,
                 available = available, unrealized = 0 }
  for _, s in ipairs(acc.symbols) do
    view.symbols[s] = true
    view.prices[s] = mv:mark(s)
    view.books[s] = mv:book(s)
  end
  for _, p in ipairs(plist) do
    local q = num(p.quantity)
    if q ~= 0 and view.symbols[p.symbol] then
      local mark = num(p.mark_price) > 0 and num(p.mark_price) or view.prices[p.symbol] or num(p.entry_price)
      local pos = { symbol = p.symbol, side = p.side, qty = math.abs(q), quantity_text = unsigned_text(p.quantity),
                    entry_price = num(p.entry_price), mark_price = mark, unrealized_pnl = num(p.unrealized_pnl),
                    leverage = num(p.leverage), liquidation_price = tonumber(p.liquidation_price),
                    notional = math.abs(q) * mark, exit_plan = a.exit_plans[p.symbol] }
      view.positions[p.symbol] = pos
      view.list[#view.list + 1] = pos
      view.unrealized = view.unrealized + pos.unrealized_pnl
    end
  end
  -- entries sent but not filled yet count as exposure: the gate must not
  -- approve a second entry while the first is on its way
  -- per symbol: a venue weighs "all symbols" far heavier than one
  for _, sym in ipairs(acc.symbols) do
    local list, oerr = v:open_orders(sym)
    if not list then return nil, "open orders: " .. tostring(oerr) end
    view.open_orders = (view.open_orders or 0) + #list
    for _, o in ipairs(list) do
      local entry = (o.type == "market" or o.type == "limit") and not o.reduce_only and not o.close_position
      if entry and view.symbols[o.symbol] then
        local q = num(o.quantity) - num(o.executed_quantity)
        local px = num(o.price) > 0 and num(o.price) or view.prices[o.symbol] or 0
        local side = o.side == "buy" and "long" or "short"
        local p = view.positions[o.symbol]
        if not p then
          p = { symbol = o.symbol, side = side, qty = 0, notional = 0, pending = true }
          view.positions[o.symbol] = p
        end
        p.pending_notional = (p.pending_notional or 0) + q * px
        p.notional = p.notional + q * px
      end
    end
  end
  if upnl == 0 then upnl = view.unrealized end
  view.equity = wallet + upnl
  view.unrealized = upnl
  view.pyramiding = self:strategy(acc).pyramiding
  view.outage = self.writer and self.writer:outage() == "no_new_positions" or false
  if view.outage and self.writer.journal_error then
    view.outage_why = "the database is unreachable and its journal cannot be written (" .. tostring(self.writer.journal_error)
      .. "): nothing new opens until the record is safe"
  end
  return view
end

-- What context.lua gets: data and functions that read it, never the venue.
function Agent:context_input(a, acc, strat, view)
  local md = a.mview
  return {
    now_ms = view.now_ms, cycle = a.cycles + 1, account = {
      name = acc.name, equity = view.equity, wallet = view.wallet, available = view.available,
      unrealized_pnl = view.unrealized, positions = view.list,
    },
    symbols = acc.symbols, intervals = strat.intervals, params = strat.params or {},
    -- views, not the buffers: a script gets no pointer and cannot write
    candles = function(symbol, interval) return safe_ta.candles_view(md:candles(symbol, interval)) end,
    price = function(symbol) return md:mark(symbol) end,
    mark = function(symbol) return md:mark(symbol) end,
    funding = function(symbol) return md:funding(symbol) end,
    performance = a.perf:summary(),
  }
end

return Agent
