--- db.ledger — funding payments, account snapshots, performance metrics and
-- config versions: append-mostly records of what happened.
local json = require "vibex.json"

local R = {}
R.__index = R

local ACCOUNT = "(SELECT account_id FROM accounts WHERE name = $1 AND deleted_at IS NULL)"

--- f: account, symbol, amount, rate, position_qty, time_ms, run_id (stored once per account, symbol, time).
function R:funding(f)
  return self.write([[INSERT INTO funding_payments (account_id, symbol, amount, rate, position_qty, paid_at, run_id)
    VALUES (]] .. ACCOUNT .. [[, $2, $3, $4, $5, to_timestamp($6::float8 / 1000), $7)
    ON CONFLICT (account_id, symbol, paid_at) DO NOTHING]], f.account, f.symbol, f.amount, f.rate, f.position_qty, f.time_ms,
    f.run_id)
end

--- s: account, equity, wallet_balance, available, unrealized_pnl, margin_used, run_id and cycle_key (one
-- snapshot per cycle of a run; without a cycle, every call adds one).
function R:snapshot(s)
  return self.write([[INSERT INTO account_snapshots (account_id, equity, wallet_balance, available, unrealized_pnl, margin_used,
      run_id, cycle_key, taken_at)
    VALUES (]] .. ACCOUNT .. [[, $2, $3, $4, COALESCE($5::numeric, 0), $6, $7, $8, COALESCE(to_timestamp($9::float8 / 1000), now()))
    ON CONFLICT (account_id, (COALESCE(run_id, 0)), cycle_key) WHERE cycle_key IS NOT NULL DO NOTHING]],
    s.account, s.equity, s.wallet_balance, s.available, s.unrealized_pnl, s.margin_used, s.run_id, s.cycle_key, s.time_ms)
end

--- m: account, strategy, window_name, equity, pnl, return_pct, max_drawdown, sharpe, win_rate, trades, fees, funding,
-- run_id, cycle_key (one row per window and cycle of a run).
function R:metrics(m)
  return self.write([[INSERT INTO performance_metrics (account_id, window_name, equity, pnl, return_pct, max_drawdown,
      sharpe, win_rate, trades, fees, funding, strategy, run_id, cycle_key, computed_at)
    VALUES (]] .. ACCOUNT .. [[, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
            COALESCE(to_timestamp($15::float8 / 1000), now()))
    ON CONFLICT (account_id, (COALESCE(run_id, 0)), cycle_key, window_name) WHERE cycle_key IS NOT NULL DO NOTHING]],
    m.account, m.window_name, m.equity, m.pnl, m.return_pct, m.max_drawdown, m.sharpe, m.win_rate, m.trades, m.fees, m.funding,
    m.strategy, m.run_id, m.cycle_key, m.time_ms)
end

local DECISION = [[(SELECT d.decision_id FROM decisions d WHERE d.account_id = ]] .. ACCOUNT
  .. [[ AND d.cycle_key = $2 AND COALESCE(d.run_id, 0) = COALESCE($3, 0))]]

--- c: account, cycle_key, run_id, seq (its place among the cycle's calls), purpose ("decide" | "repair"),
-- provider, model, variant, outcome ("ok" or the error kind), attempts, tokens_in, tokens_out, latency_ms, cost, error.
function R:llm_call(c)
  return self.write([[INSERT INTO llm_calls (account_id, decision_id, run_id, cycle_key, seq, purpose, provider, model, variant,
      outcome, attempts, tokens_in, tokens_out, latency_ms, cost, error)
    VALUES (]] .. ACCOUNT .. [[, ]] .. DECISION .. [[, $3, $2, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
    ON CONFLICT (account_id, (COALESCE(run_id, 0)), cycle_key, seq) WHERE cycle_key IS NOT NULL AND seq IS NOT NULL
    DO NOTHING]],
    c.account, c.cycle_key, c.run_id, c.seq, c.purpose, c.provider, c.model, c.variant, c.outcome, c.attempts, c.tokens_in,
    c.tokens_out, c.latency_ms, c.cost, c.error)
end

--- r: account, cycle_key, run_id, seq (its place among the cycle's refusals), rule, symbol, message, intent (table).
function R:risk_refusal(r)
  return self.write([[INSERT INTO risk_refusals (account_id, decision_id, run_id, cycle_key, seq, rule, symbol, message, intent)
    VALUES (]] .. ACCOUNT .. [[, ]] .. DECISION .. [[, $3, $2, $4, $5, $6, $7, $8::jsonb)
    ON CONFLICT (account_id, (COALESCE(run_id, 0)), cycle_key, seq) WHERE cycle_key IS NOT NULL AND seq IS NOT NULL
    DO NOTHING]],
    r.account, r.cycle_key, r.run_id, r.seq, r.rule, r.symbol, r.message, r.intent and json.encode(r.intent) or nil)
end

--- A config snapshot from vibex.config (rendered with secrets masked).
-- Applying the config that is already the newest version (a restart)
-- records nothing: a version is a change, not a start.
function R:config_version(snap, rendered, source_path)
  return self.write([[INSERT INTO config_versions (version, hash, environment, source_path, config)
    SELECT $1, $2, $3, $4, $5::jsonb
    WHERE $2 IS DISTINCT FROM (SELECT hash FROM config_versions WHERE environment = $3
                               ORDER BY config_version_id DESC LIMIT 1)]], snap.version, snap.hash, snap.environment,
    source_path, json.encode({ text = rendered }))
end

--- Save a simulated account's snapshot (vibex.exchange.sim :snapshot()).
function R:paper_save(account, snapshot)
  return self.write([[INSERT INTO paper_states (account_id, state) VALUES (]] .. ACCOUNT .. [[, $2::jsonb)
    ON CONFLICT (account_id) DO UPDATE SET state = EXCLUDED.state]], account, json.encode(snapshot))
end

--- The saved snapshot of a simulated account, or nil when there is none.
function R:paper_load(account)
  local rows, err = self.pool:query([[SELECT p.state FROM paper_states p JOIN accounts a USING (account_id)
    WHERE a.name = $1 AND a.deleted_at IS NULL]], account)
  if not rows then return nil, err end
  if not rows[1] then return nil end
  return json.decode(rows[1].state)
end

--- r: account, reason, orders_checked, orders_updated, fills_recorded,
-- positions_corrected, foreign_orders, details (table).
function R:reconciliation(r)
  return self.write([[INSERT INTO reconciliations (account_id, reason, orders_checked, orders_updated, fills_recorded,
      positions_corrected, foreign_orders, details, run_id)
    VALUES (]] .. ACCOUNT .. [[, $2, $3, $4, $5, $6, $7, $8::jsonb, $9)]],
    r.account, r.reason, r.orders_checked or 0, r.orders_updated or 0, r.fills_recorded or 0, r.positions_corrected or 0,
    r.foreign_orders or 0, json.encode(r.details or {}), r.run_id)
end

function R:audit(table_name, row_id)
  return self.pool:query([[SELECT action, old_row, new_row, changed_at FROM audit_log
    WHERE table_name = $1 AND row_id = $2 ORDER BY audit_log_id]], table_name, row_id)
end

return R
