--- vibex.backtest.cli — `vibex backtest …`: run (the default: `vibex
-- backtest CONFIG` is `vibex backtest run CONFIG`), list, show, compare,
-- delete. The parser's part is in vibex.cli (M.parser); this is what each
-- action does. Exit codes: 0 ok, 1 the run or the database failed, 2 usage
-- or config error.
local errors = require "vibex.errors"
local json = require "vibex.json"
local report = require "vibex.backtest.report"

local M = {}

M.ACTIONS = { run = true, list = true, show = true, compare = true, delete = true }

local function say_error(h, prefix, err)
  io.stderr:write("vibex: ", prefix, errors.message(err), "\n")
  if type(err) == "table" and err.fix then io.stderr:write("  fix: ", tostring(err.fix), "\n") end
  if type(err) ~= "table" then return 1 end
  -- what the user can fix in the command or the config is a usage error (2); the rest is a failure (1)
  local usage = err.kind == "invalid" or err.kind == "config" or err.kind == "script"
  return err.code or (usage and 2) or 1
end

local function split(s)
  if not s then return nil end
  local out = {}
  for x in s:gmatch("[^,%s]+") do out[#out + 1] = x end
  return out
end

local function run_sweep(a, h)
  local sweep = require "vibex.backtest.sweep"
  local axes, perr = sweep.parse(a.sweep)
  if not axes then return say_error(h, "backtest: ", errors.new("invalid", perr)) end
  local rank = a.rank or "sharpe"
  if not sweep.RANKS[rank] then
    local names = {}
    for k in pairs(sweep.RANKS) do names[#names + 1] = k end
    table.sort(names)
    return say_error(h, "backtest: ", errors.new("invalid", ("--rank %s: rank by one of %s"):format(rank, table.concat(names, ", "))))
  end
  local o = { config = a.config, axes = axes, jobs = tonumber(a.jobs) or 2, rank = rank, from = a.from, to = a.to,
              accounts = split(a.accounts), no_db = a.no_db, set = a.set,
              out = a.out or ("data/backtests/sweep-" .. os.date("!%Y%m%d-%H%M%S")) }
  require("vibex.runtime").mkdir_p(o.out)
  if a.walk_forward then
    local bt = require "vibex.backtest"
    local span, serr = bt.data_span(a.config, { from = a.from, to = a.to, accounts = o.accounts, set = a.set, no_db = a.no_db })
    if not span then return say_error(h, "backtest: ", serr) end
    o.walk_forward, o.span, o.interval_ms, o.warmup = tonumber(a.walk_forward), span, span.interval_ms, span.warmup
    o.from, o.to = nil, nil
  end
  o.on_result = function(r, i, n)
    if a.json then return end
    io.stderr:write(("sweep %d/%d %s: %s\n"):format(i, n, table.concat(r.combo, " "),
      r.report and "done" or ("FAILED: " .. tostring(r.error))))
  end
  local res, err = sweep.run(o)
  if not res then return say_error(h, "backtest: ", errors.new("invalid", err)) end
  if a.json then
    local function slim(r) return { parameters = r.combo, score = r.score, run_id = r.run_id, error = r.error, code = r.code,
                                    return_pct = r.return_pct, sharpe = r.sharpe, trades = r.trades, drawdown = r.drawdown } end
    local out = { rank = rank, combinations = res.combinations, ranked = {}, failed = {}, folds = res.folds }
    for i, r in ipairs(res.ranked or {}) do out.ranked[i] = slim(r) end
    for i, r in ipairs(res.failed) do out.failed[i] = slim(r) end
    io.stdout:write(json.encode(out), "\n")
  else
    io.stdout:write(sweep.text(res, rank))
  end
  local any_ok = res.folds ~= nil or #(res.ranked or {}) > 0
  return any_ok and 0 or 1
end

local function run(a, h)
  if a.sweep and #a.sweep > 0 then return run_sweep(a, h) end
  if a.walk_forward then return say_error(h, "backtest: ", errors.new("invalid", "--walk-forward needs --sweep")) end
  local res, err = require("vibex.backtest").run(a.config, { from = a.from, to = a.to, accounts = split(a.accounts),
    out = a.out, no_db = a.no_db, set = a.set, progress = not a.json and not a.quiet, quiet = a.quiet or a.json })
  if not res then return say_error(h, "backtest: ", err) end
  if a.json then
    io.stdout:write(json.encode(res.report), "\n")
  else
    io.stdout:write(report.text(res.report))
    io.stdout:write(("\nreport: %s/report.html  (report.json, trades.csv, fills.csv, orders.csv, equity.csv)\n"):format(res.out))
    if res.run_id then io.stdout:write(("run %d recorded: vibex backtest show %d\n"):format(res.run_id, res.run_id)) end
  end
  return 0
end

-- Open the config's database, call the store's fname(pool, ...), close it:
-- the result | nil, the exit code (the error said).
local function from_store(a, h, what, fname, ...)
  local db, code = h.open_migrated_db(a.config, "backtest " .. what .. ": ")
  if not db then return nil, code end
  local res, err = require("vibex.backtest.store")[fname](db.pool, ...)
  db.close()
  if not res then return nil, say_error(h, "backtest " .. what .. ": ", err) end
  return res
end

local function list(a, h)
  local rows, code = from_store(a, h, "list", "list", { limit = tonumber(a.limit) or 50 })
  if not rows then return code end
  if a.json then
    local out = {}
    for i, r in ipairs(rows) do
      local rep = r.report and json.decode(r.report)
      out[i] = { run_id = tonumber(r.run_id), outcome = r.outcome, accounts = r.accounts, started = r.started,
                 from = r.data_from, to = r.data_to, digest = r.digest, error = r.error,
                 cycles = rep and rep.cycles, accounts_report = rep and rep.accounts }
    end
    io.stdout:write(json.encode(out), "\n")
    return 0
  end
  if #rows == 0 then io.stdout:write("no backtests recorded yet (vibex backtest CONFIG)\n") return 0 end
  io.stdout:write(("%6s  %-19s  %-9s  %-16s  %-16s  %-16s  %8s  %10s  %7s  %s\n"):format("run", "started", "outcome",
    "accounts", "from", "to", "cycles", "return%", "trades", "digest"))
  for _, r in ipairs(rows) do
    local rep = r.report and json.decode(r.report)
    local ret, trades = nil, 0
    for _, x in ipairs(rep and rep.accounts or {}) do ret = (ret or 0) + (x.return_pct or 0); trades = trades + (x.trades or 0) end
    if ret and rep and #rep.accounts > 0 then ret = ret / #rep.accounts end
    io.stdout:write(("%6s  %-19s  %-9s  %-16s  %-16s  %-16s  %8s  %10s  %7s  %s\n"):format(r.run_id, r.started,
      r.outcome or "running", r.accounts:sub(1, 16), r.data_from or "-", r.data_to or "-", rep and rep.cycles or "-",
      ret and ("%+.2f"):format(ret) or "-", rep and trades or "-", r.digest and r.digest:sub(1, 12) or (r.error or ""):sub(1, 40)))
  end
  return 0
end

local function show(a, h)
  local r, code = from_store(a, h, "show", "get", tonumber(a.run_id))
  if not r then return code end
  local rep = r.details.report
  if a.json then
    io.stdout:write(json.encode({ run_id = tonumber(r.run_id), outcome = r.outcome, report = rep, trades = r.trades,
                                  error = r.details.error, out = r.details.out }), "\n")
    return 0
  end
  if not rep then
    io.stdout:write(("run %s: %s%s\n"):format(r.run_id, r.outcome or "running", r.details.error and (": " .. r.details.error) or ""))
    return r.outcome == "completed" and 0 or 1
  end
  io.stdout:write(report.text(rep))
  if #r.trades > 0 then
    io.stdout:write(("\n%-10s %-10s %-5s %-20s %-20s %12s %12s %10s  %s\n"):format("account", "symbol", "side", "opened",
      "closed", "entry", "exit", "net", "exit reason"))
    for _, t in ipairs(r.trades) do
      io.stdout:write(("%-10s %-10s %-5s %-20s %-20s %12.6g %12.6g %10.2f  %s\n"):format(t.account, t.symbol, t.side,
        t.opened_at, t.closed_at, tonumber(t.entry_price) or 0, tonumber(t.exit_price) or 0, tonumber(t.net) or 0, t.reason))
    end
  end
  if r.details.out then io.stdout:write(("\nfiles: %s\n"):format(r.details.out)) end
  return 0
end

local COMPARE = {
  { "final equity", "final_equity" }, { "return %", "return_pct" }, { "trades", "trades" }, { "win rate", "win_rate" },
  { "total profit", "net" }, { "avg profit", "avg_profit" }, { "fees", "fees" }, { "funding", "funding" },
  { "max drawdown %", "max_drawdown_pct" }, { "sharpe", "sharpe" }, { "sortino", "sortino" }, { "calmar", "calmar" },
  { "exposure %", "exposure_pct" },
}

local function compare(a, h)
  local x, xcode = from_store(a, h, "compare", "get", tonumber(a.runs[1]))
  if not x then return xcode end
  local y, ycode = from_store(a, h, "compare", "get", tonumber(a.runs[2]))
  if not y then return ycode end
  local rx, ry = x.details.report, y.details.report
  if not rx or not ry then return say_error(h, "backtest compare: ", errors.new("not_found", "both runs must have completed")) end
  if a.json then
    io.stdout:write(json.encode({ runs = { tonumber(x.run_id), tonumber(y.run_id) }, reports = { rx, ry },
                                  same_orders = rx.digest == ry.digest }), "\n")
    return 0
  end
  io.stdout:write(("run %s vs run %s: %s\n"):format(x.run_id, y.run_id, rx.digest == ry.digest
    and ("the same order stream (digest " .. rx.digest:sub(1, 16) .. ")")
    or ("different order streams (" .. rx.digest:sub(1, 12) .. " / " .. ry.digest:sub(1, 12) .. ")")))
  local by = {}
  for _, acc in ipairs(ry.accounts) do by[acc.account] = acc end
  for _, ax in ipairs(rx.accounts) do
    local ay = by[ax.account]
    io.stdout:write(("\naccount %s\n%-16s %14s %14s %14s\n"):format(ax.account, "", "run " .. x.run_id, "run " .. y.run_id, "change"))
    for _, m in ipairs(COMPARE) do
      local vx, vy = ax[m[2]], ay and ay[m[2]]
      local function f(v) return v and ("%.4g"):format(v) or "-" end
      io.stdout:write(("%-16s %14s %14s %14s\n"):format(m[1], f(vx), f(vy), (vx and vy) and ("%+.4g"):format(vy - vx) or "-"))
    end
  end
  return 0
end

local function delete(a, h)
  local ok, code = from_store(a, h, "delete", "delete", tonumber(a.run_id))
  if not ok then return code end
  io.stdout:write(("backtest run %s deleted\n"):format(a.run_id))
  return 0
end

--- The command: a (parsed arguments), h (open_migrated_db from vibex.cli).
function M.main(a, h)
  if a.action == "list" then return list(a, h) end
  if a.action == "show" then return show(a, h) end
  if a.action == "compare" then return compare(a, h) end
  if a.action == "delete" then return delete(a, h) end
  return run(a, h)
end

--- `vibex backtest CONFIG …` is `vibex backtest run CONFIG …`: args with
-- the action put in where it was left out.
function M.implicit_run(args)
  local i = 1
  while args[i] do
    local x = args[i]
    if x == "--env" then
      i = i + 2
    elseif x:sub(1, 1) == "-" then
      i = i + 1
    elseif x ~= "backtest" then
      return args
    else
      local nxt = args[i + 1]
      if not nxt or M.ACTIONS[nxt] or nxt == "-h" or nxt == "--help" then return args end
      local out = {}
      for j = 1, i do out[j] = args[j] end
      out[#out + 1] = "run"
      for j = i + 1, #args do out[#out + 1] = args[j] end
      return out
    end
  end
  return args
end

return M
