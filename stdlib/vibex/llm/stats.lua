--- vibex.llm.stats — `vibex llm stats`: model calls per provider, model and
-- variant from the llm_calls table (the live counters are the
-- vibex_llm_* Prometheus metrics).
local M = {}

--- Rows {provider, model, variant, calls, ok, errors = {kind = n}, p50, p95,
-- p99, tokens_in, tokens_out, cost} | nil, err.
function M.summary(pool)
  local rows, err = pool:query([[
    SELECT provider, COALESCE(model, '') AS model, COALESCE(variant, '') AS variant, count(*) AS calls,
           count(*) FILTER (WHERE outcome = 'ok') AS ok,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE outcome = 'ok') AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE outcome = 'ok') AS p95,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE outcome = 'ok') AS p99,
           COALESCE(sum(tokens_in), 0) AS tokens_in, COALESCE(sum(tokens_out), 0) AS tokens_out,
           COALESCE(sum(cost), 0) AS cost
    FROM llm_calls GROUP BY 1, 2, 3 ORDER BY 1, 2, 3]])
  if not rows then return nil, err end
  local kinds, kerr = pool:query([[SELECT provider, COALESCE(model, '') AS model, COALESCE(variant, '') AS variant,
    outcome, count(*) AS n FROM llm_calls WHERE outcome <> 'ok' GROUP BY 1, 2, 3, 4]])
  if not kinds then return nil, kerr end
  local out = {}
  for _, r in ipairs(rows) do
    local e = {}
    for _, k in ipairs(kinds) do
      if k.provider == r.provider and k.model == r.model and k.variant == r.variant then e[k.outcome] = tonumber(k.n) end
    end
    out[#out + 1] = { provider = r.provider, model = r.model, variant = r.variant, calls = tonumber(r.calls),
                      ok = tonumber(r.ok), errors = e, p50 = tonumber(r.p50), p95 = tonumber(r.p95), p99 = tonumber(r.p99),
                      tokens_in = tonumber(r.tokens_in), tokens_out = tonumber(r.tokens_out), cost = tonumber(r.cost) }
  end
  return out
end

function M.text(rows)
  if #rows == 0 then return "no model calls recorded yet" end
  local lines = { ("%-12s %-22s %-12s %7s %7s %-30s %21s %15s %10s"):format("provider", "model", "variant", "calls", "ok",
    "errors", "latency p50/p95/p99", "tokens in/out", "cost") }
  for _, r in ipairs(rows) do
    local e = {}
    for k, n in pairs(r.errors) do e[#e + 1] = ("%s %d"):format(k, n) end
    table.sort(e)
    local function ms(x) return x and ("%.0f"):format(x) or "-" end
    lines[#lines + 1] = ("%-12s %-22s %-12s %7d %7d %-30s %21s %15s %10.4f"):format(r.provider, r.model:sub(1, 22),
      r.variant ~= "" and r.variant or "-", r.calls, r.ok, #e > 0 and table.concat(e, ", ") or "-",
      ("%s/%s/%s ms"):format(ms(r.p50), ms(r.p95), ms(r.p99)), ("%d/%d"):format(r.tokens_in, r.tokens_out), r.cost)
  end
  return table.concat(lines, "\n")
end

return M
