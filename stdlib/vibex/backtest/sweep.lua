--- vibex.backtest.sweep — many backtests of one config: every combination
-- of parameter values (`--sweep params.fast=8,12,16 --sweep params.slow=26,34`),
-- each in its own worker process (`vibex backtest run … --set … --json`),
-- N at a time, ranked by a metric; with `--walk-forward K` the data range
-- is cut into K+1 windows and, for each of the K folds, the combinations
-- are fitted on one window and the best is tested on the next, so a
-- parameter that only fits the past shows as such.
--
-- A combination that fails (a bad value, a script error) fails alone: its
-- worker's exit code and last error line are in the table, the others go on.
local json = require "vibex.json"
local process = require "vibex.process"
local runtime = require "vibex.runtime"
local task = require "vibex.task"
local time = require "vibex.time"

local M = {}

--- The running vibex binary (/proc/self/exe), for the worker processes.
function M.exe()
  local ffi = require "ffi"
  local C = require("vibex.cdef").C
  local buf = ffi.new("char[4096]")
  local n = tonumber(C.readlink("/proc/self/exe", buf, 4096))
  if n and n > 0 then return ffi.string(buf, n) end
  return "vibex"
end

--- {"params.fast=8,12", …} -> {{key, values = {…}}, …} | nil, message.
function M.parse(list)
  local out = {}
  for _, s in ipairs(list or {}) do
    local k, vs = tostring(s):match("^([%w_%.]+)=(.+)$")
    if not k then return nil, ("--sweep %q: expected KEY=V1,V2,… (e.g. params.fast=8,12,16)"):format(tostring(s)) end
    local values = {}
    for v in vs:gmatch("[^,]+") do values[#values + 1] = v end
    out[#out + 1] = { key = k, values = values }
  end
  return out
end

--- Every combination: {{"params.fast=8", "params.slow=26"}, …}.
function M.combinations(axes)
  local out = { {} }
  for _, ax in ipairs(axes) do
    local next_out = {}
    for _, combo in ipairs(out) do
      for _, v in ipairs(ax.values) do
        local c = {}
        for i, x in ipairs(combo) do c[i] = x end
        c[#c + 1] = ax.key .. "=" .. v
        next_out[#next_out + 1] = c
      end
    end
    out = next_out
  end
  return out
end

-- Metrics a sweep ranks by: the mean over the accounts; higher is better
-- except drawdown.
M.RANKS = {
  sharpe = function(a) return a.sharpe end, sortino = function(a) return a.sortino end,
  calmar = function(a) return a.calmar end, ["return"] = function(a) return a.return_pct end,
  pnl = function(a) return a.pnl end, win_rate = function(a) return a.win_rate end,
  profit = function(a) return a.net end, drawdown = function(a) return a.max_drawdown_pct and -a.max_drawdown_pct end,
}

function M.score(rep, rank)
  local f = M.RANKS[rank]
  local sum, n = 0, 0
  for _, a in ipairs(rep.accounts or {}) do
    local v = f(a)
    if v then sum, n = sum + v, n + 1 end
  end
  return n > 0 and sum / n or nil
end

local function mean_of(rep, key)
  local sum, n = 0, 0
  for _, a in ipairs(rep.accounts or {}) do
    if a[key] then sum, n = sum + a[key], n + 1 end
  end
  return n > 0 and sum / n or nil
end

-- One worker: `vibex backtest run CONFIG --set … --json`. Returns {combo,
-- report | error, code}.
local function run_one(o, combo, window, k)
  local args = { "backtest", "run", o.config, "--json", "--quiet", "--out", ("%s/%s"):format(o.out, k) }
  for _, s in ipairs(combo) do args[#args + 1] = "--set"; args[#args + 1] = s end
  for _, s in ipairs(o.set or {}) do args[#args + 1] = "--set"; args[#args + 1] = s end
  local from, to = window and window.from or o.from, window and window.to or o.to
  if from then args[#args + 1] = "--from"; args[#args + 1] = from end
  if to then args[#args + 1] = "--to"; args[#args + 1] = to end
  if o.accounts then args[#args + 1] = "--accounts"; args[#args + 1] = table.concat(o.accounts, ",") end
  if o.no_db then args[#args + 1] = "--no-db" end
  local p, err = process.spawn { file = M.exe(), args = args, stdout = "pipe", stderr = "pipe",
                                 env = { VIBEX_HOME = runtime.home() } }
  if not p then return { combo = combo, error = tostring(err), code = -1 } end
  local errtext
  local reader = task.spawn("sweep-stderr", function() errtext = p:read_all("stderr") end)
  local out = p:read_all()
  task.join_all { reader }
  local code = p:wait()
  local rep = code == 0 and json.decode(out or "")
  if type(rep) ~= "table" then
    local last
    for line in tostring(errtext or ""):gmatch("[^\n]+") do last = line end
    return { combo = combo, error = last or ("exit " .. tostring(code)), code = code }
  end
  return { combo = combo, report = rep, code = 0, run_id = rep.run_id }
end

-- Run every combination, o.jobs at a time; results in combination order.
local function run_all(o, combos, window, tag)
  local results, next_i = {}, 1
  local workers = {}
  for w = 1, math.max(1, math.min(o.jobs or 1, #combos)) do
    workers[w] = task.spawn("sweep-worker-" .. w, function()
      while next_i <= #combos do
        local i = next_i
        next_i = next_i + 1
        results[i] = run_one(o, combos[i], window, ("%s%03d"):format(tag or "", i))
        if o.on_result then o.on_result(results[i], i, #combos) end
      end
    end)
  end
  task.join_all(workers)
  return results
end

local function ranked(results, rank)
  local ok, failed = {}, {}
  for _, r in ipairs(results) do
    if r.report then
      r.score = M.score(r.report, rank)
      r.return_pct, r.sharpe = mean_of(r.report, "return_pct"), mean_of(r.report, "sharpe")
      r.trades, r.drawdown = mean_of(r.report, "trades"), mean_of(r.report, "max_drawdown_pct")
      ok[#ok + 1] = r
    else
      failed[#failed + 1] = r
    end
  end
  table.sort(ok, function(a, b)
    if a.score == nil then return false end
    if b.score == nil then return true end
    return a.score > b.score
  end)
  return ok, failed
end

--- A sweep: o: config, axes ({{key, values}}), jobs, rank, out, from, to,
-- accounts, no_db, set, walk_forward (K), span ({from_ms, to_ms}: the
-- data's range, for walk-forward), interval_ms, warmup.
-- Returns {ranked = {…}, failed = {…}, folds = {…}} .
function M.run(o)
  local combos = M.combinations(o.axes)
  if not o.walk_forward then
    local ok, failed = ranked(run_all(o, combos), o.rank)
    return { ranked = ok, failed = failed, combinations = #combos }
  end
  local k = o.walk_forward
  local span = o.span
  local start = span.from_ms + (o.warmup or 0) * o.interval_ms
  local width = math.floor((span.to_ms - start) / (k + 1) / o.interval_ms) * o.interval_ms
  if width < o.interval_ms * 10 then
    return nil, ("--walk-forward %d: the data (%s .. %s) is too short for %d windows"):format(k, time.iso(span.from_ms),
      time.iso(span.to_ms), k + 1)
  end
  local function window(i) return { from = time.iso(start + i * width), to = time.iso(start + (i + 1) * width) } end
  local folds, all_failed = {}, {}
  for f = 1, k do
    local fit_w, test_w = window(f - 1), window(f)
    local ok, failed = ranked(run_all(o, combos, fit_w, ("fold%d-fit-"):format(f)), o.rank)
    for _, x in ipairs(failed) do all_failed[#all_failed + 1] = x end
    local best = ok[1]
    local fold = { fold = f, fit = fit_w, test = test_w, best = best and best.combo, fit_score = best and best.score }
    if best then
      local t = ranked(run_all(o, { best.combo }, test_w, ("fold%d-test-"):format(f)), o.rank)
      fold.test_score = t[1] and t[1].score
      fold.test_return_pct = t[1] and t[1].return_pct
      fold.fit_return_pct = best.return_pct
    end
    folds[#folds + 1] = fold
  end
  return { folds = folds, failed = all_failed, combinations = #combos }
end

local function fnum(v, d) return v and ("%." .. (d or 2) .. "f"):format(v) or "-" end

--- The sweep as the terminal shows it.
function M.text(res, rank)
  local out = {}
  local function w(...) out[#out + 1] = string.format(...) end
  if res.folds then
    w("walk-forward, %d folds, %d combinations each, ranked by %s", #res.folds, res.combinations, rank)
    w("%-5s %-23s %-23s %-36s %9s %9s %9s %9s", "fold", "fit", "test", "best", "fit " .. rank, "test " .. rank, "fit ret%",
      "test ret%")
    local sf, st, n = 0, 0, 0
    for _, f in ipairs(res.folds) do
      w("%-5d %-23s %-23s %-36s %9s %9s %9s %9s", f.fold, f.fit.from:sub(1, 16), f.test.from:sub(1, 16),
        f.best and table.concat(f.best, " ") or "(all failed)", fnum(f.fit_score), fnum(f.test_score),
        fnum(f.fit_return_pct), fnum(f.test_return_pct))
      if f.fit_score and f.test_score then sf, st, n = sf + f.fit_score, st + f.test_score, n + 1 end
    end
    if n > 0 then
      w("mean %s: fitted %.2f, tested %.2f%s", rank, sf / n, st / n,
        (sf / n > 0 and st / n < sf / n * 0.5) and "  — the tested windows keep less than half: likely overfit" or "")
    end
  else
    w("sweep: %d combinations, ranked by %s", res.combinations, rank)
    w("%4s  %-40s %9s %9s %9s %8s %7s  %s", "rank", "parameters", rank, "return%", "sharpe", "maxdd%", "trades", "run")
    for i, r in ipairs(res.ranked) do
      w("%4d  %-40s %9s %9s %9s %8s %7s  %s", i, table.concat(r.combo, " "), fnum(r.score), fnum(r.return_pct),
        fnum(r.sharpe), fnum(r.drawdown), fnum(r.trades, 0), r.run_id and tostring(r.run_id) or "-")
    end
  end
  for _, r in ipairs(res.failed) do
    w("FAILED  %-40s exit %s: %s", table.concat(r.combo, " "), tostring(r.code), r.error)
  end
  return table.concat(out, "\n") .. "\n"
end

return M
