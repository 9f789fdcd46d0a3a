--- vibex.agent.market — the candles, mark prices and funding rates an
-- account's context is built from.
--
--   local md = market.new{symbols = {"BTCUSDT"}, intervals = {"5m", "1h"}, capacity = 400}
--   md:push(symbol, k)               -- a closed base-interval candle (replay): coarser intervals follow
--   md:refresh(venue)                -- live: fetch what is new over REST
--   md:candles("BTCUSDT", "1h")      -- a vibex.ta candle series
--   md:price(symbol), md:funding(symbol), md:mark(symbol)
--
-- The first interval is the base: a replay pushes candles of it and the
-- coarser ones are resampled from it in C (exactly what the venue would
-- give). A live refresh loads `capacity` candles of each interval once,
-- then only the last few each time.
local ta = require "vibex.ta"

local M = {}

local Market = {}
Market.__index = Market

function M.new(o)
  local intervals = o.intervals or { "5m", "1h" }
  local self = setmetatable({ symbols = o.symbols, intervals = intervals, capacity = o.capacity or 400,
                              series = {}, loaded = {}, funding_rate = {}, mark_price = {}, last_time = 0 }, Market)
  for _, sym in ipairs(o.symbols) do
    local base = assert(ta.candles { interval = intervals[1], capacity = self.capacity, symbol = sym })
    local per = { [intervals[1]] = base }
    for i = 2, #intervals do
      per[intervals[i]] = assert(base:resample(intervals[i], self.capacity))
    end
    self.series[sym] = per
  end
  return self
end

function Market:candles(symbol, interval)
  local per = self.series[symbol]
  return per and per[interval or self.intervals[1]]
end

--- A closed candle of the base interval {open_time, open, high, low, close, volume}.
function Market:push(symbol, k)
  local c = self.series[symbol][self.intervals[1]]
  local ok, err = c:update({ t = k.open_time, o = k.open, h = k.high, l = k.low, c = k.close, v = k.volume or 0 }, true)
  if not ok then return nil, err end
  if k.open_time > self.last_time then self.last_time = k.open_time end
  return true
end

function Market:set_funding(symbol, rate) self.funding_rate[symbol] = rate end
function Market:set_mark(symbol, price) self.mark_price[symbol] = price end

function Market:price(symbol)
  local k = self.series[symbol] and self.series[symbol][self.intervals[1]]:at(-1)
  return k and k.c
end
function Market:mark(symbol) return self.mark_price[symbol] or self:price(symbol) end
function Market:funding(symbol) return self.funding_rate[symbol] end

-- Apply kline rows (REST layout) to one series; the venue's forming candle
-- is applied as forming.
local function apply_rows(series, rows, now_ms, interval_ms)
  for _, r in ipairs(rows) do
    local closed = (r.open_time + interval_ms) <= now_ms
    local ok, err = series:update({ t = r.open_time, o = r.open, h = r.high, l = r.low, c = r.close, v = r.volume,
                                    qv = r.quote_volume, n = r.trades }, closed)
    if not ok then return nil, err end
  end
  return true
end

--- Live: bring every series up to date from the venue over REST, with the
-- mark price and funding rate. Returns true | nil, err.
function Market:refresh(venue)
  local now = venue:now()
  for _, sym in ipairs(self.symbols) do
    for i, iv in ipairs(self.intervals) do
      local key = sym .. "/" .. iv
      local limit = self.loaded[key] and 3 or math.min(self.capacity, 499)
      local rows, err = venue:klines(sym, iv, limit)
      if not rows then return nil, ("%s %s klines: %s"):format(sym, iv, tostring(err)) end
      -- coarser series are fed from the venue directly here, not resampled
      local series = i == 1 and self.series[sym][iv] or self:_own(sym, iv)
      local ok, aerr = apply_rows(series, rows, now, ta.interval_ms(iv))
      if not ok then return nil, ("%s %s: %s"):format(sym, iv, aerr) end
      self.loaded[key] = true
    end
    local pi = venue:premium_index(sym)
    if pi then
      self.mark_price[sym] = tonumber(pi.markPrice)
      self.funding_rate[sym] = tonumber(pi.lastFundingRate)
    end
  end
  self.last_time = now
  return true
end

-- A live account reads coarse intervals from the venue: swap the resampled
-- child for a series of its own the first time.
function Market:_own(sym, iv)
  local per = self.series[sym]
  if not per["own:" .. iv] then
    per[iv] = assert(ta.candles { interval = iv, capacity = self.capacity, symbol = sym })
    per["own:" .. iv] = true
  end
  return per[iv]
end

return M
