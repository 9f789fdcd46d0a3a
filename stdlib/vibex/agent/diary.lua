--- vibex.agent.diary — the diary entry the agent writes after every cycle:
-- what it saw, what it decided and why, what the gate and the venue did,
-- and what became of earlier decisions.
local M = {}

local function fmt(x, d)
  if type(x) ~= "number" then return tostring(x) end
  return (("%." .. (d or 2) .. "f"):format(x))
end

local function saw(rec, view)
  local parts = {}
  local ctx = rec.context or {}
  for _, s in ipairs(ctx.symbols or {}) do
    if type(s) == "table" and s.symbol then
      local extra = s.rsi14 and (" RSI14 " .. fmt(s.rsi14, 1)) or ""
      parts[#parts + 1] = ("%s %s%s"):format(s.symbol, tostring(s.price), extra)
    end
  end
  local line = #parts > 0 and ("Saw: " .. table.concat(parts, "; ") .. ".") or "Saw: no market context."
  if view then
    line = line .. (" Equity %s USDT, free %s, %d open position%s."):format(fmt(view.equity), fmt(view.available),
      #view.list, #view.list == 1 and "" or "s")
  end
  return line
end

local function decided(rec)
  local out = {}
  for _, d in ipairs(rec.decisions or {}) do
    if d.action ~= "hold" then
      local size = d.size_usd and (fmt(d.size_usd) .. " USD") or d.quantity and (tostring(d.quantity) .. " units") or ""
      out[#out + 1] = ("%s %s %s%s%s%s (confidence %s)%s"):format(d.action, d.symbol, size,
        d.leverage and (" at " .. fmt(d.leverage, 1) .. "x") or "", d.stop_loss and (", stop " .. tostring(d.stop_loss)) or "",
        d.take_profit and (", target " .. tostring(d.take_profit)) or "", d.confidence and fmt(d.confidence) or "-",
        d.rationale and (": " .. d.rationale:sub(1, 300)) or "")
    end
  end
  if #out == 0 then return "Decided: hold." end
  return "Decided: " .. table.concat(out, "; ") .. "."
end

--- The entry's body and tags.
function M.entry(a, _, rec, view)
  local lines = {}
  local source = rec.source == "model" and ("model " .. tostring(rec.model))
    or rec.source == "fallback" and ("fallback (" .. tostring(rec.validation.fallback and rec.validation.fallback.reason) .. ")")
    or rec.source
  lines[#lines + 1] = ("Cycle %d, %s, decisions from %s."):format(rec.cycle, rec.cycle_key, source)
  for _, n in ipairs(a.pending_notes) do lines[#lines + 1] = n end
  if rec.realized then
    local r = {}
    for sym, x in pairs(rec.realized) do
      local plan = x.plan
      r[#r + 1] = ("%s realized %+.2f (fees %.2f)%s"):format(sym, x.pnl, x.fees,
        plan and plan.opened and (", the position opened at " .. plan.opened
          .. (plan.stop_loss and (" with stop " .. tostring(plan.stop_loss)) or "")
          .. (plan.take_profit and (" and target " .. tostring(plan.take_profit)) or "")) or "")
    end
    table.sort(r)
    lines[#lines + 1] = "Since the last cycle: " .. table.concat(r, "; ") .. "."
  end
  lines[#lines + 1] = saw(rec, view)
  lines[#lines + 1] = decided(rec)
  local tags = { "cycle", rec.source }
  if #rec.validation.rejected > 0 then
    local r = {}
    for _, x in ipairs(rec.validation.rejected) do r[#r + 1] = (x.symbol and (x.symbol .. ": ") or "") .. tostring(x.reason) end
    lines[#lines + 1] = "Rejected from the answer: " .. table.concat(r, "; ") .. "."
    tags[#tags + 1] = "rejected"
  end
  if rec.validation.repaired then lines[#lines + 1] = "The answer was usable only after one repair round-trip." end
  if #rec.validation.refusals > 0 then
    local r = {}
    for _, x in ipairs(rec.validation.refusals) do r[#r + 1] = ("%s %s (%s: %s)"):format(x.kind or "intent", x.symbol or "", x.rule, x.message) end
    lines[#lines + 1] = "Risk gate refused: " .. table.concat(r, "; ") .. "."
    tags[#tags + 1] = "refused"
  end
  if #rec.orders > 0 then
    local r = {}
    for _, o in ipairs(rec.orders) do
      r[#r + 1] = ("%s %s %s%s → %s"):format(o.kind, o.side or "", o.symbol, o.qty and (" " .. tostring(o.qty)) or "", o.status)
    end
    lines[#lines + 1] = "Executed: " .. table.concat(r, "; ") .. "."
  end
  if view and #view.list > 0 then
    local r = {}
    for _, p in ipairs(view.list) do
      local plan = p.exit_plan
      r[#r + 1] = ("%s %s %s from %s, PnL %s%s"):format(p.symbol, p.side, tostring(p.qty), fmt(p.entry_price, 4),
        fmt(p.unrealized_pnl), plan and plan.stop_loss and (", stop " .. tostring(plan.stop_loss)) or "")
    end
    lines[#lines + 1] = "Open positions: " .. table.concat(r, "; ") .. "."
  end
  local s = rec.performance
  if s then
    lines[#lines + 1] = ("So far: return %s%%, max drawdown %s%%, %d closing trade%s%s, fees %s, funding %s.")
      :format(fmt(s.return_pct), fmt(s.max_drawdown), s.trades, s.trades == 1 and "" or "s", s.win_rate and (", win rate " .. fmt(s.win_rate * 100, 0) .. "%") or "",
        fmt(s.fees), fmt(s.funding))
  end
  if rec.error then lines[#lines + 1] = "Error: " .. rec.error; tags[#tags + 1] = "error" end
  if rec.fallback_event then tags[#tags + 1] = "fallback_" .. rec.fallback_event end
  return table.concat(lines, "\n"), tags
end

return M
