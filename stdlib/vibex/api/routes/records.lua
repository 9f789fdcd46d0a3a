--- vibex.api.routes.records — what the agent decided and wrote down:
-- decisions (with prompt, answer, validation, step timings), the diary
-- (with the user's notes, edits and soft deletes), performance, the A/B
-- experiments, model statistics, backtest runs, the audit log.
local T = require "vibex.api.types"
local C = require "vibex.api.routes.common"
local json = require "vibex.json"

local obj, str, arr, int, ref = T.obj, T.str, T.arr, T.int, T.ref

local DEC_SELECT = [[d.decision_id, a.name AS account, d.cycle_key, d.provider, d.model, d.valid, d.error, d.parsed,
  d.tokens_in, d.tokens_out, d.latency_ms, d.cost, d.experiment, d.variant, d.equity, d.started_at]]

local function rationale(parsed)
  for _, d in ipairs(parsed and parsed.decisions or {}) do
    local r = d.rationale or d.reasoning or d.justification
    if type(r) == "string" then return r end
  end
end

local function decision(r)
  local parsed = C.decode(r.parsed)
  return { decision_id = tonumber(r.decision_id), account = r.account, cycle_key = r.cycle_key,
           source = parsed and parsed.source or (r.error and "error" or nil), provider = r.provider, model = r.model, valid = r.valid,
           error = r.error, decisions = T.list(parsed and parsed.decisions), rationale = rationale(parsed),
           tokens_in = r.tokens_in, tokens_out = r.tokens_out, latency_ms = tonumber(r.latency_ms), cost = C.dec(r.cost),
           experiment = r.experiment, variant = r.variant, equity = C.dec(r.equity), started_at = T.iso(r.started_at) }
end

local function diary(r)
  local tags = {}
  for t in (r.tags or ""):gmatch("[^,]+") do tags[#tags + 1] = t end
  return { diary_entry_id = tonumber(r.diary_entry_id), account = r.account, author = r.author, body = r.body, tags = T.list(tags),
           cycle_key = r.cycle_key, edited_by = r.edited_by, created_at = T.iso(r.created_at), updated_at = T.iso(r.updated_at) }
end

local DIARY_SELECT = [[e.diary_entry_id, a.name AS account, e.author, e.body, array_to_string(e.tags, ',') AS tags, e.cycle_key,
  e.edited_by, e.created_at, e.updated_at]]
local DIARY_FROM = "diary_entries e LEFT JOIN accounts a USING (account_id)"

local function diary_get(c, id)
  local rows, err = C.pool(c):query(("SELECT %s FROM %s WHERE e.diary_entry_id = $1 AND e.deleted_at IS NULL"):format(DIARY_SELECT, DIARY_FROM), id)
  if not rows then return nil, 503, C.err("unavailable", tostring(err)) end
  if not rows[1] then return nil, 404, C.err("not_found", ("no diary entry %s"):format(tostring(id))) end
  return rows[1]
end

local function id_param(c, name)
  local id = tonumber(c.params[name])
  if not id or id ~= math.floor(id) or id < 1 then return nil end
  return id
end

local OPEN = obj({}, {}, { additionalProperties = true })

return {
  { method = "GET", path = "/api/v1/decisions", id = "listDecisions", tag = "decisions", scope = "read",
    summary = "Decision cycles, newest first (what was decided and why)",
    query = { C.ACCOUNT, { name = "source", schema = str(), doc = "model, fallback, manual, error, none" },
              { name = "cycle_key", schema = str(), doc = "the cycle (as the stream's decision events name it)" }, C.FROM, C.TO, C.CURSOR, C.LIMIT },
    responses = { [200] = { schema = T.page(ref "Decision") } },
    handler = function(c)
      return C.answer(c, { select = DEC_SELECT, from = "decisions d JOIN accounts a USING (account_id)", id = "d.decision_id",
                           account = "a.name", time = "d.started_at",
                           where = { { "d.parsed->>'source' = $?", c.query.source }, { "d.cycle_key = $?", c.query.cycle_key } }, map = decision })
    end },
  { method = "GET", path = "/api/v1/decisions/{id}", id = "getDecision", tag = "decisions", scope = "read",
    summary = "One decision: the prompt as sent, the raw answer, the validation, step timings and its orders",
    responses = { [200] = { schema = ref "DecisionDetail" } },
    handler = function(c)
      local id = id_param(c, "id")
      if not id then return 400, C.err("invalid", "id: a positive integer (decision_id)") end
      local pool = C.pool(c)
      local rows, err = pool:query([[SELECT d.*, a.name AS account FROM decisions d JOIN accounts a USING (account_id)
        WHERE d.decision_id = $1]], id)
      if not rows then return 503, C.err("unavailable", tostring(err)) end
      local r = rows[1]
      if not r then return 404, C.err("not_found", ("no decision %d"):format(id)) end
      local parsed = C.decode(r.parsed)
      local out = { decision_id = id, account = r.account, cycle_key = r.cycle_key, source = parsed and parsed.source,
                    provider = r.provider, model = r.model, valid = r.valid, error = r.error, prompt = C.decode(r.prompt),
                    raw_answer = r.raw_answer, parsed = parsed, validation = C.decode(r.validation), step_ms = C.decode(r.step_ms),
                    tokens_in = r.tokens_in, tokens_out = r.tokens_out, latency_ms = tonumber(r.latency_ms), cost = C.dec(r.cost),
                    experiment = r.experiment, variant = r.variant, equity = C.dec(r.equity), prompt_version = r.prompt_version,
                    config_hash = r.config_hash, started_at = T.iso(r.started_at) }
      local orders = pool:query([[SELECT o.order_id, a.name AS account, o.client_order_id, o.venue_order_id, o.symbol, o.side, o.type,
          o.status, o.quantity, o.price, o.stop_price, o.executed_quantity, o.average_price, o.reduce_only, o.close_position, o.reject_reason,
          o.origin, o.kind, o.created_at, o.updated_at
        FROM orders o JOIN accounts a USING (account_id) WHERE o.decision_id = $1 ORDER BY o.leg, o.order_id]], id) or {}
      local list = {}
      for i, o in ipairs(orders) do list[i] = C.order(o) end
      out.orders = T.list(list)
      return 200, out
    end },
  { method = "GET", path = "/api/v1/diary", id = "listDiary", tag = "diary", scope = "read", summary = "The diary, newest first",
    query = { C.ACCOUNT, { name = "tag", schema = str(), doc = "only entries with this tag" },
              { name = "author", schema = T.enum { "agent", "user" } }, C.FROM, C.TO, C.CURSOR, C.LIMIT },
    responses = { [200] = { schema = T.page(ref "DiaryEntry") } },
    handler = function(c)
      return C.answer(c, { select = DIARY_SELECT, from = DIARY_FROM, id = "e.diary_entry_id", account = "a.name", time = "e.created_at",
                           filter = "e.deleted_at IS NULL", where = { { "$? = ANY (e.tags)", c.query.tag }, { "e.author = $?", c.query.author } },
                           map = diary })
    end },
  { method = "POST", path = "/api/v1/diary", id = "addDiaryEntry", tag = "diary", scope = "trade", summary = "Add a note to the diary",
    body = obj({ account = str(), body = str { minLength = 1, maxLength = 20000 }, tags = arr(str { maxLength = 64 }, { maxItems = 20 }) }, { "body" }),
    body_example = { account = "trend", body = "Paused over the CPI print.", tags = { "macro" } },
    responses = { [201] = { description = "Created", schema = ref "DiaryEntry" } },
    handler = function(c)
      local b = c.body
      if b.account and not (c.app.runners[b.account] or c.app.stopped[b.account]) then
        return 404, C.err("not_found", ("no account %q"):format(b.account))
      end
      local pg = require "vibex.db.pg"
      local rows, err = C.pool(c):query([[INSERT INTO diary_entries (account_id, author, body, tags, edited_by)
        VALUES ((SELECT account_id FROM accounts WHERE name = $1 AND deleted_at IS NULL), 'user', $2, $3::text[], $4)
        RETURNING diary_entry_id]], b.account, b.body, pg.text_array(b.tags or {}), c.who.name)
      if not rows then return 503, C.err("unavailable", tostring(err)) end
      local row = diary_get(c, rows[1].diary_entry_id)
      local entry = diary(row)
      c.api:observe("diary", { account = entry.account, author = "user", body = entry.body, tags = entry.tags, by = c.who.name,
                               diary_entry_id = entry.diary_entry_id })
      return 201, entry
    end },
  { method = "PATCH", path = "/api/v1/diary/{id}", id = "editDiaryEntry", tag = "diary", scope = "trade",
    summary = "Edit a user's note (the agent's entries are the record and stay as written)",
    body = obj({ body = str { minLength = 1, maxLength = 20000 }, tags = arr(str { maxLength = 64 }, { maxItems = 20 }) }),
    responses = { [200] = { schema = ref "DiaryEntry" } },
    handler = function(c)
      local id = id_param(c, "id")
      if not id then return 400, C.err("invalid", "id: a positive integer") end
      local row, st, e = diary_get(c, id)
      if not row then return st, e end
      if row.author ~= "user" then return 409, C.err("conflict", "the agent's entries cannot be edited: add a note instead") end
      local pg = require "vibex.db.pg"
      local tags = c.body.tags and pg.text_array(c.body.tags) or nil
      local ok, err = C.pool(c):query([[UPDATE diary_entries SET body = COALESCE($2, body), tags = COALESCE($3::text[], tags),
        edited_by = $4, updated_at = now() WHERE diary_entry_id = $1]], id, c.body.body, tags, c.who.name)
      if not ok then return 503, C.err("unavailable", tostring(err)) end
      return 200, diary(diary_get(c, id))
    end },
  { method = "DELETE", path = "/api/v1/diary/{id}", id = "deleteDiaryEntry", tag = "diary", scope = "trade",
    summary = "Delete a user's note (soft: it stays in the database, hidden)",
    responses = { [200] = { schema = obj({ deleted = T.bool(), diary_entry_id = int() }, { "deleted", "diary_entry_id" }) } },
    handler = function(c)
      local id = id_param(c, "id")
      if not id then return 400, C.err("invalid", "id: a positive integer") end
      local row, st, e = diary_get(c, id)
      if not row then return st, e end
      if row.author ~= "user" then return 409, C.err("conflict", "the agent's entries cannot be deleted") end
      local ok, err = C.pool(c):query("UPDATE diary_entries SET deleted_at = now(), edited_by = $2 WHERE diary_entry_id = $1", id, c.who.name)
      if not ok then return 503, C.err("unavailable", tostring(err)) end
      return 200, { deleted = true, diary_entry_id = id }
    end },
  { method = "GET", path = "/api/v1/performance", id = "getPerformance", tag = "performance", scope = "read",
    summary = "Equity curve (account snapshots) and the latest metrics per account, window and strategy",
    query = { C.ACCOUNT, C.FROM, C.TO, { name = "points", schema = int { minimum = 2, maximum = 5000 }, doc = "at most this many curve points (default 500)" } },
    responses = { [200] = { schema = obj({ curves = obj({}, {}, { additionalProperties = arr(ref "EquityPoint") }),
                                           metrics = arr(ref "Metrics") }, { "curves", "metrics" }) } },
    handler = function(c)
      local q, pool = c.query, C.pool(c)
      local rows, err = pool:query([[SELECT a.name AS account, s.taken_at, s.equity, s.wallet_balance, s.unrealized_pnl
        FROM account_snapshots s JOIN accounts a USING (account_id)
        WHERE ($1::text IS NULL OR a.name = $1) AND ($2::float8 IS NULL OR s.taken_at >= to_timestamp($2 / 1000.0))
          AND ($3::float8 IS NULL OR s.taken_at < to_timestamp($3 / 1000.0))
        ORDER BY a.name, s.taken_at, s.account_snapshot_id]], q.account, q.from, q.to)
      if not rows then return 503, C.err("unavailable", tostring(err)) end
      local by = {}
      for _, r in ipairs(rows) do
        by[r.account] = by[r.account] or {}
        local l = by[r.account]
        l[#l + 1] = { time = T.iso(r.taken_at), equity = C.dec(r.equity), wallet = C.dec(r.wallet_balance), unrealized_pnl = C.dec(r.unrealized_pnl) }
      end
      local max = q.points or 500
      for name, l in pairs(by) do -- thinned evenly, the last point kept
        if #l > max then
          local t, step = {}, #l / max
          for i = 1, max - 1 do t[#t + 1] = l[math.floor((i - 1) * step) + 1] end
          t[#t + 1] = l[#l]
          by[name] = t
        end
      end
      local m = pool:query([[SELECT DISTINCT ON (a.name, p.window_name, p.strategy) a.name AS account, p.strategy, p.window_name,
          p.equity, p.pnl, p.return_pct, p.max_drawdown, p.sharpe, p.win_rate, p.trades, p.fees, p.funding, p.computed_at
        FROM performance_metrics p JOIN accounts a USING (account_id) WHERE ($1::text IS NULL OR a.name = $1)
        ORDER BY a.name, p.window_name, p.strategy, p.computed_at DESC, p.performance_metric_id DESC]], q.account) or {}
      local metrics = {}
      for i, r in ipairs(m) do
        metrics[i] = { account = r.account, strategy = r.strategy, window = r.window_name, equity = C.dec(r.equity), pnl = C.dec(r.pnl),
                       return_pct = C.dec(r.return_pct), max_drawdown = C.dec(r.max_drawdown), sharpe = C.dec(r.sharpe),
                       win_rate = C.dec(r.win_rate), trades = r.trades, fees = C.dec(r.fees), funding = C.dec(r.funding),
                       computed_at = T.iso(r.computed_at) }
      end
      return 200, { curves = by, metrics = T.list(metrics) }
    end },
  { method = "GET", path = "/api/v1/experiments", id = "listExperiments", tag = "experiments", scope = "read",
    summary = "A/B experiments (the data of `vibex ab report`)",
    responses = { [200] = { schema = obj({ items = arr(OPEN) }, { "items" }) } },
    handler = function(c)
      local rows, err = require("vibex.ab.report").list(C.pool(c))
      if not rows then return 503, C.err("unavailable", tostring(err)) end
      local items = {}
      for i, r in ipairs(rows) do items[i] = json.decode(json.encode(r)) end
      return 200, { items = T.list(items) }
    end },
  { method = "GET", path = "/api/v1/experiments/{name}", id = "getExperiment", tag = "experiments", scope = "read",
    summary = "One experiment's report: variants, rewards, confidence intervals, verdict",
    responses = { [200] = { schema = OPEN } },
    handler = function(c)
      local report = require "vibex.ab.report"
      local r, err = report.build(C.pool(c), c.params.name, {})
      if not r then return 404, C.err("not_found", tostring(err and err.message or err)) end
      return 200, report.data(r)
    end },
  { method = "GET", path = "/api/v1/models/stats", id = "modelStats", tag = "models", scope = "read",
    summary = "Model calls by provider, model and variant: latency percentiles, errors, tokens, cost (`vibex llm stats`)",
    responses = { [200] = { schema = obj({ items = arr(OPEN) }, { "items" }) } },
    handler = function(c)
      local rows, err = require("vibex.llm.stats").summary(C.pool(c))
      if not rows then return 503, C.err("unavailable", tostring(err)) end
      return 200, { items = T.list(rows) }
    end },
  { method = "GET", path = "/api/v1/backtests", id = "listBacktests", tag = "backtests", scope = "read",
    summary = "Backtest runs, newest first", query = { C.LIMIT },
    responses = { [200] = { schema = obj({ items = arr(OPEN) }, { "items" }) } },
    handler = function(c)
      local rows, err = require("vibex.backtest.store").list(C.pool(c), { limit = c.query.limit })
      if not rows then return 503, C.err("unavailable", tostring(err)) end
      local items = {}
      for i, r in ipairs(rows) do
        items[i] = { run_id = tonumber(r.run_id), outcome = r.outcome, accounts = r.accounts, started = r.started, data_from = r.data_from,
                     data_to = r.data_to, digest = r.digest, error = r.error, report = C.decode(r.report) }
      end
      return 200, { items = T.list(items) }
    end },
  { method = "GET", path = "/api/v1/backtests/{id}", id = "getBacktest", tag = "backtests", scope = "read",
    summary = "One backtest: its report and trades", responses = { [200] = { schema = OPEN } },
    handler = function(c)
      local id = id_param(c, "id")
      if not id then return 400, C.err("invalid", "id: a positive integer (run_id)") end
      local r, err = require("vibex.backtest.store").get(C.pool(c), id)
      if not r then return (err and err.kind == "not_found") and 404 or 503, C.err(err and err.kind or "unavailable", tostring(err and err.message or err)) end
      return 200, { run_id = id, outcome = r.outcome, accounts = r.accounts, details = r.details, trades = T.list(r.trades) }
    end },
  { method = "GET", path = "/api/v1/audit", id = "listAudit", tag = "audit", scope = "read",
    summary = "The audit log: every API mutation with who made it, and every change to accounts, orders and positions",
    query = { { name = "actor", schema = str() }, { name = "action", schema = T.enum { "INSERT", "UPDATE", "DELETE", "API" } }, C.FROM, C.TO, C.CURSOR, C.LIMIT },
    responses = { [200] = { schema = T.page(ref "AuditEntry") } },
    handler = function(c)
      return C.answer(c, { select = "l.audit_log_id, l.actor, l.action, l.table_name, l.row_id, COALESCE(l.new_row, l.old_row) AS detail, l.changed_at",
                           from = "audit_log l", id = "l.audit_log_id", time = "l.changed_at",
                           where = { { "l.actor = $?", c.query.actor }, { "l.action = $?", c.query.action } },
                           map = function(r)
                             return { audit_log_id = tonumber(r.audit_log_id), actor = r.actor, action = r.action, table_name = r.table_name,
                                      row_id = tonumber(r.row_id), detail = C.decode(r.detail), changed_at = T.iso(r.changed_at) }
                           end })
    end },
}
