-- scripts/context.lua — the market context a decision is made from.
--
-- build(input) returns a table the prompt script renders and the policy
-- and rules scripts read. input (from vibex.agent, read-only data):
--   now_ms, cycle, symbols, intervals ({short, long}), params,
--   account = {name, equity, wallet, available, unrealized_pnl,
--              positions = {{symbol, side, qty, entry_price, mark_price,
--                            unrealized_pnl, leverage, liquidation_price,
--                            notional, exit_plan}}},
--   candles(symbol, interval) -> vibex.ta candle series,
--   price(symbol), mark(symbol), funding(symbol), performance = {...}
-- The result carries positions = {SYMBOL = position} for the policy and rules scripts.
-- Series are "oldest -> newest" lists, the form LLM trading prompts use.
-- Edit freely: the file is reloaded when saved; a broken edit keeps the
-- running version and is logged with file and line.
local ta = require "vibex.ta"

local M = {}

local N = 10 -- values per series in the prompt

local function last(s, n, d)
  if not s then return {} end
  return s:last(n or N, d or 4)
end

local function lastv(s)
  if not s then return nil end
  local v = s:lastv()
  if v ~= v then return nil end
  return v
end

-- Indicators over one interval's candles; too little history gives
-- empty series rather than an error. c:stream(name, …) keeps each one up
-- to date (the candles closed since the last cycle are added, the forming
-- one peeked at), so a cycle costs the same whatever the window; ta.ema(close,
-- 20) recomputes over the whole buffer and gives the same values.
local function frame(c, interval, params)
  if not c or c:len() < 2 then return { interval = interval, candles = c and c:len() or 0 } end
  local close = c:column("c")
  local ema20, ema50 = c:stream("ema", 20), c:stream("ema", 50)
  -- the strategy's own pair of EMAs (params.fast / params.slow), for rule-based policies
  local efast, eslow = c:stream("ema", params.fast or 12), c:stream("ema", params.slow or 26)
  local macd = c:stream("macd")
  local rsi7, rsi14 = c:stream("rsi", 7), c:stream("rsi", 14)
  local atr3, atr14 = c:stream("atr", 3), c:stream("atr", 14)
  local bb = c:stream("bbands", 20)
  return {
    interval = interval, candles = c:len(),
    close = last(close), volume = last(c:column("v"), N, 2),
    ema20 = last(ema20), ema50 = last(ema50), ema_fast = last(efast, 2, 8), ema_slow = last(eslow, 2, 8),
    macd = macd and last(macd.macd) or {}, macd_signal = macd and last(macd.signal) or {},
    rsi7 = last(rsi7, N, 2), rsi14 = last(rsi14, N, 2),
    atr3 = last(atr3), atr14 = last(atr14),
    bb_upper = bb and last(bb.upper) or {}, bb_lower = bb and last(bb.lower) or {},
    now = {
      ema20 = lastv(ema20), ema50 = lastv(ema50), macd = macd and lastv(macd.macd), rsi7 = lastv(rsi7),
      rsi14 = lastv(rsi14), atr3 = lastv(atr3), atr14 = lastv(atr14),
      volume = lastv(c:column("v")),
    },
  }
end

function M.build(input)
  local short, long = input.intervals[1], input.intervals[2] or input.intervals[1]
  local symbols = {}
  for _, sym in ipairs(input.symbols) do
    local s = frame(input.candles(sym, short), short, input.params)
    local l = frame(input.candles(sym, long), long, input.params)
    symbols[#symbols + 1] = {
      symbol = sym, price = input.price(sym), mark_price = input.mark(sym), funding_rate = input.funding(sym),
      rsi14 = s.now and s.now.rsi14, short = s, long = l,
    }
  end
  local positions = {} -- by symbol, for the policy and rules scripts
  for _, p in ipairs(input.account.positions or {}) do positions[p.symbol] = p end
  return {
    now_ms = input.now_ms, cycle = input.cycle, symbols = symbols, account = input.account, positions = positions,
    performance = input.performance, params = input.params,
  }
end

return M
