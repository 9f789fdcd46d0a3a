--- vibex.exchange.venue — a venue as the agent sees it: the trading
-- vocabulary of vibex.exchange.domain over a wire client (the Aster /
-- Binance adapter, or the simulated venue, which speaks the same wire).
--
--   local v = venue.new(exchange.aster{…})     -- or venue.new(exchange.sim{…})
--   v:balances(), v:positions(), v:open_orders("BTCUSDT")     -- domain tables
--   local p, err = v:prepare{symbol = "BTCUSDT", side = "buy", type = "market", quantity = "0.012",
--                            client_order_id = id}, {quote = {mark = …, bid = …, ask = …}}
--   local order, err = v:send(p)               -- exactly p; an unknown outcome is err.kind "unknown"
--   v:order("BTCUSDT", id)                     -- nil, err with err.kind "not_found" when the venue has none
--   v:trades("BTCUSDT", {venue_order_id = "1234", client_order_id = id})
--   local us = v:user_stream{on_event = fn(ev), on_resync = fn{open_orders, positions, balances}}
--
-- Results are domain tables; failures are nil, err (a vibex.exchange.errors
-- value). Nothing here raises for venue or network trouble.
local domain = require "vibex.exchange.domain"
local errors = require "vibex.exchange.errors"

local M = {}

local V = {}
V.__index = V
V.__tostring = function(v) return ("<venue %s%s>"):format(v.name, v.account and (" " .. v.account) or "") end

--- o: account (name, for logs).
function M.new(client, o)
  o = o or {}
  return setmetatable({ client = client, name = client.venue, live = client.venue ~= "sim", account = o.account }, V)
end

local function map(list, fn, ...)
  if type(list) ~= "table" then return list end
  local out = {}
  for i, x in ipairs(list) do out[i] = fn(x, ...) end
  return out
end

function V:now() return self.client:now() end
function V:rules(symbol) return self.client:symbol_rules(symbol) end

--- The venue's clock and rules: sync time, load exchange info. true | nil, err.
function V:connect()
  if self.client.sync_time then
    local ok, err = self.client:sync_time()
    if not ok and ok ~= 0 then return nil, err end
  end
  local info, err = self.client:exchange_info()
  if not info then return nil, err end
  return true
end

function V:balances()
  local list, err = self.client:balances()
  if not list then return nil, err end
  return map(list, domain.balance)
end

function V:positions(symbol)
  local list, err = self.client:positions(symbol)
  if not list then return nil, err end
  return map(list, domain.position)
end

function V:open_orders(symbol)
  local list, err = self.client:open_orders(symbol)
  if not list then return nil, err end
  return map(list, domain.order)
end

--- One order by client order id (or o.venue_order_id). o.no_breaker: the
-- lookup that resolves an unknown outcome (see vibex.exchange.aster).
function V:order(symbol, client_order_id, o)
  o = o or {}
  local got, err = self.client:get_order(symbol, { client_id = client_order_id, order_id = o.venue_order_id,
                                                   no_breaker = o.no_breaker })
  if got then return domain.order(got) end
  if err and err.code == -2013 then err.kind = "not_found" end
  return nil, err
end

--- Fills of a symbol (o.venue_order_id: of one order; o.client_order_id is
-- written into each, since the venue's trade list does not carry it).
function V:trades(symbol, o)
  o = o or {}
  local list, err = self.client:user_trades(symbol, { order_id = o.venue_order_id, start_ms = o.start_ms,
                                                      no_breaker = o.no_breaker })
  if not list then return nil, err end
  return map(list, domain.trade, o.client_order_id)
end

--- The exact request for an order (domain or venue names): rounding, the
-- symbol's filters, the venue's parameter rules. params | nil, err.
function V:prepare(order, o) return self.client:prepare(order, o) end

--- Send prepared parameters as they are. The venue's order (domain) |
-- nil, err (err.kind "unknown": it may exist; look it up by its client id).
function V:send(params)
  local res, err, how = self.client:send_order(params)
  if not res then return nil, err end
  local o = domain.order(res)
  o.found_by_lookup = how == "lookup" or nil -- the answer was lost; the order was looked up
  return o
end

function V:cancel(symbol, o)
  local res, err = self.client:cancel { symbol = symbol, client_id = o.client_order_id, order_id = o.venue_order_id }
  if not res then return nil, err end
  return domain.order(res)
end

function V:cancel_all(symbol) return self.client:cancel_all(symbol) end

function V:set_leverage(symbol, leverage) return self.client:set_leverage(symbol, leverage) end

--- The account's events in the domain's shape. h.on_event(ev) for orders,
-- fills, account and margin-call updates; h.on_resync(state) after every
-- (re)connect with a REST snapshot (open_orders, positions, balances), so
-- what happened while the stream was down is not lost.
function V:user_stream(h)
  local function deliver(ev)
    local d = domain.event(ev)
    if d and h.on_event then h.on_event(d) end
  end
  local o = { on_order = deliver, on_account = deliver, on_margin_call = deliver }
  if h.on_resync then
    o.on_resync = function(st)
      h.on_resync { open_orders = map(st.open_orders, domain.order), positions = map(st.positions, domain.position),
                    balances = map(st.balances, domain.balance) }
    end
  end
  for k, v in pairs(h) do
    if k ~= "on_event" and k ~= "on_resync" and o[k] == nil then o[k] = v end
  end
  local ok, us = pcall(self.client.user_stream, self.client, o)
  if not ok then return nil, errors.new("invalid", tostring(us):gsub("^.-:%d+: ", ""), { venue = self.name }) end
  return us
end

M.Venue = V
return M
