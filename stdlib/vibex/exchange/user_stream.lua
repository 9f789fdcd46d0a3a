--- vibex.exchange.user_stream — the account's user-data WebSocket stream, kept alive.
--
--   local us = aster:user_stream{
--     on_order = fn(ev), on_account = fn(ev), on_margin_call = fn(ev),
--     on_other = fn(ev), on_resync = fn{open_orders, positions, balances},
--   }
--   us.orders[client_order_id] -> {status, executed, avg_price, order_id, symbol, E}
--     (the last few thousand orders: vibex.recent)
--   us:close()
--
-- Creates the listen key, keeps it alive (PUT every 30 min), replaces it on
-- listenKeyExpired or when the venue forgets it, and reconnects like the
-- market streams. Events are held for `reorder_ms` (100) and released in
-- event-time (E) order; an event that still arrives after a later one was
-- released is delivered with ev.late = true and never moves an order's state
-- backwards (ev.stale = true). Each fill is delivered once. After every
-- (re)connect, on_resync gets a REST snapshot so nothing missed is lost.
local json = require "vibex.json"
local task = require "vibex.task"
local ws = require "vibex.ws"
local util = require "vibex.exchange.stream_util"
local recent = require "vibex.recent"

local ulog = util.ulog
local now = task.now
local backoff_ms, call, excerpt = util.backoff_ms, util.call, util.excerpt
local reconnects_total = util.reconnects_total

local M = {}

local User = {}
User.__index = User

local USER_ROUTES = { ORDER_TRADE_UPDATE = "on_order", ACCOUNT_UPDATE = "on_account", MARGIN_CALL = "on_margin_call" }

local OPEN = { NEW = true, PARTIALLY_FILLED = true }

--- An order's latest state; the open ones are also listed (orders keeps
--- only the recent ones, and cannot be iterated).
function User:_set_order(id, st)
  self.orders[id] = st
  self.open_ids[id] = OPEN[st.status] and true or nil
end

--- Track the order's latest state; never move it backwards in event time.
function User:_apply_order(ev)
  local o = ev.o
  if type(o) ~= "table" then return end
  local id = o.c or tostring(o.i)
  local cur = self.orders[id]
  if cur and cur.E > ev.E then
    ev.stale = true
  else
    self:_set_order(id, { status = o.X, executed = o.z, avg_price = o.ap, order_id = o.i, symbol = o.s, E = ev.E,
                          side = o.S, type = o.o })
  end
  if o.x == "TRADE" and o.t then
    local key = tostring(o.s) .. ":" .. tostring(o.t)
    if self.fills[key] then ev.duplicate_fill = true else self.fills[key] = true end
  end
end

function User:_release(ev)
  if self.last_E and ev.E < self.last_E then
    ev.late = true
    self.stats.late = self.stats.late + 1
  else
    self.last_E = ev.E
  end
  self.stats.events = self.stats.events + 1
  if ev.e == "ORDER_TRADE_UPDATE" then
    self:_apply_order(ev)
    if ev.duplicate_fill then return end
  end
  local route = USER_ROUTES[ev.e] or "on_other"
  call(ulog, route, self.h[route], ev)
end

--- Release held events in E order while the oldest has waited long enough.
function User:_flush(all)
  local p = self.pending
  local t = now()
  while #p > 0 and (all or t - p[1].at >= self.reorder_ms) do
    local item = table.remove(p, 1)
    self:_release(item.ev)
  end
end

function User:_hold(ev)
  self.seq = self.seq + 1
  local item = { ev = ev, at = now(), seq = self.seq }
  local p = self.pending
  local i = #p
  while i >= 1 and (p[i].ev.E > ev.E or (p[i].ev.E == ev.E and p[i].seq > item.seq)) do i = i - 1 end
  table.insert(p, i + 1, item)
end


--- Take an order as REST reports it, unless the stream already has newer.
function User:_note_rest_order(o)
  local id = o.clientOrderId or tostring(o.orderId)
  local E = tonumber(o.updateTime) or 0
  local cur = self.orders[id]
  if cur and cur.E > E then return end
  self:_set_order(id, { status = o.status, executed = o.executedQty, avg_price = o.avgPrice, order_id = o.orderId,
                        symbol = o.symbol, E = E, side = o.side, type = o.type })
end

--- After every (re)connect: events sent while we were away are gone, so
-- take open orders from REST, look up every order we thought open that is
-- no longer, and hand positions and balances to on_resync.
function User:_resync()
  local c = self.client
  local orders, err = c:open_orders()
  if orders then
    local open = {}
    for _, o in ipairs(orders) do
      open[o.clientOrderId] = true
      self:_note_rest_order(o)
    end
    local was_open = {}
    for id in pairs(self.open_ids) do was_open[#was_open + 1] = id end
    for _, id in ipairs(was_open) do
      local st = self.orders[id]
      if st and not open[id] then
        local got = c:get_order(st.symbol, { client_id = id })
        if got then self:_note_rest_order(got) end
      end
    end
  end
  if not self.h.on_resync then return end
  local positions, e2 = c:positions()
  local balances, e3 = c:balances()
  if not (orders and positions and balances) then
    ulog:warn("user stream resync incomplete", { venue = self.venue, error = tostring(err or e2 or e3) })
  end
  call(ulog, "on_resync", self.h.on_resync, { open_orders = orders, positions = positions, balances = balances })
end

function User:_keepalive(conn)
  while true do
    task.sleep(self.keepalive_ms)
    local ok, err = self.client:keepalive_listen_key()
    if ok then
      self.stats.keepalives = self.stats.keepalives + 1
    else
      ulog:warn("listen key keepalive failed", { venue = self.venue, error = tostring(err) })
      if err and err.code == -1125 then -- the venue forgot the key: start over with a new one
        conn:close(1000)
        return
      end
    end
  end
end

function User:_session(conn)
  while true do
    local msg, err
    if #self.pending > 0 then
      local wait = math.max(1, self.reorder_ms - (now() - self.pending[1].at))
      msg, err = task.timeout(wait, conn.recv, conn)
    else
      msg, err = conn:recv()
    end
    if not msg and err.kind == "timeout" then
      self:_flush(false)
    elseif not msg then
      return err.message
    else
      local ev, err = json.decode(msg)
      if type(ev) ~= "table" or type(ev.e) ~= "string" then
        self.stats.malformed = self.stats.malformed + 1
        ulog:warn("malformed user stream message skipped", { venue = self.venue, error = err or "no event type",
                                                             message = excerpt(msg) })
      elseif ev.e == "listenKeyExpired" then
        self.stats.expired = self.stats.expired + 1
        ulog:warn("listen key expired; reconnecting with a new one", { venue = self.venue })
        self:_flush(true)
        conn:close(1000)
        self.key = nil
        return "listenKeyExpired", true
      else
        ev.E = tonumber(ev.E) or 0
        self:_hold(ev)
        self:_flush(false)
      end
    end
  end
end

function User:_run()
  local attempt = 0
  while not self.closed do
    local why, immediate
    local key, kerr = self.client:listen_key()
    if key then
      self.key = key
      local conn, cerr = ws.connect { url = self.url .. "/ws/" .. key, ping_s = self.ping_s, hangup_s = self.hangup_s,
                                      insecure = self.insecure }
      if conn then
        self.conn = conn
        if self.connected_once then
          self.stats.reconnects = self.stats.reconnects + 1
          reconnects_total:labels(self.venue, "user"):inc()
        end
        self.connected_once = true
        self:_resync()
        self.ka = task.spawn("listen-key-keepalive", function() self:_keepalive(conn) end)
        why, immediate = self:_session(conn)
        attempt = 0
        self.ka:cancel()
        self.ka = nil
        self:_flush(true)
        self.conn = nil
      else
        why = tostring(cerr):gsub(key, "<listen key>") -- the key reads the account's stream: never log it
      end
    else
      why = tostring(kerr)
    end
    if self.closed then break end
    if not immediate then
      local wait = backoff_ms(attempt, self.min_backoff_ms, self.max_backoff_ms)
      attempt = attempt + 1
      ulog:warn("user stream down; reconnecting", { venue = self.venue, error = tostring(why),
                                                     retry_in_ms = math.floor(wait), attempt = attempt })
      task.sleep(wait)
    end
  end
end

function User:close()
  if self.closed then return end
  self.closed = true
  if self.conn then self.conn:close(1000) end
  self.conn = nil
  if self.task then self.task:cancel() end
  if self.ka then self.ka:cancel() end
  self:_flush(true)
  -- best effort: the venue forgets an unused key within the hour anyway,
  -- and during a shutdown no new request may start
  if self.key and not require("vibex.runtime").shutting_down() then pcall(self.client.close_listen_key, self.client) end
  self.key = nil
end

function User:connected() return self.conn ~= nil end

User.__tostring = function(u)
  return ("<user stream %s: %s, %d events>"):format(u.url, u.conn and "open" or "connecting", u.stats.events)
end

--- o: url (ws base), client (REST: listen keys, resync), handlers on_*,
-- reorder_ms (100), keepalive_ms (30 min), min_backoff_ms, max_backoff_ms,
-- ping_s, hangup_s, venue.
function M.new(o)
  local u = setmetatable({
    url = assert(o.url, "user stream: url is required"):gsub("/+$", ""),
    client = assert(o.client, "user stream: a REST client is required (listen keys)"),
    venue = o.venue or "aster", h = o,
    reorder_ms = o.reorder_ms or 100, keepalive_ms = o.keepalive_ms or 30 * 60e3,
    min_backoff_ms = o.min_backoff_ms or 250, max_backoff_ms = o.max_backoff_ms or 30000,
    ping_s = o.ping_s, hangup_s = o.hangup_s, insecure = o.insecure,
    pending = {}, seq = 0, orders = recent.map(2000), open_ids = {}, fills = recent.map(5000),
    stats = { events = 0, late = 0, malformed = 0, reconnects = 0, expired = 0, keepalives = 0 },
  }, User)
  u.task = task.spawn("user-stream", function() u:_run() end)
  return u
end

return M
