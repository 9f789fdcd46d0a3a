--- db.fills — executions, stored once per (account, symbol, trade id).
local R = {}
R.__index = R

--- Record one of account's fills, f in the domain's names
-- (vibex.exchange.domain): client_order_id, trade_id, symbol, side, price,
-- quantity, fee, fee_asset, realized_pnl, maker, time_ms.
function R:record(account, f)
  return self.write([[
    INSERT INTO fills (account_id, order_id, client_order_id, trade_id, symbol, side, price, quantity, fee, fee_asset,
                       realized_pnl, is_maker, filled_at)
    VALUES ((SELECT account_id FROM accounts WHERE name = $1 AND deleted_at IS NULL),
            (SELECT order_id FROM orders WHERE client_order_id = $2), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
            to_timestamp($12::float8 / 1000))
    ON CONFLICT (account_id, symbol, trade_id) DO NOTHING]],
    account, f.client_order_id, tostring(f.trade_id), f.symbol, f.side, f.price, f.quantity, f.fee or "0",
    f.fee_asset, f.realized_pnl or "0", f.maker or false, f.time_ms)
end

function R:for_order(client_order_id)
  return self.pool:query("SELECT * FROM fills WHERE client_order_id = $1 ORDER BY filled_at, fill_id", client_order_id)
end

return R
