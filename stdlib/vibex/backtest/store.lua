--- vibex.backtest.store — backtests in the database: the run record made
-- before the first candle, everything it produced written in bulk (COPY)
-- in one transaction when it ends, and the list / show / compare / delete
-- behind `vibex backtest`.
--
--   local run = store.begin(pool, {accounts, config_hash, …})
--   store.save(pool, run_id, collector, report, o)
--   store.list(pool, {limit}) ; store.get(pool, run_id) ; store.delete(pool, run_id)
local collector = require "vibex.backtest.collector"
local errors = require "vibex.errors"
local json = require "vibex.json"
local pg = require "vibex.db.pg"
local runtime = require "vibex.runtime"

local M = {}

local copy_text = collector.copy_text

--- Backtests left unfinished by a process that is gone (killed, crashed):
-- recorded as crashed (vibex.db.repo.runs). Returns the run ids marked | nil, err.
function M.mark_dead(pool)
  local runs = setmetatable({ pool = pool }, require "vibex.db.repo.runs")
  return runs:mark_crashed { kind = "backtest", keep_own = true,
                             reason = "the process ended without finishing the run (killed or crashed)" }
end

--- The run row of a new backtest (never a resumed one: two backtests of
-- the same config are two runs). o: accounts, config_hash, script_versions,
-- from_ms, to_ms, details. Returns the row | nil, err.
function M.begin(pool, o)
  local _, merr = M.mark_dead(pool)
  if merr then return nil, merr end
  local identity = require("vibex.crypto").sha256(("backtest|%s|%d|%d"):format(o.config_hash or "", runtime.pid(),
    runtime.wall_ms()))
  local rows, err = pool:query([[INSERT INTO runs (kind, identity, accounts, config_hash, script_versions, data_from,
      data_to, pid, details)
    VALUES ('backtest', $1, $2::text[], $3, $4::jsonb, to_timestamp($5::float8 / 1000), to_timestamp($6::float8 / 1000), $7,
            $8::jsonb)
    RETURNING *]], identity, pg.text_array(o.accounts), o.config_hash, json.encode(o.script_versions or {}), o.from_ms,
    o.to_ms, runtime.pid(), json.encode(o.details or {}))
  if not rows then return nil, err end
  -- every account the run writes for has a row (a backtest never changes an existing one)
  for _, name in ipairs(o.accounts) do
    local _, aerr = pool:query([[INSERT INTO accounts (name, venue, mode) SELECT $1, 'sim', 'paper'
      WHERE NOT EXISTS (SELECT 1 FROM accounts WHERE name = $1 AND deleted_at IS NULL)]], name)
    if aerr then return nil, aerr end
  end
  return rows[1]
end

-- A file's bytes in chunks, for COPY.
local function file_chunks(path)
  local f = io.open(path, "rb")
  if not f then return function() return nil end end
  return function()
    local s = f:read(262144)
    if not s then f:close() end
    return s
  end
end

local function rows_text(rows, columns)
  local out = {}
  for i, r in ipairs(rows) do
    local parts = {}
    for j, c in ipairs(columns) do parts[j] = copy_text(r[c]) end
    out[i] = table.concat(parts, "\t")
  end
  return #out > 0 and (table.concat(out, "\n") .. "\n") or ""
end

local function copy_rows(c, tbl, rows, columns)
  if #rows == 0 then return true end
  return c:copy(("COPY %s (%s) FROM STDIN"):format(tbl, table.concat(columns, ", ")), rows_text(rows, columns))
end

local SNAP_COLUMNS = { "account", "time_ms", "equity", "wallet" }
local TRADE_COLUMNS = { "account", "symbol", "side", "opened_ms", "closed_ms", "quantity", "entry_price", "exit_price",
                        "pnl", "fees", "funding", "net", "reason" }

local STAGING = [[
CREATE TEMP TABLE bt_decisions (account text, cycle_key text, started_ms float8, strategy text, source text, provider text,
  model text, prompt_version text, prompt jsonb, raw_answer text, parsed jsonb, valid boolean, validation jsonb,
  tokens_in integer, tokens_out integer, latency_ms numeric, cost numeric, experiment text, variant text,
  config_hash text, step_ms jsonb, error text, equity numeric) ON COMMIT DROP;
CREATE TEMP TABLE bt_diary (account text, cycle_key text, body text, tags text[]) ON COMMIT DROP;
CREATE TEMP TABLE bt_orders (account text, client_order_id text, symbol text, side text, type text, kind text,
  quantity numeric, price numeric, stop_price numeric, position_side text, time_in_force text, reduce_only boolean,
  close_position boolean, working_type text, cycle_key text, leg integer, status text, parent_client_order_id text,
  executed_quantity numeric, average_price numeric, venue_order_id text, updated_ms float8, reject_reason text) ON COMMIT DROP;
CREATE TEMP TABLE bt_fills (account text, time text, symbol text, side text, price numeric, quantity numeric, fee numeric,
  fee_asset text, realized_pnl numeric, maker boolean, kind text, type text, client_order_id text, trade_id text,
  time_ms float8) ON COMMIT DROP;
CREATE TEMP TABLE bt_snapshots (account text, time_ms float8, equity numeric, wallet numeric) ON COMMIT DROP;
CREATE TEMP TABLE bt_trades (account text, symbol text, side text, opened_ms float8, closed_ms float8, quantity numeric,
  entry_price numeric, exit_price numeric, pnl numeric, fees numeric, funding numeric, net numeric, reason text) ON COMMIT DROP;
]]

local MOVE = [[
INSERT INTO decisions (account_id, strategy_id, cycle_key, provider, model, prompt_version, prompt, raw_answer, parsed,
                       valid, validation, tokens_in, tokens_out, latency_ms, cost, experiment, variant, config_hash,
                       step_ms, error, started_at, equity, run_id, completed_at)
  SELECT a.account_id, (SELECT strategy_id FROM strategies s WHERE s.name = d.strategy AND s.deleted_at IS NULL),
         d.cycle_key, d.provider, d.model, d.prompt_version, d.prompt, d.raw_answer, d.parsed, d.valid, d.validation,
         d.tokens_in, d.tokens_out, d.latency_ms, d.cost, d.experiment, d.variant, d.config_hash, d.step_ms, d.error,
         to_timestamp(d.started_ms / 1000), d.equity, $1, now()
  FROM bt_decisions d JOIN accounts a ON a.name = d.account AND a.deleted_at IS NULL;
INSERT INTO orders (account_id, decision_id, client_order_id, symbol, side, type, quantity, price, stop_price, position_side,
                    time_in_force, reduce_only, close_position, working_type, leg, status, kind, parent_client_order_id,
                    executed_quantity, average_price, venue_order_id, venue_updated_at, reject_reason, origin, run_id)
  SELECT a.account_id, d.decision_id, o.client_order_id, o.symbol, o.side, o.type, o.quantity, o.price, o.stop_price,
         o.position_side, o.time_in_force, o.reduce_only, o.close_position, o.working_type, o.leg, o.status, o.kind,
         o.parent_client_order_id, o.executed_quantity, o.average_price, o.venue_order_id, to_timestamp(o.updated_ms / 1000),
         o.reject_reason, 'agent', $1
  FROM bt_orders o JOIN accounts a ON a.name = o.account AND a.deleted_at IS NULL
  LEFT JOIN decisions d ON d.account_id = a.account_id AND d.run_id = $1 AND d.cycle_key = o.cycle_key;
INSERT INTO fills (account_id, order_id, client_order_id, trade_id, symbol, side, price, quantity, fee, fee_asset,
                   realized_pnl, is_maker, filled_at, run_id)
  SELECT a.account_id, o.order_id, f.client_order_id, f.trade_id, f.symbol, f.side, f.price, f.quantity, f.fee, f.fee_asset,
         f.realized_pnl, f.maker, to_timestamp(f.time_ms / 1000), $1
  FROM bt_fills f JOIN accounts a ON a.name = f.account AND a.deleted_at IS NULL
  LEFT JOIN orders o ON o.client_order_id = f.client_order_id
  ON CONFLICT DO NOTHING;
INSERT INTO account_snapshots (account_id, equity, wallet_balance, taken_at, run_id, cycle_key)
  SELECT a.account_id, s.equity, s.wallet, to_timestamp(s.time_ms / 1000), $1, NULL
  FROM bt_snapshots s JOIN accounts a ON a.name = s.account AND a.deleted_at IS NULL;
INSERT INTO diary_entries (account_id, decision_id, author, body, tags, cycle_key, run_id)
  SELECT a.account_id, d.decision_id, 'agent', e.body, e.tags, e.cycle_key, $1
  FROM bt_diary e JOIN accounts a ON a.name = e.account AND a.deleted_at IS NULL
  LEFT JOIN decisions d ON d.account_id = a.account_id AND d.run_id = $1 AND d.cycle_key = e.cycle_key
  ON CONFLICT DO NOTHING;
INSERT INTO backtest_trades (run_id, account, symbol, side, opened_at, closed_at, quantity, entry_price, exit_price, pnl,
                             fees, funding, net, reason)
  SELECT $1, account, symbol, side, to_timestamp(opened_ms / 1000), to_timestamp(closed_ms / 1000), quantity, entry_price,
         exit_price, pnl, fees, funding, net, reason FROM bt_trades;
]]

local function snapshot_rows(col)
  local rows = {}
  for _, name in ipairs(col.names) do
    local a = col.accounts[name]
    for i = 1, #a.t do rows[#rows + 1] = { account = name, time_ms = a.t[i], equity = a.equity[i], wallet = a.wallet_at[i] } end
  end
  return rows
end

--- Write everything a finished backtest produced under run_id, in one
-- transaction, and end the run with its outcome and report. o: answers
-- (the vibex.llm.replay store), outcome ("completed"). Returns counts | nil, err.
function M.save(pool, run_id, col, report, o)
  o = o or {}
  local trades = require("vibex.backtest.report").trades(col)
  local summary = {}
  for k, v in pairs(report) do summary[k] = v end
  local counts = {}
  local ok, err = pool:tx(function(c)
    local steps = {
      function() return c:exec(STAGING) end,
      function() return c:copy("COPY bt_decisions FROM STDIN (FORMAT text, HEADER true)", file_chunks(col.dir .. "/decisions.tsv")) end,
      function()
        if not col.diary then return true end
        return c:copy("COPY bt_diary FROM STDIN (FORMAT text, HEADER true)", file_chunks(col.dir .. "/diary.tsv"))
      end,
      function()
        return c:copy(("COPY bt_orders (%s) FROM STDIN (FORMAT csv, HEADER true)"):format(table.concat(collector.ORDER_COLUMNS, ", ")),
          file_chunks(col.dir .. "/orders.csv"))
      end,
      function()
        return c:copy(("COPY bt_fills (%s) FROM STDIN (FORMAT csv, HEADER true)"):format(table.concat(collector.FILL_COLUMNS, ", ")),
          file_chunks(col.dir .. "/fills.csv"))
      end,
      function() return copy_rows(c, "bt_snapshots", snapshot_rows(col), SNAP_COLUMNS) end,
      function() return copy_rows(c, "bt_trades", trades, TRADE_COLUMNS) end,
    }
    for _, step in ipairs(steps) do
      local res, serr = step()
      if res == nil then return nil, serr end
    end
    for stmt in MOVE:gmatch("(.-);\n") do
      local res, serr = c:query(stmt, run_id)
      if not res then return nil, serr end
      counts[#counts + 1] = res.count
    end
    if o.answers then
      local n, aerr = o.answers:save(run_id, c)
      if not n then return nil, aerr end
    end
    local res, uerr = c:query([[UPDATE runs SET outcome = $2, ended_at = now(), details = details || $3::jsonb
      WHERE run_id = $1]], run_id, o.outcome or "completed", json.encode({ report = summary, digest = report.digest,
                                                                              out = o.out }))
    if not res then return nil, uerr end
    return true
  end)
  if not ok then return nil, err end
  return { decisions = counts[1], orders = counts[2], fills = counts[3], snapshots = counts[4], diary = counts[5],
           trades = counts[6] }
end

--- End a run that did not complete (failed or stopped).
function M.fail(pool, run_id, outcome, why)
  return pool:query([[UPDATE runs SET outcome = $2, ended_at = now(), details = details || $3::jsonb WHERE run_id = $1]],
    run_id, outcome, json.encode({ error = why }))
end

--- The newest backtests: {run_id, started_at, outcome, accounts, from, to, report summary fields}.
function M.list(pool, o)
  o = o or {}
  local _, merr = M.mark_dead(pool)
  if merr then return nil, merr end
  return pool:query([[SELECT run_id, outcome, array_to_string(accounts, ',') AS accounts, config_hash,
      to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS started,
      to_char(data_from AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS data_from,
      to_char(data_to AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS data_to,
      details->'report' AS report, details->>'digest' AS digest, details->>'error' AS error
    FROM runs WHERE kind = 'backtest' ORDER BY run_id DESC LIMIT $1]], o.limit or 50)
end

--- One backtest's run row with its report decoded (nil, err not_found when none).
function M.get(pool, run_id)
  local rows, err = pool:query([[SELECT run_id, outcome, kind, details, array_to_string(accounts, ',') AS accounts
    FROM runs WHERE run_id = $1]], run_id)
  if not rows then return nil, err end
  local r = rows[1]
  if not r or r.kind ~= "backtest" then
    return nil, errors.new("not_found", ("no backtest run %s"):format(tostring(run_id)), { fix = "vibex backtest list" })
  end
  r.details = json.decode(r.details) or {}
  local trades, terr = pool:query([[SELECT account, symbol, side,
      to_char(opened_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS opened_at,
      to_char(closed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS closed_at,
      quantity::float8, entry_price::float8, exit_price::float8, pnl::float8, fees::float8, funding::float8, net::float8, reason
    FROM backtest_trades WHERE run_id = $1 ORDER BY opened_at, backtest_trade_id]], run_id)
  if not trades then return nil, terr end
  r.trades = {}
  for i, t in ipairs(trades) do r.trades[i] = t end
  return r
end

local DELETE = {
  "DELETE FROM diary_entries WHERE run_id = $1",
  "DELETE FROM fills WHERE run_id = $1",
  "DELETE FROM order_events WHERE order_id IN (SELECT order_id FROM orders WHERE run_id = $1)",
  "DELETE FROM orders WHERE run_id = $1",
  "DELETE FROM llm_calls WHERE run_id = $1",
  "DELETE FROM risk_refusals WHERE run_id = $1",
  "DELETE FROM account_snapshots WHERE run_id = $1",
  "DELETE FROM performance_metrics WHERE run_id = $1",
  "DELETE FROM funding_payments WHERE run_id = $1",
  "DELETE FROM decisions WHERE run_id = $1",
  "DELETE FROM runs WHERE run_id = $1 AND kind = 'backtest'",
}

--- Delete a backtest run and everything it recorded. true | nil, err.
function M.delete(pool, run_id)
  local r, err = M.get(pool, run_id)
  if not r then return nil, err end
  return pool:tx(function(c)
    for _, sql in ipairs(DELETE) do
      local res, derr = c:query(sql, run_id)
      if not res then return nil, derr end
    end
    return true
  end)
end

return M
