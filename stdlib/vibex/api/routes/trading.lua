--- vibex.api.routes.trading — accounts (and pausing, resuming, flattening
-- them), positions, orders (with a manual order through the risk gate, and
-- cancelling one), fills.
local T = require "vibex.api.types"
local C = require "vibex.api.routes.common"
local log = require "vibex.log"

local obj, str, arr, dec, num, ref, enum = T.obj, T.str, T.arr, T.dec, T.num, T.ref, T.enum
local tlog = log.channel("trading")

local function account_row(app, name)
  local r = app.runners[name] or app.stopped[name]
  if not r then return nil end
  local acc = app.store:get("accounts." .. name) or {}
  local a = app.agent and app.agent.accounts[name]
  local s = a and a.snapshot
  local out = { name = name, status = r.status or "stopped", mode = acc.mode == "live" and "live" or "paper",
                venue = r.venue, strategy = a and a.strategy or acc.strategy, symbols = T.list(acc.symbols),
                paused = a and a.paused ~= nil or false, paused_by = a and a.paused and a.paused.by or nil,
                decisions = a and a.cycles or r.decisions, last_decision_at = T.iso(r.last_decision_at),
                config_version = r.last_config_version, reason = r.reason, fix = r.fix, run_id = r.run_id }
  if s then
    out.equity, out.wallet, out.available, out.unrealized_pnl = C.f8(s.equity), C.f8(s.wallet), C.f8(s.available), C.f8(s.unrealized)
    out.balances = { { asset = "USDT", wallet = C.f8(s.wallet), available = C.f8(s.available), unrealized_pnl = C.f8(s.unrealized) } }
  end
  if a and a.positions_live then
    local n = 0
    for _ in pairs(a.positions_live) do n = n + 1 end
    out.open_positions = n
  end
  return out
end

local function names(app)
  local list = {}
  for n in pairs(app.runners) do list[#list + 1] = n end
  for n in pairs(app.stopped) do list[#list + 1] = n end
  table.sort(list)
  return list
end

local function running(c)
  local a = c.app.agent and c.app.agent.accounts[c.params.name or c.body and c.body.account]
  if not a then
    return nil, 404, C.err("not_found", ("no running account %q"):format(tostring(c.params.name or c.body and c.body.account)),
      "GET /api/v1/accounts lists them")
  end
  return a
end

local function positions_of(app, name)
  local a = app.agent and app.agent.accounts[name]
  local out = {}
  if not (a and a.positions_live) then return out end
  local syms = {}
  for sym in pairs(a.positions_live) do syms[#syms + 1] = sym end
  table.sort(syms)
  for _, sym in ipairs(syms) do
    local p = a.positions_live[sym]
    local q = tonumber(p.quantity) or 0
    local qty, entry = math.abs(q), tonumber(p.entry_price)
    local mark = a.market and tonumber(a.market:mark(sym)) or (a.mview and a.mview:mark(sym))
    local upnl = tonumber(p.unrealized_pnl)
    if mark and entry then upnl = (mark - entry) * q end
    out[#out + 1] = { account = name, symbol = sym, side = q > 0 and "long" or "short", quantity = C.dec(tostring(p.quantity):gsub("^%-", "")),
                      entry_price = C.f8(entry), mark_price = C.f8(mark), unrealized_pnl = C.f8(upnl),
                      leverage = tonumber(p.leverage), liquidation_price = C.f8(tonumber(p.liquidation_price)),
                      notional = C.f8(mark and qty * mark or nil), exit_plan = a.exit_plans[sym] }
  end
  return out
end

-- A manual action's outcome: 200 with the orders, or 422 when the risk
-- gate (or the symbol's rules) refused everything.
local function manual_answer(rec, err)
  if not rec then return err.kind == "not_found" and 404 or 503, C.err(err.kind or "unavailable", err.message or tostring(err)) end
  local refusals, rules = {}, {}
  for i, r in ipairs(rec.validation.refusals) do
    refusals[i] = { rule = r.rule, symbol = r.symbol, message = r.message }
    rules[#rules + 1] = r.rule
  end
  local orders = {}
  for i, o in ipairs(rec.orders) do
    orders[i] = { kind = o.kind, symbol = o.symbol, side = o.side, quantity = o.quantity and tostring(o.quantity) or nil,
                  client_order_id = o.client_order_id, status = o.status, error = o.error }
  end
  if #orders == 0 and #refusals > 0 then
    return 422, { error = { kind = "refused", message = ("refused: %s"):format(refusals[1].message or refusals[1].rule),
                            rules = rules, fix = "see the account's risk limits (GET /api/v1/config)" } }
  end
  if rec.error then return 503, C.err("unavailable", rec.error) end
  return 200, { cycle_key = rec.cycle_key, orders = T.list(orders), refusals = T.list(refusals) }
end

local function pause_handler(paused)
  return function(c)
    local _, st, e = running(c)
    if st then return st, e end
    c.app.agent:set_paused(c.params.name, paused, c.who.name)
    c.app:write_state()
    return 200, account_row(c.app, c.params.name)
  end
end

local ManualResult = obj({ cycle_key = str(), orders = arr(obj({ kind = str(), symbol = str(), side = str(), quantity = str(),
  client_order_id = str(), status = str(), error = str() })), refusals = arr(obj({ rule = str(), symbol = str(), message = str() })) },
  { "cycle_key", "orders", "refusals" })

local ORDER_SELECT = [[o.order_id, a.name AS account, o.client_order_id, o.venue_order_id, o.symbol, o.side, o.type, o.status,
  o.quantity, o.price, o.stop_price, o.executed_quantity, o.average_price, o.reduce_only, o.close_position, o.reject_reason,
  o.origin, o.kind, d.cycle_key, o.created_at, o.updated_at]]
local ORDER_FROM = "orders o JOIN accounts a USING (account_id) LEFT JOIN decisions d ON d.decision_id = o.decision_id"
local FILL_SELECT = [[f.fill_id, a.name AS account, f.client_order_id, f.trade_id, f.symbol, f.side, f.price, f.quantity, f.fee,
  f.fee_asset, f.realized_pnl, f.is_maker, f.filled_at]]

return {
  { method = "GET", path = "/api/v1/accounts", id = "listAccounts", tag = "accounts", scope = "read",
    summary = "Accounts: status, equity, balances, config version",
    responses = { [200] = { schema = obj({ items = arr(ref "Account") }, { "items" }),
      example = { items = { { name = "trend", status = "running", mode = "paper", venue = "sim", equity = "10012.5", paused = false } } } } },
    handler = function(c)
      local items = {}
      for _, n in ipairs(names(c.app)) do items[#items + 1] = account_row(c.app, n) end
      return 200, { items = T.list(items) }
    end },
  { method = "GET", path = "/api/v1/accounts/{name}", id = "getAccount", tag = "accounts", scope = "read",
    summary = "One account", responses = { [200] = { schema = ref "Account" } },
    handler = function(c)
      local row = account_row(c.app, c.params.name)
      if not row then return 404, C.err("not_found", ("no account %q"):format(c.params.name)) end
      return 200, row
    end },
  { method = "POST", path = "/api/v1/accounts/{name}/pause", id = "pauseAccount", tag = "accounts", scope = "trade",
    summary = "Pause the account's decisions (positions, stops and targets stay)",
    responses = { [200] = { schema = ref "Account" } }, handler = pause_handler(true) },
  { method = "POST", path = "/api/v1/accounts/{name}/resume", id = "resumeAccount", tag = "accounts", scope = "trade",
    summary = "Resume the account's decisions", responses = { [200] = { schema = ref "Account" } }, handler = pause_handler(false) },
  { method = "POST", path = "/api/v1/accounts/{name}/flatten", id = "flattenAccount", tag = "accounts", scope = "trade",
    summary = "Close every position and cancel every open order of the account (through the risk gate)",
    responses = { [200] = { schema = ManualResult } },
    handler = function(c)
      local _, st, e = running(c)
      if st then return st, e end
      tlog:warn("flatten requested", { account = c.params.name, by = c.who.name })
      return manual_answer(c.app.agent:manual(c.params.name, function(view, acc)
        local intents = {}
        for _, p in ipairs(view.list) do intents[#intents + 1] = { action = "close", symbol = p.symbol } end
        -- a close cancels its position's stop and target once the exit is in;
        -- other symbols lose every open order (a market exit must not be canceled)
        for _, sym in ipairs(acc.symbols) do
          if not (view.positions[sym] and not view.positions[sym].pending) then intents[#intents + 1] = { action = "cancel", symbol = sym } end
        end
        return intents
      end, c.who.name))
    end },
  { method = "GET", path = "/api/v1/positions", id = "listPositions", tag = "positions", scope = "read",
    summary = "Open positions with their PnL at the current mark and their exit plans (as of the last cycle)",
    query = { C.ACCOUNT, C.SYMBOL },
    responses = { [200] = { schema = obj({ items = arr(ref "Position") }, { "items" }) } },
    handler = function(c)
      local items = {}
      for _, n in ipairs(names(c.app)) do
        if not c.query.account or c.query.account == n then
          for _, p in ipairs(positions_of(c.app, n)) do
            if not c.query.symbol or c.query.symbol == p.symbol then items[#items + 1] = p end
          end
        end
      end
      return 200, { items = T.list(items) }
    end },
  { method = "GET", path = "/api/v1/orders", id = "listOrders", tag = "orders", scope = "read",
    summary = "Orders, newest first",
    query = { C.ACCOUNT, C.SYMBOL, { name = "status", schema = str(), doc = "new, partially_filled, filled, canceled, expired, rejected, unknown, pending" },
              C.FROM, C.TO, C.CURSOR, C.LIMIT },
    responses = { [200] = { schema = T.page(ref "Order") } },
    handler = function(c)
      return C.answer(c, { select = ORDER_SELECT, from = ORDER_FROM, id = "o.order_id", account = "a.name", symbol = "o.symbol",
                           time = "o.created_at", filter = "o.deleted_at IS NULL", where = { { "o.status = $?", c.query.status } },
                           map = C.order })
    end },
  { method = "GET", path = "/api/v1/orders/{client_order_id}", id = "getOrder", tag = "orders", scope = "read",
    summary = "One order with its events and fills", responses = { [200] = { schema = ref "Order" } },
    handler = function(c)
      local pool = C.pool(c)
      local rows, err = pool:query(("SELECT %s FROM %s WHERE o.client_order_id = $1"):format(ORDER_SELECT, ORDER_FROM), c.params.client_order_id)
      if not rows then return 503, C.err("unavailable", tostring(err)) end
      if not rows[1] then return 404, C.err("not_found", ("no order %q"):format(c.params.client_order_id)) end
      local o = C.order(rows[1])
      local evs = pool:query([[SELECT e.status, e.executed_quantity, e.average_price, e.venue_time, e.created_at FROM order_events e
        WHERE e.order_id = $1 ORDER BY e.order_event_id]], rows[1].order_id) or {}
      local list = {}
      for i, e in ipairs(evs) do
        list[i] = { status = C.lower(e.status), executed_quantity = C.dec(e.executed_quantity), average_price = C.dec(e.average_price),
                    venue_time = T.iso(e.venue_time), created_at = T.iso(e.created_at) }
      end
      o.events = T.list(list)
      local fills = pool:query(("SELECT %s FROM fills f JOIN accounts a USING (account_id) WHERE f.order_id = $1 ORDER BY f.fill_id"):format(FILL_SELECT),
        rows[1].order_id) or {}
      local fl = {}
      for i, f in ipairs(fills) do fl[i] = C.fill(f) end
      o.fills = T.list(fl)
      return 200, o
    end },
  { method = "POST", path = "/api/v1/orders/{client_order_id}/cancel", id = "cancelOrder", tag = "orders", scope = "trade",
    summary = "Cancel an open order at the venue", responses = { [200] = { schema = ref "Order" } },
    handler = function(c)
      local pool = C.pool(c)
      local rows = pool:query(("SELECT %s FROM %s WHERE o.client_order_id = $1"):format(ORDER_SELECT, ORDER_FROM), c.params.client_order_id)
      local row = rows and rows[1]
      if not row then return 404, C.err("not_found", ("no order %q"):format(c.params.client_order_id)) end
      local a = c.app.agent.accounts[row.account]
      if not a then return 409, C.err("conflict", ("account %s is not running"):format(row.account)) end
      local done, err = a.venue:cancel(row.symbol, { client_order_id = row.client_order_id })
      if not done then
        return 409, C.err("conflict", ("the venue did not cancel it: %s"):format(tostring(err and err.message or err)),
          "it may be filled or canceled already: GET /api/v1/orders/" .. row.client_order_id)
      end
      a.rq:update(row.client_order_id, { status = done.status, executed_quantity = done.executed_quantity, venue_time_ms = done.updated_ms })
      a.rq:flush()
      tlog:warn("order canceled by hand", { account = row.account, client_order_id = row.client_order_id, by = c.who.name })
      local o = C.order(row)
      o.status = C.lower(done.status) or "canceled"
      return 200, o
    end },
  { method = "POST", path = "/api/v1/orders", id = "placeOrder", tag = "orders", scope = "trade",
    summary = "A manual order: the agent's order path and risk gate, recorded with who placed it",
    description = "action open (side, size_usd or quantity, leverage, stop_loss, take_profit), close, protect or cancel. "
      .. "Refused by the risk gate: 422 with the rules.",
    body = obj({ account = str(), action = enum { "open", "close", "protect", "cancel" }, symbol = str { pattern = T.SYMBOL },
                 side = enum { "long", "short" }, size_usd = num { exclusiveMinimum = 0 }, quantity = dec(),
                 leverage = num { minimum = 1, maximum = 125 }, stop_loss = num { exclusiveMinimum = 0 },
                 take_profit = num { exclusiveMinimum = 0 } }, { "account", "action", "symbol" }),
    body_example = { account = "trend", action = "open", symbol = "BTCUSDT", side = "long", size_usd = 200, leverage = 2 },
    responses = { [200] = { schema = ManualResult }, [422] = { description = "refused by the risk gate", schema = ref "Error",
      example = { error = { kind = "refused", message = "refused: notional 5000 above max_position_notional 1000", rules = { "max_position_notional" } } } } },
    handler = function(c)
      local _, st, e = running(c)
      if st then return st, e end
      local b = c.body
      if b.action == "open" and not b.side then return 400, C.err("invalid", "body.side: required to open (long or short)") end
      if b.action == "open" and not (b.size_usd or b.quantity) then return 400, C.err("invalid", "body: size_usd or quantity is required to open") end
      local it = { action = b.action, symbol = b.symbol, side = b.side, size_usd = b.size_usd,
                   quantity = b.quantity and tonumber(b.quantity) or nil, leverage = b.leverage, stop_loss = b.stop_loss,
                   take_profit = b.take_profit, confidence = 1 }
      return manual_answer(c.app.agent:manual(b.account, { it }, c.who.name))
    end },
  { method = "GET", path = "/api/v1/fills", id = "listFills", tag = "orders", scope = "read", summary = "Fills, newest first",
    query = C.LIST, responses = { [200] = { schema = T.page(ref "Fill") } },
    handler = function(c)
      return C.answer(c, { select = FILL_SELECT, from = "fills f JOIN accounts a USING (account_id)", id = "f.fill_id",
                           account = "a.name", symbol = "f.symbol", time = "f.filled_at", map = C.fill })
    end },
}
