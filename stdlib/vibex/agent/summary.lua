--- vibex.agent.summary — the readable summary printed when a replay ends:
-- per account what it did and how it did, and what the database holds.
local M = {}

local function f2(x) return type(x) == "number" and ("%.2f"):format(x) or "-" end

-- What the database holds for one account in one run (the replay's).
local function db_counts(pool, name, run_id)
  if not pool then return nil end
  local rows = pool:query([[
    SELECT (SELECT count(*) FROM decisions d WHERE d.account_id = a.account_id AND d.run_id = $2) AS decisions,
           (SELECT count(*) FROM decisions d WHERE d.account_id = a.account_id AND d.run_id = $2
              AND d.parsed->>'source' = 'model') AS model,
           (SELECT count(*) FROM decisions d WHERE d.account_id = a.account_id AND d.run_id = $2
              AND d.parsed->>'source' = 'fallback') AS fallback,
           (SELECT count(*) FROM orders o WHERE o.account_id = a.account_id AND o.run_id = $2) AS orders,
           (SELECT count(*) FROM orders o WHERE o.account_id = a.account_id AND o.run_id = $2 AND o.status = 'filled') AS filled,
           (SELECT count(*) FROM fills f WHERE f.account_id = a.account_id AND f.run_id = $2) AS fills,
           (SELECT count(*) FROM risk_refusals r WHERE r.account_id = a.account_id AND r.run_id = $2) AS refusals,
           (SELECT count(*) FROM diary_entries e WHERE e.account_id = a.account_id AND e.run_id = $2) AS diary,
           (SELECT count(*) FROM performance_metrics m WHERE m.account_id = a.account_id AND m.run_id = $2) AS metrics
    FROM accounts a WHERE a.name = $1 AND a.deleted_at IS NULL]], name, run_id)
  return rows and rows[1]
end

--- The summary text. app: the vibex.app (agent, db); accounts: configs;
-- summary: what the replay returned.
function M.render(app, accounts, summary)
  local ag = app.agent
  local out = {}
  local function line(s) out[#out + 1] = s end
  line("")
  line(("Paper replay finished: %d candles, %d decision cycles, %s to %s (replay time), %.1f s wall.")
    :format(summary.candles, summary.cycles, os.date("!%Y-%m-%d %H:%M", math.floor(summary.from_ms / 1000)),
      os.date("!%Y-%m-%d %H:%M", math.floor(summary.to_ms / 1000)), (summary.wall_ms or 0) / 1000))
  line("")
  line(("%-18s %-10s %-10s %7s %6s %8s %7s %6s %9s %12s %8s %7s %6s %8s %8s"):format("account", "variant", "source", "cycles", "orders",
    "refused", "fills", "trades", "win rate", "equity", "return%", "maxDD%", "sharpe", "fees", "funding"))
  for _, acc in ipairs(accounts) do
    local a = ag.accounts[acc.name]
    if a then
      local s = a.perf:summary()
      local c = db_counts(app.db and app.db.pool, acc.name, summary.run_id) or {}
      local source = tonumber(c.model or 0) > 0 and (tonumber(c.fallback or 0) > 0 and "mixed" or "model") or "fallback"
      line(("%-18s %-10s %-10s %7d %6s %8s %7s %6d %9s %12s %8s %7s %6s %8s %8s"):format(acc.name,
        a.last and a.last.variant or "-", source, a.cycles,
        tostring(c.orders or "-"), tostring(c.refusals or "-"), tostring(c.fills or "-"), s.trades,
        s.win_rate and ("%.0f%%"):format(s.win_rate * 100) or "-", f2(s.equity), f2(s.return_pct), f2(s.max_drawdown),
        f2(s.sharpe), f2(s.fees), f2(s.funding)))
    end
  end
  line("")
  local db = {}
  for _, acc in ipairs(accounts) do
    local c = db_counts(app.db and app.db.pool, acc.name, summary.run_id)
    if c then
      db[#db + 1] = ("%s: %s decisions, %s orders (%s filled), %s fills, %s diary entries, %s metric rows")
        :format(acc.name, c.decisions, c.orders, c.filled, c.fills, c.diary, c.metrics)
    end
  end
  if #db > 0 then
    line(("In the database, run %s%s: "):format(tostring(summary.run_id),
      (summary.resumes or 0) > 0 and (" (resumed %d times)"):format(summary.resumes) or "") .. table.concat(db, "; ") .. ".")
    line("Look closer: vibex repl, then  db = require('vibex.db').open{data_dir = 'data'}  and  db.pool:query('SELECT body FROM diary_entries ORDER BY diary_entry_id DESC LIMIT 3')")
  end
  return table.concat(out, "\n")
end

return M
