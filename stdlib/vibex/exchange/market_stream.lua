--- vibex.exchange.market_stream — the venue's market-data WebSocket streams, kept alive.
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
local ffi = require "ffi"
local json = require "vibex.json"
local task = require "vibex.task"
local ws = require "vibex.ws"
local util = require "vibex.exchange.stream_util"
local time = require "vibex.time"

local C = require("vibex.cdef").C
local tlog = util.tlog
local now = task.now
local tonumber, ffistring = tonumber, ffi.string
local backoff_ms, call, excerpt, normalize = util.backoff_ms, util.call, util.excerpt, util.normalize
local messages_total, reconnects_total = util.messages_total, util.reconnects_total
local DAY_MS, KLINE_MS = time.DAY_MS, time.INTERVAL_MS

local M = {}

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

--- Run fn(event, …) before the handler `name` ("on_kline", "on_mark_price",
--- "on_book_ticker", …) this stream already has: another component follows
--- the stream (a paper venue fed by live prices) without replacing it.
function Market:chain(name, fn)
  local prev = self.h[name]
  self.h[name] = function(...)
    fn(...)
    if prev then return prev(...) end
  end
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
function M.new(o)
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

return M
