--- db.positions — the current position per (account, symbol, side); every
-- change is kept in position_history (trigger) and audited.
local R = {}
R.__index = R

-- Whether an event at (time $T ms, number $S) is newer than what row q holds:
-- with a number, (time, number) must be greater; without one, the time
-- must not be older (two events of one millisecond both apply).
local NEWER = [[(%s.venue_time IS NULL OR $T::float8 IS NULL
  OR CASE WHEN $S::bigint IS NULL THEN %s.venue_time <= to_timestamp($T::float8 / 1000)
          ELSE (%s.venue_time, COALESCE(%s.venue_seq, -1)) < (to_timestamp($T::float8 / 1000), $S::bigint) END)]]
local function newer(q, t, s)
  return (NEWER:format(q, q, q, q):gsub("%$T", t):gsub("%$S", s))
end

--- p: account, symbol, position_side (BOTH), quantity, entry_price,
-- leverage, margin_type, unrealized_pnl, liquidation_price, exit_plan (JSON
-- text), time_ms and seq (the venue's time and number of the event). An
-- event older than the last one applied to this position (open, or closed
-- since) changes nothing.
function R:upsert(p)
  return self.write([[
    INSERT INTO positions (account_id, symbol, position_side, quantity, entry_price, leverage, margin_type,
                           unrealized_pnl, liquidation_price, exit_plan, opened_at, venue_time, venue_seq)
    SELECT a.account_id, $2, $3, $4, $5, $6, $7, COALESCE($8::numeric, 0), $9, $10::jsonb, now(),
           to_timestamp($11::float8 / 1000), $12
    FROM accounts a WHERE a.name = $1 AND a.deleted_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM positions q WHERE q.account_id = a.account_id AND q.symbol = $2
                        AND q.position_side = $3 AND q.deleted_at IS NOT NULL AND NOT ]] .. newer("q", "$11", "$12") .. [[)
    ON CONFLICT (account_id, symbol, position_side) WHERE deleted_at IS NULL DO UPDATE SET
      quantity = EXCLUDED.quantity, entry_price = EXCLUDED.entry_price,
      leverage = COALESCE(EXCLUDED.leverage, positions.leverage),
      margin_type = COALESCE(EXCLUDED.margin_type, positions.margin_type),
      unrealized_pnl = EXCLUDED.unrealized_pnl, liquidation_price = EXCLUDED.liquidation_price,
      exit_plan = COALESCE(EXCLUDED.exit_plan, positions.exit_plan),
      venue_time = COALESCE(EXCLUDED.venue_time, positions.venue_time),
      venue_seq = CASE WHEN EXCLUDED.venue_time IS NULL THEN positions.venue_seq ELSE EXCLUDED.venue_seq END
    WHERE ]] .. newer("positions", "$11", "$12"),
    p.account, p.symbol, p.position_side or "both", p.quantity, p.entry_price, p.leverage, p.margin_type,
    p.unrealized_pnl, p.liquidation_price, p.exit_plan, p.time_ms, p.seq)
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

--- Close: quantity 0 and soft-deleted (its history stays); time_ms and seq as for upsert.
function R:close(account, symbol, side, time_ms, seq)
  return self.write([[
    UPDATE positions SET quantity = 0, unrealized_pnl = 0, deleted_at = now(),
      venue_time = COALESCE(to_timestamp($4::float8 / 1000), venue_time),
      venue_seq = CASE WHEN $4::float8 IS NULL THEN venue_seq ELSE $5 END
    WHERE account_id = (SELECT account_id FROM accounts WHERE name = $1 AND deleted_at IS NULL)
      AND symbol = $2 AND position_side = $3 AND deleted_at IS NULL AND ]] .. newer("positions", "$4", "$5"),
    account, symbol, side or "both", time_ms, seq)
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
