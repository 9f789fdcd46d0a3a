--- vibex.ab.report — outcomes per variant of an experiment, from the
-- database's raw rows, with confidence intervals and a plain verdict.
--
--   local r = report.build(pool, "prompt-test")       -- latest version (o.version for another)
--   print(report.text(r)); report.csv(r); json.encode(report.data(r)); report.svg(r)
--
-- Per cycle, the return is the change of the account's equity from this
-- cycle to its next (what the decision made at this cycle led to: PnL,
-- fees, funding, marked at the next cycle), attributed to the cycle's
-- variant. Means get a 95% circular block bootstrap interval (2,000
-- resamples of blocks of ~n^(1/3) cycles, seeded, so a report reads the
-- same twice); the leader and the runner-up are compared
-- by bootstrapping the difference of their means (the validity metric uses
-- a two-proportion z-test). Realized PnL and fees come from fills, through
-- their order to the decision that placed it; funding goes to the variant
-- of the account's latest decision before it was paid.
local ab = require "vibex.ab"

local M = {}

local function num(x) return tonumber(x) or 0 end

local function mean(xs)
  if #xs == 0 then return nil end
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  return s / #xs
end

local function sd(xs)
  if #xs < 2 then return nil end
  local m, s = mean(xs), 0
  for _, x in ipairs(xs) do s = s + (x - m) ^ 2 end
  return math.sqrt(s / (#xs - 1))
end

local function percentile(xs, p)
  if #xs == 0 then return nil end
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  local k = math.max(1, math.min(#s, math.ceil(#s * p)))
  return s[k]
end
M.percentile = percentile

local RESAMPLES = 2000

-- Cycle returns are not independent: a position held over several cycles
-- ties them together. Resampling whole blocks of consecutive cycles
-- (circular block bootstrap, blocks of about n^(1/3)) keeps that, so the
-- intervals are not narrower than the data allows.
local function block_len(n) return math.max(1, math.floor(n ^ (1 / 3) + 0.5)) end

local function resample_mean(xs, r)
  local n, L = #xs, block_len(#xs)
  local s, k = 0, 0
  while k < n do
    local start = math.floor(r() * n)
    for j = 0, L - 1 do
      if k >= n then break end
      s = s + xs[(start + j) % n + 1]
      k = k + 1
    end
  end
  return s / n
end
M.block_len = block_len

--- 95% bootstrap interval of the mean of xs, seeded by `seed`.
function M.bootstrap(xs, seed)
  if #xs < 2 then return nil end
  local r = ab.stream(seed)
  local means = {}
  for b = 1, RESAMPLES do means[b] = resample_mean(xs, r) end
  return { percentile(means, 0.025), percentile(means, 0.975) }
end

--- 95% bootstrap interval of mean(a) - mean(b).
function M.bootstrap_diff(a, b, seed)
  if #a < 2 or #b < 2 then return nil end
  local r = ab.stream(seed)
  local d = {}
  for k = 1, RESAMPLES do d[k] = resample_mean(a, r) - resample_mean(b, r) end
  return { percentile(d, 0.025), percentile(d, 0.975) }
end

local function max_drawdown(curve)
  local peak, dd = nil, 0
  for _, e in ipairs(curve) do
    if not peak or e > peak then peak = e end
    if peak > 0 and (peak - e) / peak > dd then dd = (peak - e) / peak end
  end
  return dd * 100
end

-- ---- gathering -----------------------------------------------------------------------------------

local function experiment_row(pool, name, version)
  local rows, err
  if version then
    rows, err = pool:query("SELECT * FROM experiments WHERE name = $1 AND version = $2", name, version)
  else
    rows, err = pool:query("SELECT * FROM experiments WHERE name = $1 ORDER BY version DESC LIMIT 1", name)
  end
  if not rows then return nil, err end
  if not rows[1] then return nil, ("no experiment named %q%s in the database"):format(name, version and (" with version " .. version) or "") end
  return rows[1]
end

--- The experiments the database knows: {{name, versions, latest}}.
function M.list(pool)
  return pool:query([[SELECT name, count(*) AS versions, max(version) AS latest, max(created_at) AS updated
    FROM experiments GROUP BY name ORDER BY name]])
end

local function by_variant(rows, key)
  local out = {}
  for _, r in ipairs(rows or {}) do out[r.variant] = key and r[key] or r end
  return out
end

--- Everything the report shows, computed from raw rows. Returns the
-- report table | nil, err.
function M.build(pool, name, o)
  o = o or {}
  local e, err = experiment_row(pool, name, o.version)
  if not e then return nil, err end
  local def = require("vibex.json").decode(e.definition)
  local cycles, cerr = pool:query([[
    SELECT d.decision_id, a.name AS account, d.variant, d.cycle_key, extract(epoch FROM d.started_at) * 1000 AS t,
           d.equity, d.valid, d.validation->>'repaired' AS repaired, d.parsed->>'source' AS source,
           d.tokens_in, d.tokens_out, d.cost
    FROM decisions d JOIN accounts a USING (account_id)
    WHERE d.experiment = $1 AND d.experiment_version = $2
    ORDER BY a.name, d.started_at, d.decision_id]], name, e.version)
  if not cycles then return nil, cerr end
  local variants, order = {}, {}
  for _, v in ipairs(def.variants) do
    variants[v.name] = { name = v.name, returns = {}, pnl = 0, cycles = 0, valid = 0, invalid = 0, repaired = 0,
                         model_cycles = 0, tokens_in = 0, tokens_out = 0, cost = 0, curve = {}, accounts = {} }
    order[#order + 1] = v.name
  end
  -- per-cycle returns: this cycle's equity to the account's next
  local prev, intervals = nil, {}
  for _, c in ipairs(cycles) do
    local v = variants[c.variant]
    if v then
      v.cycles = v.cycles + 1
      v.accounts[c.account] = true
      if c.source == "model" then
        v.model_cycles = v.model_cycles + 1
        if c.valid == true then v.valid = v.valid + 1 elseif c.valid == false then v.invalid = v.invalid + 1 end
        if c.repaired == "true" then v.repaired = v.repaired + 1 end
      end
      v.tokens_in, v.tokens_out, v.cost = v.tokens_in + num(c.tokens_in), v.tokens_out + num(c.tokens_out), v.cost + num(c.cost)
    end
    if prev and prev.account == c.account and prev.equity and c.equity then
      local pv = variants[prev.variant]
      local e0, e1 = num(prev.equity), num(c.equity)
      if pv and e0 > 0 then
        pv.returns[#pv.returns + 1] = e1 / e0 - 1
        pv.pnl = pv.pnl + (e1 - e0)
        intervals[#intervals + 1] = num(c.t) - num(prev.t)
      end
    end
    if v and c.equity then v.curve[#v.curve + 1] = { t = num(c.t), equity = num(c.equity), account = c.account } end
    prev = c
  end
  local period_ms = percentile(intervals, 0.5)
  local q = function(sql) return pool:query(sql, name, e.version) end
  local fills = by_variant(q([[
    SELECT d.variant, sum(f.realized_pnl) AS realized, sum(f.fee) AS fees,
           count(*) FILTER (WHERE f.realized_pnl > 0) AS wins, count(*) FILTER (WHERE f.realized_pnl < 0) AS losses
    FROM fills f JOIN orders o ON o.order_id = f.order_id JOIN decisions d ON d.decision_id = o.decision_id
    WHERE d.experiment = $1 AND d.experiment_version = $2 GROUP BY d.variant]]))
  local funding = by_variant(q([[
    SELECT d.variant, sum(p.amount) AS funding FROM funding_payments p
    JOIN LATERAL (SELECT variant FROM decisions d WHERE d.account_id = p.account_id AND d.started_at <= p.paid_at
                    AND d.experiment = $1 AND d.experiment_version = $2
                  ORDER BY d.started_at DESC LIMIT 1) d ON true
    GROUP BY d.variant]]), "funding")
  local refusals = by_variant(q([[
    SELECT d.variant, count(*) AS n FROM risk_refusals r JOIN decisions d ON d.decision_id = r.decision_id
    WHERE d.experiment = $1 AND d.experiment_version = $2 GROUP BY d.variant]]), "n")
  local calls = q([[
    SELECT d.variant, c.latency_ms, c.outcome FROM llm_calls c JOIN decisions d ON d.decision_id = c.decision_id
    WHERE d.experiment = $1 AND d.experiment_version = $2]]) or {}
  local unreal = {}
  if def.unit == "account" then
    local rows = q([[
      SELECT d.variant, s.unrealized_pnl FROM (SELECT DISTINCT ON (account_id) account_id, variant FROM decisions
        WHERE experiment = $1 AND experiment_version = $2 ORDER BY account_id, started_at DESC) d
      JOIN LATERAL (SELECT unrealized_pnl FROM account_snapshots s WHERE s.account_id = d.account_id
                    ORDER BY account_snapshot_id DESC LIMIT 1) s ON true]]) or {}
    for _, r in ipairs(rows) do unreal[r.variant] = (unreal[r.variant] or 0) + num(r.unrealized_pnl) end
  end
  local lat = {}
  for _, c in ipairs(calls) do
    lat[c.variant] = lat[c.variant] or {}
    if c.outcome == "ok" then table.insert(lat[c.variant], num(c.latency_ms)) end
  end
  local out = { experiment = name, version = e.version, hash = e.hash, unit = def.unit, split = def.split,
                metric = o.metric or "return_per_cycle", period_ms = period_ms, variants = {} }
  for _, vname in ipairs(order) do
    local v = variants[vname]
    local f = fills[vname] or {}
    local m, s = mean(v.returns), sd(v.returns)
    local row = {
      name = vname, cycles = v.cycles, returns_n = #v.returns, mean_return = m,
      ci = M.bootstrap(v.returns, name .. "/" .. vname), sharpe = (m and s and s > 0 and period_ms and period_ms > 0)
        and m / s * math.sqrt(365 * 86400000 / period_ms) or nil,
      pnl = v.pnl, realized = num(f.realized), unrealized = def.unit == "account" and (unreal[vname] or 0) or nil,
      fees = num(f.fees), funding = num(funding[vname]), wins = num(f.wins), losses = num(f.losses),
      win_rate = (num(f.wins) + num(f.losses)) > 0 and num(f.wins) / (num(f.wins) + num(f.losses)) or nil,
      model_cycles = v.model_cycles, valid = v.valid, invalid = v.invalid, repaired = v.repaired,
      validity = (v.valid + v.invalid) > 0 and v.valid / (v.valid + v.invalid) or nil,
      refusals = num(refusals[vname]), latency_p50 = percentile(lat[vname] or {}, 0.5),
      latency_p90 = percentile(lat[vname] or {}, 0.9), latency_p99 = percentile(lat[vname] or {}, 0.99),
      tokens_in = v.tokens_in, tokens_out = v.tokens_out, cost = v.cost, accounts = {},
    }
    row.cost_per_pnl = (v.pnl ~= 0 and v.cost > 0) and v.cost / v.pnl or nil
    row._returns = v.returns
    -- the equity curve: the account's own (unit account), or the variant's returns compounded
    local curve = {}
    if def.unit == "account" then
      for _, p in ipairs(v.curve) do curve[#curve + 1] = { p.t, p.equity } end
    else
      local eq = 1
      curve[1] = { 0, 1 }
      for i, r in ipairs(v.returns) do eq = eq * (1 + r); curve[#curve + 1] = { i, eq } end
    end
    row.curve = curve
    local ys = {}
    for i, p in ipairs(curve) do ys[i] = p[2] end
    row.max_drawdown = max_drawdown(ys)
    for acc in pairs(v.accounts) do row.accounts[#row.accounts + 1] = acc end
    table.sort(row.accounts)
    out.variants[#out.variants + 1] = row
  end
  M.verdict(out)
  return out
end

local METRIC = {
  return_per_cycle = function(v) return v.mean_return end,
  sharpe = function(v) return v.sharpe end,
  pnl = function(v) return v.pnl end,
  validity = function(v) return v.validity end,
}

--- Rank by the metric and say whether the leader's lead is significant.
function M.verdict(r)
  local metric = METRIC[r.metric] or METRIC.return_per_cycle
  local ranked = {}
  for _, v in ipairs(r.variants) do ranked[#ranked + 1] = v end
  table.sort(ranked, function(a, b)
    local x, y = metric(a), metric(b)
    if x == nil then return false end
    if y == nil then return true end
    if x ~= y then return x > y end
    return a.name < b.name
  end)
  r.ranking = {}
  for i, v in ipairs(ranked) do r.ranking[i] = v.name; v.rank = i end
  local a, b = ranked[1], ranked[2]
  if not a or not b or metric(a) == nil or metric(b) == nil then
    r.significant = false
    r.statement = "not enough data to compare variants yet"
    return
  end
  if r.metric == "validity" then
    local n1, n2 = a.valid + a.invalid, b.valid + b.invalid
    local p = (a.valid + b.valid) / (n1 + n2)
    local se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    local z = se > 0 and (a.validity - b.validity) / se or 0
    r.significant = z > 1.96
    r.diff = a.validity - b.validity
    r.statement = ("%s leads %s on validity by %.1f points (z = %.2f, %d and %d answers): %s")
      :format(a.name, b.name, r.diff * 100, z, n1, n2, r.significant and "significant at 95%" or "not significant yet")
    return
  end
  local ra, rb = a._returns, b._returns
  local ci = M.bootstrap_diff(ra, rb, r.experiment .. "/diff")
  r.diff, r.diff_ci = (mean(ra) or 0) - (mean(rb) or 0), ci
  r.significant = ci ~= nil and (ci[1] > 0 or ci[2] < 0)
  local n = #ra + #rb
  r.statement = ("%s leads %s by %+.4f%% return per cycle (95%% CI %s; %d cycles behind it): %s"):format(a.name, b.name,
    r.diff * 100, ci and ("[%+.4f%%, %+.4f%%]"):format(ci[1] * 100, ci[2] * 100) or "n/a", n,
    r.significant and "the difference is significant" or "not significant yet; keep it running")
end

-- ---- output ----------------------------------------------------------------------------------------

local function pct(x, d) return x and ("%+." .. (d or 4) .. "f%%"):format(x * 100) or "-" end
local function f(x, d) return x and ("%." .. (d or 2) .. "f"):format(x) or "-" end

function M.text(r)
  local lines = {}
  local function add(s) lines[#lines + 1] = s end
  add(("experiment %s, version %d (unit %s, split %s, metric %s)"):format(r.experiment, r.version, r.unit, r.split, r.metric))
  add("")
  add(("%-4s %-14s %6s %-34s %7s %7s %10s %10s %10s %8s %8s %5s %7s %5s %5s %15s %13s %9s %9s"):format("rank", "variant",
    "cycles", "return/cycle (95% CI)", "sharpe", "maxDD%", "pnl", "realized", "unreal.", "fees", "funding", "win%",
    "valid%", "rep.", "ref.", "latency p50/p99", "tokens in/out", "cost", "cost/pnl"))
  for _, v in ipairs(r.variants) do
    add(("%-4s %-14s %6d %-34s %7s %7s %10s %10s %10s %8s %8s %5s %7s %5d %5d %15s %13s %9s %9s"):format(
      tostring(v.rank or "-"), v.name, v.cycles,
      ("%s %s"):format(pct(v.mean_return), v.ci and ("[%s, %s]"):format(pct(v.ci[1]), pct(v.ci[2])) or ""),
      f(v.sharpe), f(v.max_drawdown), f(v.pnl), f(v.realized), f(v.unrealized), f(v.fees), f(v.funding),
      v.win_rate and ("%.0f"):format(v.win_rate * 100) or "-", v.validity and ("%.1f"):format(v.validity * 100) or "-",
      v.repaired, v.refusals, ("%s/%s ms"):format(f(v.latency_p50, 0), f(v.latency_p99, 0)),
      ("%d/%d"):format(v.tokens_in, v.tokens_out), f(v.cost, 4), f(v.cost_per_pnl, 4)))
  end
  add("")
  add(r.statement)
  return table.concat(lines, "\n")
end

local CSV_FIELDS = { "rank", "name", "cycles", "mean_return", "ci_low", "ci_high", "sharpe", "max_drawdown", "pnl", "realized",
                     "unrealized", "fees", "funding", "win_rate", "validity", "valid", "invalid", "repaired", "refusals",
                     "latency_p50", "latency_p90", "latency_p99", "tokens_in", "tokens_out", "cost", "cost_per_pnl" }

function M.csv(r)
  local lines = { "experiment,version," .. table.concat(CSV_FIELDS, ",") }
  for _, v in ipairs(r.variants) do
    local cells = { r.experiment, tostring(r.version) }
    for _, k in ipairs(CSV_FIELDS) do
      local x
      if k == "ci_low" then x = v.ci and v.ci[1] elseif k == "ci_high" then x = v.ci and v.ci[2] else x = v[k] end
      cells[#cells + 1] = x == nil and "" or (type(x) == "number" and ("%.10g"):format(x) or tostring(x))
    end
    lines[#lines + 1] = table.concat(cells, ",")
  end
  return table.concat(lines, "\n") .. "\n"
end

--- The report as plain data (for --json), without the curves.
function M.data(r)
  local out = { experiment = r.experiment, version = r.version, unit = r.unit, split = r.split, metric = r.metric,
                ranking = r.ranking, significant = r.significant, statement = r.statement, diff = r.diff,
                diff_ci = r.diff_ci, variants = {} }
  for _, v in ipairs(r.variants) do
    local c = {}
    for k, x in pairs(v) do if k ~= "curve" and k:sub(1, 1) ~= "_" then c[k] = x end end
    out.variants[#out.variants + 1] = c
  end
  return out
end

-- ---- the chart ---------------------------------------------------------------------------------------

local COLORS = { "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f" }

local function esc(s) return (tostring(s):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"):gsub('"', "&quot;")) end

--- An SVG of the equity curve per variant (the account's equity for unit
-- "account", the compounded per-cycle returns otherwise).
function M.svg(r, o)
  o = o or {}
  local W, H, L, R, T, B = o.width or 900, o.height or 480, 70, 170, 40, 50
  local x0, x1, y0, y1
  for _, v in ipairs(r.variants) do
    for _, p in ipairs(v.curve) do
      x0, x1 = math.min(x0 or p[1], p[1]), math.max(x1 or p[1], p[1])
      y0, y1 = math.min(y0 or p[2], p[2]), math.max(y1 or p[2], p[2])
    end
  end
  if not x0 then x0, x1, y0, y1 = 0, 1, 0, 1 end
  if x1 == x0 then x1 = x0 + 1 end
  if y1 == y0 then y1, y0 = y0 + 1, y0 - 1 end
  local pad = (y1 - y0) * 0.05
  y0, y1 = y0 - pad, y1 + pad
  local function sx(x) return L + (x - x0) / (x1 - x0) * (W - L - R) end
  local function sy(y) return H - B - (y - y0) / (y1 - y0) * (H - T - B) end
  local out = {}
  local function add(s) out[#out + 1] = s end
  add(('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">')
    :format(W, H, W, H))
  add(('<rect width="%d" height="%d" fill="white"/>'):format(W, H))
  add(('<text x="%d" y="22" font-size="15">%s</text>'):format(L, esc(("%s v%d: %s by variant"):format(r.experiment, r.version,
    r.unit == "account" and "equity" or "compounded return per cycle"))))
  add(('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>'):format(L, H - B, W - R, H - B))
  add(('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>'):format(L, T, L, H - B))
  for k = 0, 4 do
    local y = y0 + (y1 - y0) * k / 4
    add(('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>'):format(L, sy(y), W - R, sy(y)))
    add(('<text x="%d" y="%.1f" text-anchor="end">%s</text>'):format(L - 6, sy(y) + 4, esc(("%.6g"):format(y))))
  end
  add(('<text x="%d" y="%d" text-anchor="middle">%s</text>'):format((L + W - R) / 2, H - 15,
    r.unit == "account" and "time (UTC)" or "cycles of the variant"))
  for i, v in ipairs(r.variants) do
    local color = COLORS[(i - 1) % #COLORS + 1]
    local pts = {}
    for _, p in ipairs(v.curve) do pts[#pts + 1] = ("%.1f,%.1f"):format(sx(p[1]), sy(p[2])) end
    if #pts > 0 then
      add(('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"><title>%s</title></polyline>')
        :format(color, table.concat(pts, " "), esc(v.name)))
    end
    local ly = T + 10 + (i - 1) * 20
    add(('<rect x="%d" y="%d" width="14" height="4" fill="%s"/>'):format(W - R + 15, ly - 4, color))
    add(('<text x="%d" y="%d">%s</text>'):format(W - R + 35, ly + 2, esc(("%s (%s)"):format(v.name, pct(v.mean_return, 3)))))
  end
  add("</svg>")
  return table.concat(out, "\n") .. "\n"
end

return M
