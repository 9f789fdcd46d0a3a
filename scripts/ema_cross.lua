-- scripts/ema_cross.lua — a rule-based strategy that needs no model: the
-- fallback when the model is away, and the whole strategy when none is
-- configured. It answers in the model's decision schema, so its decisions
-- go through the same validation, policy and risk gate.
--
-- decide(ctx, params): long when the fast EMA crosses above the slow one
-- on the short interval, short on the opposite cross, close on a cross
-- against the position. Stop at stop_atr x ATR14, target at target_atr x
-- ATR14. params: fast (12), slow (26) (the context computes these EMAs),
-- size_usd (200), leverage (2), stop_atr (2), target_atr (3), confidence (0.7).
local M = {}

local function decide_symbol(s, ctx, params)
  local f = s.short or {}
  local ef, es = f.ema_fast or {}, f.ema_slow or {}
  local price = s.price
  local hold = { symbol = s.symbol, action = "hold", confidence = 0.5, rationale = "no cross" }
  if #ef < 2 or #es < 2 or not price then return hold end
  local up = ef[1] <= es[1] and ef[2] > es[2]
  local down = ef[1] >= es[1] and ef[2] < es[2]
  local pos = ctx.positions and ctx.positions[s.symbol]
  local conf = params.confidence or 0.7
  if pos then
    if (pos.side == "long" and down) or (pos.side == "short" and up) then
      return { symbol = s.symbol, action = "close", confidence = conf, rationale = "EMA cross against the position" }
    end
    return hold
  end
  if not (up or down) then return hold end
  local atr = (f.now and f.now.atr14) or price * 0.01
  local stop, target = (params.stop_atr or 2) * atr, (params.target_atr or 3) * atr
  return {
    symbol = s.symbol, action = up and "open_long" or "open_short", size_usd = params.size_usd or 200,
    leverage = params.leverage or 2, confidence = conf,
    stop_loss = up and price - stop or price + stop, take_profit = up and price + target or price - target,
    invalidation = ("EMA%d crosses back %s EMA%d"):format(params.fast or 12, up and "below" or "above", params.slow or 26),
    rationale = ("EMA%d crossed %s EMA%d"):format(params.fast or 12, up and "above" or "below", params.slow or 26),
  }
end

function M.decide(ctx, params)
  params = params or {}
  local out = {}
  for _, s in ipairs(ctx.symbols) do out[#out + 1] = decide_symbol(s, ctx, params) end
  return { decisions = out }
end

return M
