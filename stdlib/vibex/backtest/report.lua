--- vibex.backtest.report — a backtest's numbers, as quants read them, and
-- the files they are written to.
--
--   local r = report.build(collector, {from_ms, to_ms, interval, accounts = {name = {starting_balance}}, …})
--   io.write(report.text(r))
--   report.write(r, collector, dir, o)  -- report.json, trades.csv, fills.csv, equity.csv, report.html
--
-- Per account and per symbol: trades, win rate, average and total profit,
-- average duration, exit reasons (signal, stop, target, liquidation),
-- fees, funding, the maximum drawdown and its dates, Sharpe, Sortino and
-- Calmar annualised from the real time the cycles span, exposure, the
-- decisions taken, held, rejected by validation and refused by the gate
-- (with the reasons counted), model calls, tokens and cost.
local json = require "vibex.json"
local time = require "vibex.time"

local M = {}

local YEAR_MS = 365 * 86400000
local fmt = string.format

local function iso(ms) return ms and time.iso(ms) or nil end

-- Returns per cycle → Sharpe, Sortino (annualised with the cycles' real spacing).
local function ratios(t, eq)
  local n = #eq
  if n < 3 then return nil, nil end
  local sum, sum2, down2, k = 0, 0, 0, 0
  for i = 2, n do
    if eq[i - 1] > 0 then
      local r = eq[i] / eq[i - 1] - 1
      sum, sum2, k = sum + r, sum2 + r * r, k + 1
      if r < 0 then down2 = down2 + r * r end
    end
  end
  if k < 2 then return nil, nil end
  local mean = sum / k
  local var = (sum2 - k * mean * mean) / (k - 1)
  local period = (t[n] - t[1]) / (n - 1)
  if period <= 0 then return nil, nil end
  local scale = math.sqrt(YEAR_MS / period)
  local sd, dd = math.sqrt(math.max(var, 0)), math.sqrt(down2 / k)
  return sd > 0 and mean / sd * scale or nil, dd > 0 and mean / dd * scale or nil
end

-- The deepest fall from a peak: fraction, amount, and when it peaked,
-- bottomed and recovered (nil: not yet).
local function drawdown(t, eq)
  local peak, peak_i, best = -math.huge, 1, { pct = 0, amount = 0 }
  for i = 1, #eq do
    if eq[i] > peak then peak, peak_i = eq[i], i end
    local dd = peak > 0 and (peak - eq[i]) / peak or 0
    if dd > best.pct then best = { pct = dd, amount = peak - eq[i], peak_i = peak_i, trough_i = i } end
  end
  if best.trough_i then
    best.peak_ms, best.trough_ms = t[best.peak_i], t[best.trough_i]
    local top = eq[best.peak_i]
    for i = best.trough_i + 1, #eq do
      if eq[i] >= top then best.recovered_ms = t[i]; break end
    end
  end
  best.peak_i, best.trough_i = nil, nil
  return best
end

local function trade_stats(trades)
  local s = { trades = #trades, wins = 0, losses = 0, net = 0, gross = 0, fees = 0, funding = 0, duration_ms = 0,
              reasons = { signal = 0, stop = 0, target = 0, liquidation = 0 }, best = nil, worst = nil }
  local won, lost = 0, 0
  for _, tr in ipairs(trades) do
    s.net, s.gross, s.fees, s.funding = s.net + tr.net, s.gross + tr.pnl, s.fees + tr.fees, s.funding + tr.funding
    s.duration_ms = s.duration_ms + (tr.closed_ms - tr.opened_ms)
    s.reasons[tr.reason] = (s.reasons[tr.reason] or 0) + 1
    if tr.net > 0 then s.wins, won = s.wins + 1, won + tr.net elseif tr.net < 0 then s.losses, lost = s.losses + 1, lost - tr.net end
    if not s.best or tr.net > s.best then s.best = tr.net end
    if not s.worst or tr.net < s.worst then s.worst = tr.net end
  end
  if #trades > 0 then
    s.win_rate = s.wins / #trades
    s.avg_profit = s.net / #trades
    s.avg_duration_ms = s.duration_ms / #trades
    s.profit_factor = lost > 0 and won / lost or nil
  end
  s.duration_ms = nil
  return s
end

local function sorted_counts(t)
  local out = {}
  for k, n in pairs(t) do out[#out + 1] = { reason = k, count = n } end
  table.sort(out, function(a, b) return a.count > b.count or (a.count == b.count and a.reason < b.reason) end)
  return out
end

--- The report of one account.
local function account_report(a, o)
  local start = o.starting_balance or a.equity[1] or 0
  local final = a.equity[#a.equity] or start
  local sharpe, sortino = ratios(a.t, a.equity)
  local dd = drawdown(a.t, a.equity)
  local span = (o.to_ms or 0) - (o.from_ms or 0)
  local years = span > 0 and span / YEAR_MS or nil
  local cagr = (years and start > 0 and final > 0) and ((final / start) ^ (1 / years) - 1) or nil
  local r = {
    account = a.name, starting_equity = start, final_equity = final, pnl = final - start,
    return_pct = start > 0 and (final / start - 1) * 100 or 0, annual_return_pct = cagr and cagr * 100,
    sharpe = sharpe, sortino = sortino, calmar = (cagr and dd.pct > 0) and cagr / dd.pct or nil,
    max_drawdown_pct = dd.pct * 100, max_drawdown = dd.amount, max_drawdown_peak = iso(dd.peak_ms),
    max_drawdown_trough = iso(dd.trough_ms), max_drawdown_recovered = iso(dd.recovered_ms),
    exposure_pct = a.cycles > 0 and a.exposed / a.cycles * 100 or 0,
    fees = a.fees, funding = a.funding, liquidations = a.liquidations,
    decisions = { cycles = a.cycles, taken = a.taken, held = a.held, rejected = a.rejected, refused = a.refused,
                  invalid_answers = a.invalid, errors = a.errors, first_error = a.first_error, by_source = a.by_source,
                  refused_by_rule = sorted_counts(a.refusal_rules), rejected_by_reason = sorted_counts(a.rejection_reasons) },
    model = { calls = a.llm_calls, tokens_in = a.tokens_in, tokens_out = a.tokens_out, cost = a.cost },
    orders = a.order_count, fills = a.fill_count,
  }
  local trades = a.trades:list()
  local ts = trade_stats(trades)
  for k, v in pairs(ts) do r[k] = v end
  local by = {}
  for _, tr in ipairs(trades) do
    by[tr.symbol] = by[tr.symbol] or {}
    table.insert(by[tr.symbol], tr)
  end
  r.symbols = {}
  local syms = {}
  for s in pairs(by) do syms[#syms + 1] = s end
  for s in pairs(a.open) do if not by[s] then syms[#syms + 1] = s end end
  table.sort(syms)
  for _, s in ipairs(syms) do
    local x = trade_stats(by[s] or {})
    x.symbol = s
    x.open = a.open[s] and { side = a.open[s].side, qty = a.open[s].qty, opened = iso(a.open[s].opened_ms) } or nil
    r.symbols[#r.symbols + 1] = x
  end
  r.open_positions = 0
  for _ in pairs(a.open) do r.open_positions = r.open_positions + 1 end
  return r
end

--- The whole report. o: from_ms, to_ms (the data's span), interval,
-- symbols, run_id, config (path), config_hash, digest, seed, wall_ms,
-- candles, accounts = {name = {starting_balance}}.
function M.build(col, o)
  local r = { run_id = o.run_id, config = o.config, config_hash = o.config_hash, code_version = o.code_version,
              from = iso(o.from_ms), to = iso(o.to_ms), interval = o.interval, symbols = o.symbols, seed = o.seed,
              candles = o.candles, cycles = col.cycles, wall_ms = o.wall_ms, digest = col:digest(), accounts = {},
              scripts = o.scripts, llm_replay = o.llm_replay, bad_candles = o.bad_candles, fed = o.fed,
              source = o.source }
  if o.wall_ms and o.wall_ms > 0 then r.cycles_per_s = col.cycles / (o.wall_ms / 1000) end
  -- the process's memory: samples at 1,000 and 10,000 cycles and at the end
  local mem = col.memory
  if mem and mem.rss then
    r.memory = { samples = mem.samples, rss_mb = mem.rss / 1048576, peak_mb = mem.peak / 1048576 }
    -- growth after the warm-up: from the sample at 10,000 cycles (1,000 in a shorter run) to the end
    local from = mem.samples[2] and mem.samples[2].cycles < col.cycles and mem.samples[2] or
                 (mem.samples[1] and mem.samples[1].cycles < col.cycles and mem.samples[1])
    if from then
      r.memory.growth_mb = (mem.rss - from.rss) / 1048576
      r.memory.growth_from_cycles = from.cycles
    end
  end
  -- where a cycle's time goes (mean ms per step, the model excluded)
  r.step_ms = {}
  for k, v in pairs(col.step_ms) do r.step_ms[k] = col.cycles > 0 and v / col.cycles or 0 end
  for _, name in ipairs(col.names) do
    local ao = (o.accounts and o.accounts[name]) or {}
    r.accounts[#r.accounts + 1] = account_report(col.accounts[name], { starting_balance = ao.starting_balance,
                                                                        from_ms = o.from_ms, to_ms = o.to_ms })
  end
  return r
end

-- ---- text ----------------------------------------------------------------------------------------

local function num(v, d)
  if v == nil then return "-" end
  return fmt("%." .. (d or 2) .. "f", v)
end

local function pct(v) return v and fmt("%.1f%%", v * 100) or "-" end

local function dur(ms)
  if not ms then return "-" end
  local h = ms / 3600000
  if h >= 48 then return fmt("%.1fd", h / 24) end
  if h >= 1 then return fmt("%.1fh", h) end
  return fmt("%dm", math.floor(ms / 60000 + 0.5))
end
M.duration = dur

--- The report as the terminal shows it.
function M.text(r)
  local out = {}
  local function w(...) out[#out + 1] = fmt(...) end
  w("backtest%s  %s .. %s  %s  %s", r.run_id and (" run " .. r.run_id) or "", r.from or "?", r.to or "?", r.interval or "",
    table.concat(r.symbols or {}, ","))
  w("  %d candles, %d cycles%s%s", r.candles or 0, r.cycles or 0,
    r.wall_ms and fmt(" in %.2fs", r.wall_ms / 1000) or "", r.cycles_per_s and fmt(" (%.0f cycles/s)", r.cycles_per_s) or "")
  w("  digest %s", r.digest:sub(1, 16))
  if r.memory then
    w("  memory: RSS %.1f MB at the end, peak %.1f MB%s", r.memory.rss_mb, r.memory.peak_mb,
      r.memory.growth_mb and fmt(", %+.2f MB since cycle %d", r.memory.growth_mb, r.memory.growth_from_cycles) or "")
  end
  local steps = {}
  for _, k in ipairs { "market", "account", "context", "prompt", "validate", "policy", "risk", "execute", "record" } do
    if r.step_ms and r.step_ms[k] then steps[#steps + 1] = ("%s %.3f"):format(k, r.step_ms[k]) end
  end
  if #steps > 0 then w("  cycle (mean ms): %s", table.concat(steps, ", ")) end
  if r.bad_candles then
    w("  WARNING: %d candles were refused by the market data (inconsistent prices): the decisions did not see them", r.bad_candles)
  end
  for _, a in ipairs(r.accounts) do
    w("")
    w("account %s: equity %s -> %s  (%+.2f, %+.2f%%)", a.account, num(a.starting_equity), num(a.final_equity), a.pnl, a.return_pct)
    w("  trades %d  win rate %s  avg profit %s  total %s  avg duration %s  best %s  worst %s  profit factor %s",
      a.trades, pct(a.win_rate), num(a.avg_profit), num(a.net), dur(a.avg_duration_ms), num(a.best), num(a.worst),
      num(a.profit_factor))
    w("  exits: signal %d, stop %d, target %d, liquidation %d   fees %s  funding %s",
      a.reasons.signal, a.reasons.stop, a.reasons.target, a.reasons.liquidation, num(a.fees), num(a.funding))
    w("  max drawdown %.2f%% (%s) peak %s, trough %s, %s", a.max_drawdown_pct, num(a.max_drawdown), a.max_drawdown_peak or "-",
      a.max_drawdown_trough or "-", a.max_drawdown_recovered and ("recovered " .. a.max_drawdown_recovered) or "not recovered")
    w("  sharpe %s  sortino %s  calmar %s  annual return %s  exposure %.1f%%", num(a.sharpe), num(a.sortino), num(a.calmar),
      a.annual_return_pct and fmt("%.2f%%", a.annual_return_pct) or "-", a.exposure_pct)
    local d = a.decisions
    local refused = {}
    for _, x in ipairs(d.refused_by_rule) do refused[#refused + 1] = fmt("%s %d", x.reason, x.count) end
    w("  decisions: %d cycles, %d taken, %d held, %d rejected by validation, %d refused by the gate%s", d.cycles, d.taken,
      d.held, d.rejected, d.refused, #refused > 0 and (" (" .. table.concat(refused, ", ") .. ")") or "")
    if d.errors > 0 then
      w("  WARNING: %d cycles failed; the first (%s): %s", d.errors, d.first_error.cycle, (d.first_error.error:gsub("\n.*", "")))
    end
    if a.model.calls > 0 then
      w("  model: %d calls, %d tokens in, %d out, cost %s", a.model.calls, a.model.tokens_in, a.model.tokens_out, num(a.model.cost, 4))
    end
    if #a.symbols > 0 then
      w("  %-12s %6s %8s %12s %10s %10s %9s  %s", "symbol", "trades", "win", "net", "fees", "funding", "avg dur", "exits s/st/t/l")
      for _, s in ipairs(a.symbols) do
        w("  %-12s %6d %8s %12s %10s %10s %9s  %d/%d/%d/%d%s", s.symbol, s.trades, pct(s.win_rate), num(s.net), num(s.fees),
          num(s.funding), dur(s.avg_duration_ms), s.reasons.signal, s.reasons.stop, s.reasons.target, s.reasons.liquidation,
          s.open and (" (open " .. s.open.side .. ")") or "")
      end
    end
  end
  return table.concat(out, "\n") .. "\n"
end

-- ---- files ---------------------------------------------------------------------------------------

local function write_file(path, s)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(s)
  f:close()
  if not ok then return nil, werr end
  return true
end
M.write_file = write_file

local function csv_field(v)
  if v == nil then return "" end
  if type(v) == "number" then return fmt("%.10g", v) end
  v = tostring(v)
  if v:find('[,"\n]') then v = '"' .. v:gsub('"', '""') .. '"' end
  return v
end

local function csv(rows, columns)
  local out = { table.concat(columns, ",") }
  for _, r in ipairs(rows) do
    local parts = {}
    for i, c in ipairs(columns) do parts[i] = csv_field(r[c]) end
    out[#out + 1] = table.concat(parts, ",")
  end
  return table.concat(out, "\n") .. "\n"
end

M.TRADE_COLUMNS = { "account", "symbol", "side", "opened_at", "closed_at", "duration_s", "quantity", "entry_price",
                    "exit_price", "pnl", "fees", "funding", "net", "reason" }

--- Every closed trade of every account, oldest first.
function M.trades(col)
  local rows = {}
  for _, name in ipairs(col.names) do
    for _, tr in ipairs(col.accounts[name].trades:list()) do
      rows[#rows + 1] = { account = name, symbol = tr.symbol, side = tr.side, opened_at = iso(tr.opened_ms),
                          closed_at = iso(tr.closed_ms), duration_s = (tr.closed_ms - tr.opened_ms) / 1000,
                          quantity = tr.entry_qty, entry_price = tr.entry_price, exit_price = tr.exit_price, pnl = tr.pnl,
                          fees = tr.fees, funding = tr.funding, net = tr.net, reason = tr.reason,
                          opened_ms = tr.opened_ms, closed_ms = tr.closed_ms }
    end
  end
  return rows
end

-- equity.csv, a line at a time (a year of cycles is never a table of rows)
local function write_equity(path, col)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  f:setvbuf("full", 65536)
  f:write("account,time,equity\n")
  for _, name in ipairs(col.names) do
    local a = col.accounts[name]
    local t, eq = a.t, a.equity
    for i = 1, #t do f:write(name, ",", iso(t[i]), ",", fmt("%.8f", eq[i]), "\n") end
  end
  local ok, werr = f:close()
  if not ok then return nil, werr end
  return true
end

--- Write report.json, trades.csv, equity.csv and report.html into dir
-- (fills.csv and orders.csv are written by the collector as the run goes). o.prices: {symbol = {t = {}, c = {}}} for the price charts.
function M.write(r, col, dir, o)
  o = o or {}
  local ok, err = write_file(dir .. "/report.json", json.encode(r))
  if ok then ok, err = write_file(dir .. "/trades.csv", csv(M.trades(col), M.TRADE_COLUMNS)) end
  if ok then ok, err = write_equity(dir .. "/equity.csv", col) end
  if ok then ok, err = write_file(dir .. "/report.html", require("vibex.backtest.html").render(r, col, o.prices or {}, M.trades(col))) end
  return ok, err
end

return M
