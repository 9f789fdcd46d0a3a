--- db.orders — orders by client order id; every state change leaves an
-- order_events row (trigger) and an audit row.
local R = {}
R.__index = R

local ACCOUNT = "(SELECT account_id FROM accounts WHERE name = $1 AND deleted_at IS NULL)"

--- Record an order intent (idempotent on client_order_id).
-- o: account (name), client_order_id, symbol, side, type, quantity, price,
-- stop_price, position_side, time_in_force, reduce_only, close_position,
-- working_type, decision_id (or cycle_key: the account's decision of that
-- cycle), leg, status (PENDING).
function R:insert(o)
  return self.write([[
    INSERT INTO orders (account_id, client_order_id, symbol, side, type, quantity, price, stop_price, position_side,
                        time_in_force, reduce_only, close_position, working_type, decision_id, leg, status)
    VALUES (]] .. ACCOUNT .. [[, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
            COALESCE($14, (SELECT decision_id FROM decisions WHERE account_id = ]] .. ACCOUNT .. [[ AND cycle_key = $17)),
            $15, $16)
    ON CONFLICT (client_order_id) DO NOTHING]],
    o.account, o.client_order_id, o.symbol, o.side, o.type, o.quantity, o.price, o.stop_price,
    o.position_side or "BOTH", o.time_in_force, o.reduce_only or false, o.close_position or false,
    o.working_type, o.decision_id, o.leg, o.status or "PENDING", o.cycle_key)
end

--- Apply a venue update; an update older than the one stored (venue_time_ms)
-- never moves the order back. u: status, executed_qty, avg_price,
-- venue_order_id, venue_time_ms, reject_reason.
function R:update(client_order_id, u)
  return self.write([[
    UPDATE orders SET status = COALESCE($2, status), executed_qty = COALESCE($3, executed_qty),
      avg_price = COALESCE($4, avg_price), venue_order_id = COALESCE($5, venue_order_id),
      venue_updated_at = COALESCE(to_timestamp($6::float8 / 1000), venue_updated_at),
      reject_reason = COALESCE($7, reject_reason)
    WHERE client_order_id = $1
      AND ($6::float8 IS NULL OR venue_updated_at IS NULL OR venue_updated_at <= to_timestamp($6::float8 / 1000))]],
    client_order_id, u.status, u.executed_qty, u.avg_price, u.venue_order_id and tostring(u.venue_order_id),
    u.venue_time_ms, u.reject_reason)
end

function R:get(client_order_id)
  local rows, err = self.pool:query("SELECT * FROM orders WHERE client_order_id = $1 AND deleted_at IS NULL", client_order_id)
  if not rows then return nil, err end
  return rows[1]
end

--- Orders of an account that may still fill.
function R:open(account)
  return self.pool:query([[SELECT o.* FROM orders o JOIN accounts a USING (account_id)
    WHERE a.name = $1 AND o.deleted_at IS NULL AND o.status IN ('PENDING', 'NEW', 'PARTIALLY_FILLED')
    ORDER BY o.order_id]], account)
end

--- Every state the order passed through, oldest first.
function R:events(client_order_id)
  return self.pool:query([[SELECT e.status, e.executed_qty, e.avg_price, e.venue_time, e.created_at
    FROM order_events e JOIN orders o USING (order_id) WHERE o.client_order_id = $1 ORDER BY e.order_event_id]],
    client_order_id)
end

return R
