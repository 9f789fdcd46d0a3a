--- vibex.exchange.streams — the venue's WebSocket streams, kept alive.
--
-- Market data:
--
--   local md = aster:market_stream{
--     on_kline = function(k) … end,          -- k.symbol, k.interval, k.open_time, k.open … k.closed
--     on_mark_price = function(m) … end,     -- venue payload: m.s, m.p (mark), m.r (funding), m.T
--     on_agg_trade = fn, on_book_ticker = fn, on_depth = fn, on_other = fn(data, stream),
--     on_reconnect = function(info) … end,   -- {shard, attempt, backfilled}
--   }
--   md:kline("BTCUSDT", "1m"); md:mark_price("BTCUSDT"); md:subscribe("ethusdt@bookTicker")
--   md:unsubscribe("ethusdt@bookTicker"); md:streams(); md:close()
--
-- Streams are combined onto as few connections as the venue allows (200
-- streams each) and can be added or removed at run time. A dropped
-- connection comes back with jittered exponential backoff and its streams
-- resubscribed; a connection is replaced before the venue's 24 h limit; and
-- after every reconnect the candles missed meanwhile are fetched over REST
-- and delivered, in order, before the live stream resumes (k.backfilled).
-- A handler that raises is logged and the stream goes on.
--
-- User data:
--
--   local us = aster:user_stream{
--     on_order = fn(ev), on_account = fn(ev), on_margin_call = fn(ev),
--     on_other = fn(ev), on_resync = fn{open_orders, positions, balances},
--   }
--   us.orders[client_order_id] -> {status, executed, avg_price, order_id, symbol, E}
--   us:close()
--
-- Creates the listen key, keeps it alive (PUT every 30 min), replaces it on
-- listenKeyExpired or when the venue forgets it, and reconnects like the
-- market streams. Events are held for `reorder_ms` (100) and released in
-- event-time (E) order; an event that still arrives after a later one was
-- released is delivered with ev.late = true and never moves an order's state
-- backwards (ev.stale = true). Each fill is delivered once. After every
-- (re)connect, on_resync gets a REST snapshot so nothing missed is lost.
local ffi = require "ffi"
local json = require "vibex.json"
local log = require "vibex.log"
local metrics = require "vibex.metrics"
local task = require "vibex.task"
local ws = require "vibex.ws"

require "vibex.cdef" -- the declarations (one registry, checked against the headers at build time)

local C = ffi.C
local tlog = log.channel("market_data")
local ulog = log.channel("trading")
local now = task.now
local tonumber, ffistring = tonumber, ffi.string

local M = {}

local messages_total = metrics.counter("vibex_stream_messages_total", "WebSocket stream messages by kind",
  { "venue", "kind" })
local reconnects_total = metrics.counter("vibex_stream_reconnects_total", "WebSocket stream reconnects",
  { "venue", "stream" })

local DAY_MS = 24 * 3600e3
local KLINE_MS = {
  ["1m"] = 60e3, ["3m"] = 180e3, ["5m"] = 300e3, ["15m"] = 900e3, ["30m"] = 1800e3, ["1h"] = 3600e3,
  ["2h"] = 7200e3, ["4h"] = 14400e3, ["6h"] = 21600e3, ["8h"] = 28800e3, ["12h"] = 43200e3,
  ["1d"] = 86400e3, ["3d"] = 259200e3, ["1w"] = 604800e3,
}

-- ---- shared pieces -------------------------------------------------------------

--- Full-jitter exponential backoff: a random wait in [base·2^n / 2, base·2^n], capped.
local function backoff_ms(attempt, min_ms, max_ms)
  local cap = math.min(max_ms, min_ms * 2 ^ math.min(attempt, 20))
  return cap / 2 + math.random() * cap / 2
end
M.backoff_ms = backoff_ms

--- Run a handler; an error in user code is logged, never kills the stream.
local function call(channel, what, fn, ...)
  if not fn then return end
  local ok, err = xpcall(fn, debug.traceback, ...)
  if not ok then
    if task.is_cancelled(err) then error(err, 0) end
    channel:error("stream handler failed", { handler = what, error = tostring(err) })
  end
end

local function excerpt(s) return (#s > 120 and s:sub(1, 120) .. "…" or s):gsub("%c", " ") end

--- Stream names are lower-case symbol @ kind: "btcusdt@kline_1m".
local function normalize(name)
  if type(name) ~= "string" then error("stream names are strings like \"btcusdt@kline_1m\"", 3) end
  local sym, rest = name:match("^([^@]+)@(.+)$")
  if not sym then error(("bad stream name %q (want <symbol>@<stream>, e.g. btcusdt@kline_1m)"):format(name), 3) end
  return sym:lower() .. "@" .. rest
end
M.normalize = normalize

-- ---- market streams ------------------------------------------------------------------

local Market = {}
Market.__index = Market

local kmsg = ffi.new("vx_kline_msg")

--- The kline struct as a table shaped like the REST klines (plus stream fields).
local function kline_table(k)
  return {
    symbol = ffistring(k.symbol), interval = ffistring(k.interval),
    open_time = tonumber(k.open_time), close_time = tonumber(k.close_time),
    open = k.open, high = k.high, low = k.low, close = k.close, volume = k.volume,
    quote_volume = k.quote_volume, trades = tonumber(k.trades),
    taker_buy_volume = k.taker_buy_volume, taker_buy_quote_volume = k.taker_buy_quote_volume,
    closed = k.closed ~= 0, event_time = tonumber(k.event_time),
  }
end
M.kline_table = kline_table

--- Parse one kline event with the C scanner: a table, or nil if the
-- message is something else.
function M.parse_kline(msg)
  if C.vx_kline_msg_parse(msg, #msg, kmsg) == 1 then return kline_table(kmsg) end
  return nil
end

local ROUTES = {
  markPriceUpdate = "on_mark_price", aggTrade = "on_agg_trade", bookTicker = "on_book_ticker",
  depthUpdate = "on_depth", kline = "on_kline",
}

function Market:_note_kline(k)
  local key = k.symbol:lower() .. "@kline_" .. k.interval
  local last = self.last_kline[key]
  if not last or k.open_time >= last then self.last_kline[key] = k.open_time end
end

-- The newest candle seen of a kline stream, by either path: frames the
-- sink applied in C never pass through _note_kline.
function Market:_last_open(name)
  local a = self.last_kline[name]
  local b = self.sink and self.sink.last_open(name)
  if a and b then return math.max(a, b) end
  return a or b
end

-- While the candles missed during a disconnect are fetched, live frames of
-- those streams must queue behind them (in Lua) instead of overtaking them
-- in the sink; afterwards the sink takes them again.
function Market:_pause_klines(shard, paused)
  if not self.sink then return end
  for name in pairs(shard.streams) do
    if name:find("@kline_", 1, true) then self.sink.pause(name, paused) end
  end
end

-- Everything that queued on the connection (during the backfill), in order.
function Market:_drain(conn)
  while true do
    local msg = conn:poll()
    if not msg then return end
    self:_dispatch(msg)
  end
end

function Market:_dispatch(msg)
  local st = self.stats
  st.messages = st.messages + 1
  if C.vx_kline_msg_parse(msg, #msg, kmsg) == 1 then
    local k = kline_table(kmsg)
    self:_note_kline(k)
    st.klines = st.klines + 1
    return call(tlog, "on_kline", self.h.on_kline, k)
  end
  local v, err = json.decode(msg)
  if type(v) ~= "table" then
    st.malformed = st.malformed + 1
    messages_total:labels(self.venue, "malformed"):inc()
    if st.malformed <= 10 or st.malformed % 1000 == 0 then
      tlog:warn("malformed stream message skipped", { venue = self.venue, error = err or "not an object",
                                                      message = excerpt(msg), count = st.malformed })
    end
    return
  end
  if v.id ~= nil and (v.result ~= nil or v.code ~= nil) or (v.code ~= nil and v.msg ~= nil) then
    if v.code then tlog:error("stream control request refused", { venue = self.venue, code = v.code, msg = v.msg, id = v.id }) end
    return
  end
  local data, stream = v, nil
  if type(v.data) == "table" then data, stream = v.data, v.stream end
  local route = ROUTES[data.e]
  if route == "on_kline" and type(data.k) == "table" then -- a kline the fast path refused: take it slowly
    local k = data.k
    local t = { symbol = k.s, interval = k.i, open_time = k.t, close_time = k.T, open = tonumber(k.o),
                high = tonumber(k.h), low = tonumber(k.l), close = tonumber(k.c), volume = tonumber(k.v),
                quote_volume = tonumber(k.q), trades = k.n, closed = k.x == true, event_time = data.E }
    if t.symbol and t.interval and t.open_time then self:_note_kline(t) end
    return call(tlog, "on_kline", self.h.on_kline, t)
  end
  if route then return call(tlog, route, self.h[route], data, stream) end
  return call(tlog, "on_other", self.h.on_other, data, stream)
end

function Market:_url(shard)
  local names = {}
  for name in pairs(shard.streams) do names[#names + 1] = name end
  table.sort(names)
  if #names == 0 then return self.url .. "/stream" end
  return self.url .. "/stream?streams=" .. table.concat(names, "/")
end

--- After a reconnect: fetch over REST the candles of every kline stream on
-- this shard from the last one seen up to now, and deliver them in order.
function Market:_backfill(shard)
  if not self.client or not self.backfill then return 0 end
  local todo = {}
  for name in pairs(shard.streams) do
    local sym, iv = name:match("^(.-)@kline_(.+)$")
    if sym and self:_last_open(name) and KLINE_MS[iv] then todo[#todo + 1] = { name, sym:upper(), iv } end
  end
  if #todo == 0 then return 0 end
  table.sort(todo, function(a, b) return a[1] < b[1] end)
  self.client:sync_time()
  local n = 0
  for _, t in ipairs(todo) do
    local name, sym, iv = t[1], t[2], t[3]
    local from = self:_last_open(name)
    local rows, err = self.client:klines(sym, iv, { start_ms = from, end_ms = self.client:now() })
    if not rows then
      tlog:warn("gap check failed; candles may be missing until the next one closes",
        { venue = self.venue, stream = name, error = tostring(err) })
    else
      local t_now = self.client:now()
      for _, r in ipairs(rows) do
        if r.open_time >= from then
          r.symbol, r.interval, r.backfilled = sym, iv, true
          r.closed = r.close_time < t_now
          if r.open_time > from and r.closed then n = n + 1 end
          self:_note_kline(r)
          call(tlog, "on_kline", self.h.on_kline, r)
        end
      end
    end
  end
  self.stats.backfilled = self.stats.backfilled + n
  return n
end

function Market:_control(shard, method, names)
  if not shard.conn or #names == 0 then return end
  self.next_id = self.next_id + 1
  local body = json.encode { method = method, params = names, id = self.next_id }
  -- the venue closes a connection that sends more than 10 messages a second: keep under 5
  local t = now()
  local recent = {}
  for _, s in ipairs(shard.sent) do if t - s < 1000 then recent[#recent + 1] = s end end
  shard.sent = recent
  if #recent >= 5 then
    local conn = shard.conn
    task.spawn("stream-control", function()
      task.sleep(1000 - (t - recent[1]) + 10)
      if shard.conn == conn then conn:send(body) end
    end)
  else
    recent[#recent + 1] = t
    shard.conn:send(body)
  end
end

function Market:_run(shard)
  local attempt = 0
  while not self.closed do
    local url = self:_url(shard)
    local conn, err = ws.connect { url = url, ping_s = self.ping_s, hangup_s = self.hangup_s, insecure = self.insecure,
                                   sink = self.sink and self.sink.ud, max_queue = self.max_queue }
    if conn then
      shard.conn = conn
      shard.rotating = false
      if shard.connected_once then
        self.stats.reconnects = self.stats.reconnects + 1
        reconnects_total:labels(self.venue, "market"):inc()
        local n = self:_backfill(shard)
        tlog:info("market stream reconnected", { venue = self.venue, shard = shard.id, streams = shard.count,
                                                 backfilled = n, attempt = attempt })
        call(tlog, "on_reconnect", self.h.on_reconnect, { shard = shard.id, attempt = attempt, backfilled = n })
      end
      shard.connected_once = true
      -- what queued behind the backfill goes first, then the sink takes over
      -- (no yield in between, so nothing can slip past)
      self:_drain(conn)
      self:_pause_klines(shard, false)
      shard.rot = task.spawn("stream-rotate", function()
        task.sleep(self.rotate_ms)
        shard.rotating = true
        conn:close(1000)
      end)
      while true do
        local msg, why = conn:recv()
        if not msg then err = why.message break end
        attempt = 0
        self:_dispatch(msg)
      end
      shard.rot:cancel()
      shard.conn, shard.rot = nil, nil
      self:_pause_klines(shard, true)
    end
    if self.closed then break end
    if shard.rotating then
      tlog:info("replacing the market stream connection before the venue's 24 h limit", { venue = self.venue, shard = shard.id })
    else
      local wait = backoff_ms(attempt, self.min_backoff_ms, self.max_backoff_ms)
      attempt = attempt + 1
      tlog:warn("market stream down; reconnecting", { venue = self.venue, shard = shard.id, error = tostring(err),
                                                       retry_in_ms = math.floor(wait), attempt = attempt })
      task.sleep(wait)
    end
  end
end

function Market:_shard_for(name)
  for _, s in ipairs(self.shards) do
    if s.streams[name] then return s, false end
  end
  for _, s in ipairs(self.shards) do
    if s.count < self.max_streams then return s, true end
  end
  local s = { id = #self.shards + 1, streams = {}, count = 0, sent = {} }
  self.shards[#self.shards + 1] = s
  s.task = task.spawn("market-stream", function() self:_run(s) end)
  return s, true
end

--- Subscribe to one stream name or a list of them (at run time too).
function Market:subscribe(names)
  if self.closed then return nil, require("vibex.errors").new("closed", "market stream is closed", { source = "market stream" }) end
  if type(names) ~= "table" then names = { names } end
  local by_shard = {}
  for _, raw in ipairs(names) do
    local name = normalize(raw)
    local shard, new = self:_shard_for(name)
    if new then
      shard.streams[name] = true
      shard.count = shard.count + 1
      by_shard[shard] = by_shard[shard] or {}
      table.insert(by_shard[shard], name)
    end
  end
  for shard, list in pairs(by_shard) do self:_control(shard, "SUBSCRIBE", list) end
  return true
end

function Market:unsubscribe(names)
  if type(names) ~= "table" then names = { names } end
  for _, raw in ipairs(names) do
    local name = normalize(raw)
    for _, shard in ipairs(self.shards) do
      if shard.streams[name] then
        shard.streams[name] = nil
        shard.count = shard.count - 1
        self.last_kline[name] = nil
        self:_control(shard, "UNSUBSCRIBE", { name })
      end
    end
  end
  return true
end

function Market:kline(symbol, interval) return self:subscribe(("%s@kline_%s"):format(symbol, interval)) end
function Market:mark_price(symbol, fast) return self:subscribe(symbol .. (fast and "@markPrice@1s" or "@markPrice")) end
function Market:agg_trade(symbol) return self:subscribe(symbol .. "@aggTrade") end
function Market:book_ticker(symbol) return self:subscribe(symbol .. "@bookTicker") end
function Market:depth(symbol, levels, speed)
  return self:subscribe(("%s@depth%d%s"):format(symbol, levels or 20, speed and ("@" .. speed) or ""))
end

--- Subscribed stream names, sorted.
function Market:streams()
  local out = {}
  for _, s in ipairs(self.shards) do for name in pairs(s.streams) do out[#out + 1] = name end end
  table.sort(out)
  return out
end

--- True when every shard has an open connection.
function Market:connected()
  for _, s in ipairs(self.shards) do if not s.conn then return false end end
  return #self.shards > 0
end

function Market:close()
  self.closed = true
  for _, s in ipairs(self.shards) do
    if s.conn then s.conn:close(1000) end
    if s.task then s.task:cancel() end
    if s.rot then s.rot:cancel() end
    s.conn, s.rot = nil, nil
  end
end

Market.__tostring = function(m)
  return ("<market stream %s: %d streams on %d connections>"):format(m.url, #m:streams(), #m.shards)
end

--- o: url (ws base, e.g. wss://fstream.asterdex.com), client (REST, for
-- the gap check), handlers on_*, max_streams (200), rotate_ms (23.5 h),
-- min_backoff_ms (250), max_backoff_ms (30000), ping_s, hangup_s,
-- backfill (true), venue, sink ({ud, last_open(name), pause(name, paused)}:
-- a market-data sink that takes hot frames in C, see vibex.marketdata),
-- max_queue (bytes queued in Lua before the socket stops being read).
function M.market(o)
  local m = setmetatable({
    url = assert(o.url, "market stream: url is required"):gsub("/+$", ""),
    client = o.client, venue = o.venue or "aster", h = o,
    max_streams = o.max_streams or 200, rotate_ms = o.rotate_ms or (DAY_MS - 1800e3),
    min_backoff_ms = o.min_backoff_ms or 250, max_backoff_ms = o.max_backoff_ms or 30000,
    ping_s = o.ping_s, hangup_s = o.hangup_s, insecure = o.insecure, backfill = o.backfill ~= false,
    sink = o.sink, max_queue = o.max_queue,
    shards = {}, last_kline = {}, next_id = 0,
    stats = { messages = 0, klines = 0, malformed = 0, reconnects = 0, backfilled = 0 },
  }, Market)
  for _, name in ipairs(o.streams or {}) do m:subscribe(name) end
  return m
end

-- ---- user data stream --------------------------------------------------------------------

local User = {}
User.__index = User

local USER_ROUTES = { ORDER_TRADE_UPDATE = "on_order", ACCOUNT_UPDATE = "on_account", MARGIN_CALL = "on_margin_call" }

--- Track the order's latest state; never move it backwards in event time.
function User:_apply_order(ev)
  local o = ev.o
  if type(o) ~= "table" then return end
  local id = o.c or tostring(o.i)
  local cur = self.orders[id]
  if cur and cur.E > ev.E then
    ev.stale = true
  else
    self.orders[id] = { status = o.X, executed = o.z, avg_price = o.ap, order_id = o.i, symbol = o.s, E = ev.E,
                        side = o.S, type = o.o }
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

local OPEN = { NEW = true, PARTIALLY_FILLED = true }

--- Take an order as REST reports it, unless the stream already has newer.
function User:_note_rest_order(o)
  local id = o.clientOrderId or tostring(o.orderId)
  local E = tonumber(o.updateTime) or 0
  local cur = self.orders[id]
  if cur and cur.E > E then return end
  self.orders[id] = { status = o.status, executed = o.executedQty, avg_price = o.avgPrice, order_id = o.orderId,
                      symbol = o.symbol, E = E, side = o.side, type = o.type }
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
    for id, st in pairs(self.orders) do
      if OPEN[st.status] and not open[id] then
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
function M.user(o)
  local u = setmetatable({
    url = assert(o.url, "user stream: url is required"):gsub("/+$", ""),
    client = assert(o.client, "user stream: a REST client is required (listen keys)"),
    venue = o.venue or "aster", h = o,
    reorder_ms = o.reorder_ms or 100, keepalive_ms = o.keepalive_ms or 30 * 60e3,
    min_backoff_ms = o.min_backoff_ms or 250, max_backoff_ms = o.max_backoff_ms or 30000,
    ping_s = o.ping_s, hangup_s = o.hangup_s, insecure = o.insecure,
    pending = {}, seq = 0, orders = {}, fills = {},
    stats = { events = 0, late = 0, malformed = 0, reconnects = 0, expired = 0, keepalives = 0 },
  }, User)
  u.task = task.spawn("user-stream", function() u:_run() end)
  return u
end

return M
