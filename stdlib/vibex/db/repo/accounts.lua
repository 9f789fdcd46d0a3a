--- db.accounts — accounts by name (soft-deleted ones are hidden).
local R = {}
R.__index = R

--- Create or update an account: its account_id | nil, err.
function R:ensure(a)
  local rows, err = self.pool:query([[
    INSERT INTO accounts (name, venue, mode, quote_asset) VALUES ($1, $2, $3, $4)
    ON CONFLICT (name) WHERE deleted_at IS NULL
    DO UPDATE SET venue = EXCLUDED.venue, mode = EXCLUDED.mode, quote_asset = EXCLUDED.quote_asset
    RETURNING account_id]], a.name, a.venue or "sim", a.mode or "paper", a.quote_asset or "USDT")
  if not rows then return nil, err end
  return rows[1].account_id
end

function R:get(name)
  local rows, err = self.pool:query("SELECT * FROM accounts WHERE name = $1 AND deleted_at IS NULL", name)
  if not rows then return nil, err end
  return rows[1]
end

function R:list()
  return self.pool:query("SELECT * FROM accounts WHERE deleted_at IS NULL ORDER BY name")
end

--- Soft delete: the row stays (and its history) but default queries no longer see it.
function R:delete(name)
  return self.write("UPDATE accounts SET deleted_at = now() WHERE name = $1 AND deleted_at IS NULL", name)
end

return R
