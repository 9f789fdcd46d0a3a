--- db.strategies — named strategies and which one each account runs.
local json = require "vibex.json"

local R = {}
R.__index = R

--- s: name, description, scripts (table), params (table): its strategy_id.
function R:ensure(s)
  local rows, err = self.pool:query([[
    INSERT INTO strategies (name, description, scripts, params) VALUES ($1, $2, $3::jsonb, $4::jsonb)
    ON CONFLICT (name) WHERE deleted_at IS NULL
    DO UPDATE SET description = EXCLUDED.description, scripts = EXCLUDED.scripts, params = EXCLUDED.params
    RETURNING strategy_id]], s.name, s.description or "", json.encode(s.scripts or {}), json.encode(s.params or {}))
  if not rows then return nil, err end
  return rows[1].strategy_id
end

--- Make `strategy` the account's current one (the previous assignment ends).
function R:assign(account, strategy)
  return self.pool:tx(function(c)
    local _, err = c:query([[UPDATE account_strategies SET unassigned_at = now()
      WHERE account_id = (SELECT account_id FROM accounts WHERE name = $1 AND deleted_at IS NULL)
        AND unassigned_at IS NULL]], account)
    if err then return nil, err end
    return c:query([[INSERT INTO account_strategies (account_id, strategy_id)
      VALUES ((SELECT account_id FROM accounts WHERE name = $1 AND deleted_at IS NULL),
              (SELECT strategy_id FROM strategies WHERE name = $2 AND deleted_at IS NULL))]], account, strategy)
  end)
end

function R:current(account)
  local rows, err = self.pool:query([[SELECT s.* FROM account_strategies x
    JOIN accounts a USING (account_id) JOIN strategies s USING (strategy_id)
    WHERE a.name = $1 AND x.unassigned_at IS NULL AND s.deleted_at IS NULL]], account)
  if not rows then return nil, err end
  return rows[1]
end

function R:history(account)
  return self.pool:query([[SELECT s.name, x.assigned_at, x.unassigned_at FROM account_strategies x
    JOIN accounts a USING (account_id) JOIN strategies s USING (strategy_id)
    WHERE a.name = $1 ORDER BY x.account_strategy_id]], account)
end

function R:delete(name)
  return self.write("UPDATE strategies SET deleted_at = now() WHERE name = $1 AND deleted_at IS NULL", name)
end

return R
