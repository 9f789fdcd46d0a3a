-- scripts/policy.lua — validated decisions -> order intents.
--
-- plan(decisions, ctx, params) returns a list of intents (see
-- vibex.agent.execute): open / close / protect / cancel. Decisions arrive
-- already validated (known symbol and action, stops on the right side,
-- size within the free margin); whatever this returns still passes the
-- risk gate before anything reaches the exchange.
--
-- params.max_size_usd caps one entry's notional; params.default_leverage
-- is used when a decision gives none.
local M = {}

function M.plan(decisions, ctx, params)
  params = params or {}
  local intents = {}
  for i, d in ipairs(decisions) do
    local pos = ctx.positions and ctx.positions[d.symbol]
    if d.action == "open_long" or d.action == "open_short" then
      local side = d.action == "open_long" and "long" or "short"
      if pos and pos.side ~= side then
        -- reversing: close first; the new side is decided on a later cycle
        intents[#intents + 1] = { action = "close", symbol = d.symbol }
      else
        local size = d.size_usd
        if size and params.max_size_usd then size = math.min(size, params.max_size_usd) end
        intents[#intents + 1] = {
          action = "open", symbol = d.symbol, side = side, size_usd = size, quantity = not size and d.quantity or nil,
          leverage = d.leverage or params.default_leverage or 1, stop_loss = d.stop_loss, take_profit = d.take_profit,
          confidence = d.confidence, invalidation = d.invalidation, decision = i,
        }
      end
    elseif d.action == "close" then
      if pos then intents[#intents + 1] = { action = "close", symbol = d.symbol } end
    elseif d.action == "adjust" then
      if pos then
        intents[#intents + 1] = { action = "protect", symbol = d.symbol,
                                  stop_loss = d.stop_loss or (pos.exit_plan and pos.exit_plan.stop_loss),
                                  take_profit = d.take_profit or (pos.exit_plan and pos.exit_plan.take_profit) }
      end
    end
  end
  return intents
end

return M
