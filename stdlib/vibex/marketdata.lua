--- vibex.marketdata — one market-data service per venue: it owns the
-- candle ring buffers and the latest mark price, funding rate and best
-- bid/ask of every symbol any account there trades, and keeps them current.
--
--   local md = marketdata.live{client = aster}         -- a venue's REST client (it knows its ws_url)
--   assert(md:track({"BTCUSDT", "ETHUSDT"}, {"5m", "1h"}, 400))   -- history over REST, then streams
--   local view = md:view({"BTCUSDT"}, {"5m", "1h"})     -- an account's cycle view
--   view:take()                                          -- copy the buffers now
--   view:candles("BTCUSDT", "5m"), view:mark("BTCUSDT"), view:funding("BTCUSDT"), view:book("BTCUSDT")
--
--   local rp = marketdata.replay{interval = "5m"}       -- a replay's (and a backtest's)
--   rp:track(symbols, {"5m", "1h"}, 400); rp:push("BTCUSDT", k); rp:set_mark(…); rp:set_funding(…)
--
-- Live: each (symbol, interval) is filled over REST at start (up to
-- `capacity` candles), then kept current by the venue's kline stream; mark
-- price (with funding) and book ticker streams keep the quotes. The hot
-- frames never become Lua values: a C sink (runtime/mdsink.c) attached to
-- the WebSocket connection parses them and updates the buffers directly.
-- After a reconnect the streams fetch the candles missed meanwhile over
-- REST (vibex.exchange.streams) before live frames apply again. Nothing on
-- a decision cycle's path calls REST.
--
-- Replay: candles of the base interval are pushed in; coarser intervals
-- are resampled from them in C, exactly as the venue would give them. A
-- paper account next to a live venue reads that venue's service.
--
-- Either way one candle has one shape from the frame to the indicator
-- (open_time, open, high, low, close, volume, quote_volume, trades,
-- closed), and a view taken for a cycle stays as it was for the whole cycle,
-- whatever arrives meanwhile.
local ffi = require "ffi"
local ta = require "vibex.ta"
require "vibex.cdef" -- declares vx_kline_msg
local core = require "vibex.core.mdsink"
local log = require "vibex.log"
local task = require "vibex.task"

require "vibex.cdef" -- the declarations (one registry, checked against the headers at build time)

if ffi.sizeof("vx_md_sink") ~= core.sizeof() then
  error(("vibex.marketdata: vx_md_sink is declared with another layout than runtime/mdsink.h (%d vs %d bytes)")
    :format(ffi.sizeof("vx_md_sink"), core.sizeof()))
end

local C = ffi.C
local mlog = log.channel("market_data")

local M = {}

-- ---- the shared part: series, views ---------------------------------------------------

local Service = {}
Service.__index = Service

function Service:series(symbol, interval)
  local per = self.buffers[symbol]
  return per and per[interval]
end

--- What an account reads during one cycle: copies of its series and the
-- quotes, taken at once by take(), reused from cycle to cycle.
local View = {}
View.__index = View

function Service:view(symbols, intervals)
  local v = setmetatable({ md = self, symbols = symbols, intervals = intervals, copies = {}, quotes = {} }, View)
  for _, sym in ipairs(symbols) do
    v.copies[sym] = {}
    v.quotes[sym] = {}
  end
  return v
end

--- Copy every series and quote now. Returns the view.
function View:take()
  local md = self.md
  for _, sym in ipairs(self.symbols) do
    local per = self.copies[sym]
    for _, iv in ipairs(self.intervals) do
      local src = md:series(sym, iv)
      if src then
        local dst = per[iv]
        if not dst or dst:capacity() < src:len() then
          dst = assert(ta.candles { interval = iv, capacity = math.max(1, src:capacity()), symbol = sym })
          per[iv] = dst
        end
        assert(src:copy(dst))
      end
    end
    local q = self.quotes[sym]
    q.price, q.mark, q.funding, q.book = md:price(sym), md:mark(sym), md:funding(sym), md:book(sym)
  end
  self.taken_ms = md:now()
  return self
end

function View:candles(symbol, interval)
  local per = self.copies[symbol]
  return per and per[interval or self.intervals[1]]
end
function View:price(symbol) local q = self.quotes[symbol]; return q and q.price end
function View:mark(symbol) local q = self.quotes[symbol]; return q and (q.mark or q.price) end
function View:funding(symbol) local q = self.quotes[symbol]; return q and q.funding end
function View:book(symbol) local q = self.quotes[symbol]; return q and q.book end

--- The last close of the first tracked interval of a symbol.
function Service:price(symbol)
  local per = self.buffers[symbol]
  if not per then return nil end
  local best_ms, close
  for _, iv in ipairs(self.order[symbol] or {}) do
    local c = per[iv]
    local k = c and c:at(-1)
    -- the finest interval has the freshest close
    if k and (not best_ms or c:interval_ms() < best_ms) then best_ms, close = c:interval_ms(), k.c end
  end
  return close
end

--- A summary per symbol and interval (for state.json and the status).
function Service:stats()
  local out = { symbols = {}, rest_kline_calls = self.rest_kline_calls }
  for sym, per in pairs(self.buffers) do
    local s = {}
    for iv, c in pairs(per) do
      local last = c:at(-1)
      local first = c:at(1)
      local g = c:gaps()
      s[iv] = { len = c:len(), first_open = first and first.t, last_open = last and last.t,
                closed = last and last.closed or false, gaps = g.count, missing = g.missing }
    end
    s.mark, s.funding = self:mark(sym), self:funding(sym)
    local b = self:book(sym)
    if b then s.bid, s.ask = b.bid, b.ask end
    out.symbols[sym] = s
  end
  return out
end

-- ---- live ----------------------------------------------------------------------------------

local Live = setmetatable({}, { __index = Service })
Live.__index = Live

--- A live venue's service. o: client (vibex.exchange.aster client with a
-- ws_url), name (for logs), streams (extra options for the market stream:
-- min_backoff_ms, …).
function M.live(o)
  assert(o and o.client, "marketdata.live{client = …}")
  local ud = core.new()
  local self = setmetatable({
    client = o.client, name = o.name or o.client.venue, buffers = {}, order = {}, ud = ud,
    sink = ffi.cast("vx_md_sink *", ud), anchors = {}, routes = {}, quote_slot = {}, rest_kline_calls = 0,
    stream_opts = o.streams or {}, refused_logged = {}, funding_rate = {}, mark_price = {},
  }, Live)
  return self
end

function Live:now() return self.client:now() end

local function key(sym, iv) return sym .. "/" .. iv end

-- The sink's quote slot of a symbol, once the stream has filled it (marks
-- or books counted), else nil.
function Live:_quote(symbol, count)
  local i = self.quote_slot[symbol]
  local q = i and self.sink.quotes[i]
  if q and q[count] > 0 then return q end
end

function Live:mark(symbol)
  local q = self:_quote(symbol, "marks")
  if q then return q.mark end
  return self.mark_price[symbol]
end

function Live:funding(symbol)
  local q = self:_quote(symbol, "marks")
  if q then return q.funding_rate end
  return self.funding_rate[symbol]
end

function Live:book(symbol)
  local q = self:_quote(symbol, "books")
  if q then return { bid = q.bid, ask = q.ask, bid_qty = q.bid_qty, ask_qty = q.ask_qty } end
  return nil
end

-- The stream handlers for frames the sink left to Lua: a paused route
-- (behind a backfill), a candle the buffer refused (logged here), the
-- backfilled candles themselves, quotes of symbols not (yet) routed.
function Live:_on_kline(k)
  local c = self:series(k.symbol, k.interval)
  if not c then return end
  local ok, err = c:update(k, k.closed)
  if not ok then
    local name = key(k.symbol, k.interval)
    local n = (self.refused_logged[name] or 0) + 1
    self.refused_logged[name] = n
    if n <= 5 or n % 1000 == 0 then
      mlog:warn("candle refused by the buffer", { venue = self.name, symbol = k.symbol, interval = k.interval,
                                                  open_time = k.open_time, error = err, count = n })
    end
  end
end

function Live:_on_mark(m)
  local i = self.quote_slot[m.s]
  if not i then return end
  local q = self.sink.quotes[i]
  q.mark, q.funding_rate = tonumber(m.p) or q.mark, tonumber(m.r) or q.funding_rate
  q.mark_time, q.marks = tonumber(m.E) or q.mark_time, q.marks + 1
end

function Live:_on_book(b)
  local i = self.quote_slot[b.s]
  if not i then return end
  local q = self.sink.quotes[i]
  q.bid, q.ask = tonumber(b.b) or q.bid, tonumber(b.a) or q.ask
  q.bid_qty, q.ask_qty = tonumber(b.B) or q.bid_qty, tonumber(b.A) or q.ask_qty
  q.book_time, q.books = tonumber(b.E) or q.book_time, q.books + 1
end

function Live:_stream()
  if self.md then return self.md end
  local sink = self.sink
  local o = {}
  for k, v in pairs(self.stream_opts) do o[k] = v end
  o.on_kline = function(k) self:_on_kline(k) end
  o.on_mark_price = function(m) self:_on_mark(m) end
  o.on_book_ticker = function(b) self:_on_book(b) end
  o.on_reconnect = function(info)
    self.reconnects = (self.reconnects or 0) + 1
    self.backfilled = (self.backfilled or 0) + (info.backfilled or 0)
  end
  o.sink = {
    ud = self.ud,
    -- the newest candle in the buffer, whichever path put it there
    last_open = function(name)
      local r = self.routes[name]
      if not r then return nil end
      local c = self:series(ffi.string(sink.routes[r].symbol), ffi.string(sink.routes[r].interval))
      local last = c and c:at(-1)
      return last and last.t or nil
    end,
    pause = function(name, paused)
      local r = self.routes[name]
      if r then C.vx_md_sink_pause(sink, r, paused and 1 or 0) end
    end,
  }
  local md, err = pcall(self.client.market_stream, self.client, o)
  if not md then return nil, tostring(err) end
  self.md = err
  return self.md
end

-- Fill one series from REST: the last `limit` candles; the forming one as forming.
function Live:_fill(sym, iv, c, limit)
  local rows, err = self.client:klines(sym, iv, limit)
  self.rest_kline_calls = self.rest_kline_calls + 1
  if not rows then return nil, err end
  local now = self.client:now()
  local ms = c:interval_ms()
  for _, r in ipairs(rows) do
    local ok, uerr = c:update(r, r.open_time + ms <= now)
    if not ok then return nil, ("%s %s history: %s"):format(sym, iv, uerr) end
  end
  return #rows
end

--- Start keeping symbols × intervals: history over REST (once per pair),
-- then the streams. Safe to call again with more (another account). true |
-- nil, err (the venue refused or could not be reached; nothing is left
-- half-routed).
function Live:track(symbols, intervals, capacity)
  -- one track at a time: accounts starting side by side share symbols, and
  -- a series must be filled and routed once
  while self.tracking do
    self.track_waiters = self.track_waiters or {}
    self.track_waiters[#self.track_waiters + 1] = task.current()
    task.park(true)
  end
  self.tracking = true
  local ok, res, err = pcall(self._track, self, symbols, intervals, capacity)
  self.tracking = false
  local w = self.track_waiters
  self.track_waiters = nil
  for _, t in ipairs(w or {}) do task.unpark(t) end
  if not ok then error(res, 0) end
  return res, err
end

function Live:_track(symbols, intervals, capacity)
  capacity = math.max(2, math.min(capacity or 400, 5000))
  if not self.synced then
    local ok, serr = self.client:sync_time()
    if not ok then return nil, serr end
    self.synced = true
  end
  local md, serr = self:_stream()
  if not md then return nil, "market stream: " .. tostring(serr) end
  for _, sym in ipairs(symbols) do
    self.buffers[sym] = self.buffers[sym] or {}
    self.order[sym] = self.order[sym] or {}
    for _, iv in ipairs(intervals) do
      local name = sym:lower() .. "@kline_" .. iv
      if not self.routes[name] then
        local c, cerr = ta.candles { interval = iv, capacity = capacity, symbol = sym }
        if not c then return nil, cerr end
        local n, ferr = self:_fill(sym, iv, c, math.min(capacity, 1500))
        if not n then return nil, ("%s %s klines: %s"):format(sym, iv, tostring(ferr)) end
        self.buffers[sym][iv] = c
        self.anchors[#self.anchors + 1] = c -- the sink holds the raw pointer; keep the series alive with it
        table.insert(self.order[sym], iv)
        local r = C.vx_md_sink_route(self.sink, sym, iv, c.ptr)
        if r < 0 then return nil, ("too many candle series on %s (at most 256)"):format(self.name) end
        self.routes[name] = r
        md:kline(sym, iv)
      end
    end
    if not self.quote_slot[sym] then
      local q = C.vx_md_sink_quote(self.sink, sym)
      if q < 0 then return nil, ("too many symbols on %s (at most 256)"):format(self.name) end
      self.quote_slot[sym] = q
      -- the first mark and funding over REST, so a cycle never waits for the stream
      local pi = self.client:premium_index(sym)
      if pi then
        self.mark_price[sym], self.funding_rate[sym] = tonumber(pi.markPrice), tonumber(pi.lastFundingRate)
      end
      md:mark_price(sym, true)
      md:book_ticker(sym)
    end
  end
  return true
end

function Live:stats()
  local out = Service.stats(self)
  local s = self.sink
  out.frames, out.applied_in_c, out.to_lua = tonumber(s.frames), tonumber(s.applied), tonumber(s.passed)
  if self.md then
    out.connected = self.md:connected()
    out.reconnects = self.md.stats.reconnects
    out.backfilled = self.md.stats.backfilled
  end
  return out
end

function Live:close()
  if self.md then self.md:close() end
  self.md = nil
end

-- ---- replay ---------------------------------------------------------------------------------

local Replay = setmetatable({}, { __index = Service })
Replay.__index = Replay

--- A replay's service: o.interval is the base interval candles arrive in.
function M.replay(o)
  local iv = o and o.interval or "5m"
  local ms = assert(ta.interval_ms(iv))
  return setmetatable({ base = iv, base_ms = ms, buffers = {}, order = {}, mark_price = {}, funding_rate = {},
                        now_ms = 0, rest_kline_calls = 0 }, Replay)
end

function Replay:now() return self.now_ms end

--- Base-interval series per symbol, coarser ones resampled from it. An
-- interval finer than the base cannot be made: nil, err.
function Replay:track(symbols, intervals, capacity)
  capacity = math.max(2, capacity or 400)
  for _, sym in ipairs(symbols) do
    local per = self.buffers[sym]
    if not per then
      per = { [self.base] = assert(ta.candles { interval = self.base, capacity = capacity, symbol = sym }) }
      self.buffers[sym] = per
      self.order[sym] = { self.base }
    end
    for _, iv in ipairs(intervals) do
      if not per[iv] then
        local ms = ta.interval_ms(iv)
        if not ms or ms < self.base_ms or ms % self.base_ms ~= 0 then
          return nil, ("interval %s cannot be made from %s replay candles (use a replay.interval that divides it)")
            :format(iv, self.base)
        end
        local c, err = per[self.base]:resample(iv, capacity)
        if not c then return nil, err end
        per[iv] = c
        table.insert(self.order[sym], iv)
      end
    end
  end
  return true
end

--- A closed base candle {open_time, open, high, low, close, volume}.
function Replay:push(symbol, k)
  local c = self.buffers[symbol] and self.buffers[symbol][self.base]
  if not c then return nil, "untracked symbol " .. tostring(symbol) end
  local ok, err = c:update(k, true)
  if not ok then return nil, err end
  local t = k.open_time + self.base_ms
  if t > self.now_ms then self.now_ms = t end
  return true
end

function Replay:set_mark(symbol, price) self.mark_price[symbol] = price end
function Replay:set_funding(symbol, rate) self.funding_rate[symbol] = rate end
function Replay:mark(symbol) return self.mark_price[symbol] or self:price(symbol) end
function Replay:funding(symbol) return self.funding_rate[symbol] end
function Replay:book() return nil end
function Replay:close() end

M.Service = Service
return M
