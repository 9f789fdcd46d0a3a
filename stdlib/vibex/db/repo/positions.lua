--- db.positions — the current position per (account, symbol, side); every
-- change is kept in position_history (trigger) and audited.
local R = {}
R.__index = R

--- p: account, symbol, position_side (BOTH), quantity, entry_price,
-- leverage, margin_type, unrealized_pnl, liquidation_price, exit_plan (JSON text).
function R:upsert(p)
  return self.write([[
    INSERT INTO positions (account_id, symbol, position_side, quantity, entry_price, leverage, margin_type,
                           unrealized_pnl, liquidation_price, exit_plan, opened_at)
    VALUES ((SELECT account_id FROM accounts WHERE name = $1 AND deleted_at IS NULL), $2, $3, $4, $5, $6, $7,
            COALESCE($8::numeric, 0), $9, $10::jsonb, now())
    ON CONFLICT (account_id, symbol, position_side) WHERE deleted_at IS NULL DO UPDATE SET
      quantity = EXCLUDED.quantity, entry_price = EXCLUDED.entry_price,
      leverage = COALESCE(EXCLUDED.leverage, positions.leverage),
      margin_type = COALESCE(EXCLUDED.margin_type, positions.margin_type),
      unrealized_pnl = EXCLUDED.unrealized_pnl, liquidation_price = EXCLUDED.liquidation_price,
      exit_plan = COALESCE(EXCLUDED.exit_plan, positions.exit_plan)]],
    p.account, p.symbol, p.position_side or "both", p.quantity, p.entry_price, p.leverage, p.margin_type,
    p.unrealized_pnl, p.liquidation_price, p.exit_plan)
end

--- What the agent knows about an open position beyond its size: the exit
-- plan, leverage, unrealized PnL and liquidation price. Updates the current
-- row only (the venue's events open and close rows).
function R:annotate(p)
  return self.write([[
    UPDATE positions SET exit_plan = COALESCE($4::jsonb, exit_plan), leverage = COALESCE($5, leverage),
      unrealized_pnl = COALESCE($6::numeric, unrealized_pnl), liquidation_price = COALESCE($7, liquidation_price)
    WHERE account_id = (SELECT account_id FROM accounts WHERE name = $1 AND deleted_at IS NULL)
      AND symbol = $2 AND position_side = $3 AND deleted_at IS NULL]],
    p.account, p.symbol, p.position_side or "both", p.exit_plan, p.leverage, p.unrealized_pnl, p.liquidation_price)
end

--- Close: quantity 0 and soft-deleted (its history stays).
function R:close(account, symbol, side)
  return self.write([[
    UPDATE positions SET quantity = 0, unrealized_pnl = 0, deleted_at = now()
    WHERE account_id = (SELECT account_id FROM accounts WHERE name = $1 AND deleted_at IS NULL)
      AND symbol = $2 AND position_side = $3 AND deleted_at IS NULL]], account, symbol, side or "both")
end

function R:current(account)
  return self.pool:query([[SELECT p.* FROM positions p JOIN accounts a USING (account_id)
    WHERE a.name = $1 AND p.deleted_at IS NULL ORDER BY p.symbol, p.position_side]], account)
end

function R:history(account, symbol)
  return self.pool:query([[SELECT h.* FROM position_history h JOIN positions p USING (position_id)
    JOIN accounts a USING (account_id) WHERE a.name = $1 AND p.symbol = $2 ORDER BY h.position_history_id]],
    account, symbol)
end

return R
