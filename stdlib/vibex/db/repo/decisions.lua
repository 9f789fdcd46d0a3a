--- db.decisions — one row per decision cycle (account, cycle key).
local json = require "vibex.json"

local R = {}
R.__index = R

local function js(v)
  if v == nil then return nil end
  if type(v) == "string" then return v end
  return json.encode(v)
end

--- d: account, cycle_key, strategy, provider, model, prompt_version, prompt
-- (table or JSON), raw_answer, parsed, valid, validation, tokens_in,
-- tokens_out, latency_ms, cost (string), experiment, variant, config_hash,
-- step_ms, error, started_ms, experiment_version, equity (at the cycle's start), run_id, completed (true: the
-- cycle's whole record is in this write). Recording the same cycle of the same run again updates it; once
-- completed, a cycle's row never changes again.
function R:record(d)
  return self.write([[
    INSERT INTO decisions (account_id, strategy_id, cycle_key, provider, model, prompt_version, prompt, raw_answer, parsed,
                           valid, validation, tokens_in, tokens_out, latency_ms, cost, experiment, variant, config_hash,
                           step_ms, error, started_at, experiment_version, equity, run_id, completed_at)
    VALUES ((SELECT account_id FROM accounts WHERE name = $1 AND deleted_at IS NULL),
            (SELECT strategy_id FROM strategies WHERE name = $2 AND deleted_at IS NULL),
            $3, $4, $5, $6, $7::jsonb, $8, $9::jsonb, $10, $11::jsonb, $12, $13, $14, $15, $16, $17, $18, $19::jsonb, $20,
            COALESCE(to_timestamp($21::float8 / 1000), now()), $22, $23, $24,
            CASE WHEN $25::boolean THEN now() END)
    ON CONFLICT (account_id, (COALESCE(run_id, 0)), cycle_key) DO UPDATE SET
      raw_answer = EXCLUDED.raw_answer, parsed = EXCLUDED.parsed, valid = EXCLUDED.valid,
      validation = EXCLUDED.validation, tokens_in = EXCLUDED.tokens_in, tokens_out = EXCLUDED.tokens_out,
      latency_ms = EXCLUDED.latency_ms, cost = EXCLUDED.cost, step_ms = EXCLUDED.step_ms, error = EXCLUDED.error,
      equity = COALESCE(EXCLUDED.equity, decisions.equity), completed_at = COALESCE(decisions.completed_at, EXCLUDED.completed_at)
    WHERE decisions.completed_at IS NULL]],
    d.account, d.strategy, d.cycle_key, d.provider, d.model, d.prompt_version, js(d.prompt), d.raw_answer, js(d.parsed),
    d.valid, js(d.validation), d.tokens_in, d.tokens_out, d.latency_ms, d.cost, d.experiment, d.variant,
    d.config_hash, js(d.step_ms), d.error, d.started_ms, d.experiment_version, d.equity, d.run_id, d.completed or false)
end

--- What a run recorded for an account, by cycle key: {cycle_key = {parsed, raw_answer, completed}}.
function R:for_run(run_id, account)
  local rows, err = self.pool:query([[SELECT d.cycle_key, d.parsed, d.raw_answer, d.validation, d.error, d.valid,
      d.completed_at IS NOT NULL AS completed
    FROM decisions d JOIN accounts a USING (account_id) WHERE d.run_id = $1 AND a.name = $2]], run_id, account)
  if not rows then return nil, err end
  local out = {}
  for _, r in ipairs(rows) do
    out[r.cycle_key] = { parsed = r.parsed and json.decode(r.parsed), raw_answer = r.raw_answer, completed = r.completed,
                         validation = r.validation and json.decode(r.validation), error = r.error, valid = r.valid }
  end
  return out
end

function R:get(account, cycle_key)
  local rows, err = self.pool:query([[SELECT d.* FROM decisions d JOIN accounts a USING (account_id)
    WHERE a.name = $1 AND d.cycle_key = $2]], account, cycle_key)
  if not rows then return nil, err end
  return rows[1]
end

--- The newest cycle key recorded for an account (nil when none).
function R:last_key(account)
  local rows, err = self.pool:query([[SELECT d.cycle_key FROM decisions d JOIN accounts a USING (account_id)
    WHERE a.name = $1 ORDER BY d.started_at DESC, d.decision_id DESC LIMIT 1]], account)
  if not rows then return nil, err end
  return rows[1] and rows[1].cycle_key
end

function R:recent(account, limit)
  return self.pool:query([[SELECT d.* FROM decisions d JOIN accounts a USING (account_id)
    WHERE a.name = $1 ORDER BY d.started_at DESC, d.decision_id DESC LIMIT $2]], account, limit or 20)
end

return R
