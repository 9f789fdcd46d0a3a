-- scripts/prompt.lua — the messages sent to the model, rendered from the
-- context (scripts/context.lua). In the style of public LLM trading
-- competitions: every series oldest -> newest, the account, the open
-- positions with their exit plans, and a JSON answer asked for.
--
-- render(ctx, params) -> {{role = "system", content = …}, {role = "user", content = …}}
-- params.style ("balanced"), params.risk_per_trade_pct, params.notes: from
-- the strategy's params in the config.
local json = require "vibex.json"

local M = {}

local STYLE = {
  conservative = "You trade rarely and small. Only enter with a clear trend on both timeframes, "
    .. "keep leverage at 2x or less and always set a stop loss within 2 ATR.",
  balanced = "You trade trends and strong momentum, with leverage up to 3x and a stop loss on every position.",
  aggressive = "You look for momentum bursts and breakouts, use leverage up to the account's limit, "
    .. "and cut losers quickly with tight stops.",
}

local function list(t)
  -- a list of numbers (the usual case) in one call: table.concat writes
  -- numbers as tostring does, without a string per number
  local ok, s = pcall(table.concat, t or {}, ", ")
  if ok then return "[" .. s .. "]" end
  local out = {}
  for i, v in ipairs(t) do out[i] = tostring(v) end
  return "[" .. table.concat(out, ", ") .. "]"
end

local function num(v, d)
  if type(v) ~= "number" then return "n/a" end
  return (("%." .. (d or 4) .. "f"):format(v):gsub("0+$", ""):gsub("%.$", ""))
end

local function frame_text(f)
  if not f.close then return ("(%s: not enough history yet)\n"):format(f.interval) end
  return table.concat({
    ("%s series, oldest -> newest:"):format(f.interval),
    "close: " .. list(f.close),
    "EMA20: " .. list(f.ema20), "EMA50: " .. list(f.ema50),
    "MACD: " .. list(f.macd), "MACD signal: " .. list(f.macd_signal),
    "RSI7: " .. list(f.rsi7), "RSI14: " .. list(f.rsi14),
    "ATR3: " .. list(f.atr3), "ATR14: " .. list(f.atr14),
    "Bollinger upper: " .. list(f.bb_upper), "Bollinger lower: " .. list(f.bb_lower),
    "volume: " .. list(f.volume), "",
  }, "\n")
end

function M.render(ctx, params)
  params = params or {}
  local style = STYLE[params.style or "balanced"] or STYLE.balanced
  local system = table.concat({
    "You are a disciplined crypto perpetual-futures trader managing one account.",
    style,
    ("Risk at most %s%% of equity per trade. Never add to a losing position."):format(num(params.risk_per_trade_pct or 1, 2)),
    "Answer with one JSON object and nothing else, in exactly this form:",
    '{"decisions": [{"symbol": "BTCUSDT", "action": "open_long|open_short|close|hold|adjust", '
      .. '"size_usd": 250, "leverage": 2, "stop_loss": 0, "take_profit": 0, '
      .. '"invalidation": "what would prove this wrong", "confidence": 0.0, "rationale": "one or two sentences"}]}',
    "One decision per symbol. A stop loss is required to open; for a long it is below the price, for a short above.",
    "size_usd is the position's notional in USD; its margin (size_usd / leverage) must fit the available cash.",
    params.notes or "",
  }, "\n")
  local parts = {}
  local perf = ctx.performance or {}
  parts[#parts + 1] = ("It is cycle %d. Current total return: %s%%; Sharpe: %s; max drawdown: %s%%."):format(
    ctx.cycle or 0, num(perf.return_pct, 2), num(perf.sharpe, 2), num(perf.max_drawdown, 2))
  parts[#parts + 1] = "ALL OF THE PRICE AND SIGNAL DATA BELOW IS ORDERED: OLDEST -> NEWEST.\n"
  for _, s in ipairs(ctx.symbols) do
    parts[#parts + 1] = ("### %s"):format(s.symbol)
    local now = s.short and s.short.now or {}
    parts[#parts + 1] = ("current_price = %s, current_ema20 = %s, current_macd = %s, current_rsi7 = %s"):format(
      num(s.price, 6), num(now.ema20), num(now.macd), num(now.rsi7, 2))
    parts[#parts + 1] = ("mark_price = %s, funding_rate = %s"):format(num(s.mark_price, 6), num(s.funding_rate, 8))
    parts[#parts + 1] = frame_text(s.short or {})
    parts[#parts + 1] = frame_text(s.long or {})
  end
  local acc = ctx.account or {}
  parts[#parts + 1] = "### ACCOUNT"
  parts[#parts + 1] = ("account_value = %s, available_cash = %s, unrealized_pnl = %s"):format(
    num(acc.equity, 2), num(acc.available, 2), num(acc.unrealized_pnl, 2))
  local pos = {}
  for _, p in ipairs(acc.positions or {}) do
    pos[#pos + 1] = json.encode {
      symbol = p.symbol, side = p.side, quantity = p.qty, entry_price = p.entry_price, current_price = p.mark_price,
      unrealized_pnl = p.unrealized_pnl, leverage = p.leverage, liquidation_price = p.liquidation_price,
      exit_plan = p.exit_plan,
    }
  end
  parts[#parts + 1] = "open positions and their exit plans: " .. (#pos > 0 and table.concat(pos, "\n") or "none")
  parts[#parts + 1] = "\nDecide for each symbol. Answer in JSON."
  return {
    { role = "system", content = system },
    { role = "user", content = table.concat(parts, "\n") },
  }
end

return M
