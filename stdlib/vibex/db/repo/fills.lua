--- db.fills — executions, stored once per (account, symbol, trade id).
local R = {}
R.__index = R

--- Record one of account's fills, f in the domain's names
-- (vibex.exchange.domain): client_order_id, trade_id, symbol, side, price,
-- quantity, fee, fee_asset, realized_pnl, maker, time_ms; run_id (the run
-- that saw it first). A fill is its venue trade id: stored once.
function R:record(account, f, run_id)
  return self.write([[
    INSERT INTO fills (account_id, order_id, client_order_id, trade_id, symbol, side, price, quantity, fee, fee_asset,
                       realized_pnl, is_maker, filled_at, run_id)
    VALUES ((SELECT account_id FROM accounts WHERE name = $1 AND deleted_at IS NULL),
            (SELECT order_id FROM orders WHERE client_order_id = $2), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
            to_timestamp($12::float8 / 1000), $13)
    ON CONFLICT (account_id, symbol, trade_id) DO NOTHING]],
    account, f.client_order_id, tostring(f.trade_id), f.symbol, f.side, f.price, f.quantity, f.fee or "0",
    f.fee_asset, f.realized_pnl or "0", f.maker or false, f.time_ms, run_id)
end

--- The largest numeric venue ids an account's record holds: {order, trade}
-- (0 when none) | nil, err. A simulated venue continues past them.
function R:max_ids(account)
  local rows, err = self.pool:query([[SELECT
      COALESCE((SELECT max(f.trade_id::numeric) FROM fills f WHERE f.account_id = a.account_id AND f.trade_id ~ '^[0-9]{1,18}$'), 0)
        AS trade,
      COALESCE((SELECT max(o.venue_order_id::numeric) FROM orders o
                WHERE o.account_id = a.account_id AND o.venue_order_id ~ '^[0-9]{1,18}$'), 0) AS ord
    FROM accounts a WHERE a.name = $1 AND a.deleted_at IS NULL]], account)
  if not rows then return nil, err end
  if not rows[1] then return { order = 0, trade = 0 } end
  return { order = tonumber(rows[1].ord) or 0, trade = tonumber(rows[1].trade) or 0 }
end

function R:for_order(client_order_id)
  return self.pool:query("SELECT * FROM fills WHERE client_order_id = $1 ORDER BY filled_at, fill_id", client_order_id)
end

return R
