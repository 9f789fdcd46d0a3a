--- db.orders — orders by client order id; every state change leaves an
-- order_events row (trigger) and an audit row.
--
-- Statuses: pending (recorded before it is sent), unknown (sent; the venue's
-- answer was lost), then the venue's: new, partially_filled, filled,
-- canceled, expired, rejected. An order only moves forward (pending →
-- unknown → new → partially_filled → one final status; the executed
-- quantity never shrinks), whatever time an update carries: an update
-- that would move it backwards changes nothing and comes back as
-- {refused = true, status = …} so the caller can say so. The database
-- refuses such a move from any other path too (migration 0007).
local json = require "vibex.json"

local R = {}
R.__index = R

local ACCOUNT = "(SELECT account_id FROM accounts WHERE name = $1 AND deleted_at IS NULL)"

--- Record an order before it is sent (idempotent on client_order_id).
-- o: account (name), client_order_id, symbol, side, type, quantity, price,
-- stop_price, position_side, time_in_force, reduce_only, close_position,
-- working_type, decision_id (or cycle_key: the account's decision of that
-- cycle), leg, status (pending), kind, parent_client_order_id, risk (the
-- gate's verdict, a table), origin (agent), run_id. Prices and quantities are the
-- exact strings that are sent.
function R:insert(o)
  return self.write([[
    INSERT INTO orders (account_id, client_order_id, symbol, side, type, quantity, price, stop_price, position_side,
                        time_in_force, reduce_only, close_position, working_type, decision_id, leg, status, kind,
                        parent_client_order_id, risk, origin, run_id)
    VALUES (]] .. ACCOUNT .. [[, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
            COALESCE($14, (SELECT decision_id FROM decisions WHERE account_id = ]] .. ACCOUNT .. [[ AND cycle_key = $17
                                                              AND COALESCE(run_id, 0) = COALESCE($22, 0))),
            $15, $16, $18, $19, $20::jsonb, $21, $22)
    ON CONFLICT (client_order_id) DO NOTHING]],
    o.account, o.client_order_id, o.symbol, o.side, o.type, o.quantity, o.price, o.stop_price,
    o.position_side or "both", o.time_in_force, o.reduce_only or false, o.close_position or false,
    o.working_type, o.decision_id, o.leg, o.status or "pending", o.cycle_key, o.kind, o.parent_client_order_id,
    o.risk and json.encode(o.risk) or nil, o.origin or "agent", o.run_id)
end

--- Apply what the venue says (or that it was sent, or that its outcome is
-- unknown). u: status, executed_quantity, average_price, venue_order_id,
-- venue_time_ms, reject_reason, sent_ms, resolved (true: an unknown outcome
-- became known now).
function R:update(client_order_id, u)
  local res, err = self.write([[
    UPDATE orders SET
      status = COALESCE($2, status),
      executed_quantity = COALESCE($3::numeric, executed_quantity),
      average_price = COALESCE($4, average_price), venue_order_id = COALESCE($5, venue_order_id),
      venue_updated_at = GREATEST(venue_updated_at, to_timestamp($6::float8 / 1000)),
      reject_reason = COALESCE($7, reject_reason),
      sent_at = COALESCE(sent_at, to_timestamp($8::float8 / 1000)),
      resolved_at = CASE WHEN $9::boolean THEN now() ELSE resolved_at END
    WHERE client_order_id = $1 AND vibex_order_forward(status, executed_quantity, $2, $3::numeric)
    RETURNING order_id]],
    client_order_id, u.status, u.executed_quantity, u.average_price, u.venue_order_id and tostring(u.venue_order_id),
    u.venue_time_ms, u.reject_reason, u.sent_ms, u.resolved or false)
  if type(res) == "table" and not res.journaled and not res.batched and #res == 0 and u.status then
    -- nothing matched: no such order, or a move backwards
    local cur = self.pool:query("SELECT status, executed_quantity FROM orders WHERE client_order_id = $1", client_order_id)
    if cur and cur[1] then
      return { refused = true, status = cur[1].status, executed_quantity = cur[1].executed_quantity }
    end
  end
  return res, err
end

function R:get(client_order_id)
  local rows, err = self.pool:query("SELECT * FROM orders WHERE client_order_id = $1 AND deleted_at IS NULL", client_order_id)
  if not rows then return nil, err end
  return rows[1]
end

--- Orders of an account whose state the venue may still change, or whose
-- outcome is not known yet: pending, unknown, new, partially_filled.
function R:unresolved(account)
  return self.pool:query([[SELECT o.*, extract(epoch FROM o.created_at) * 1000 AS created_ms,
      extract(epoch FROM o.sent_at) * 1000 AS sent_ms, d.cycle_key
    FROM orders o JOIN accounts a USING (account_id) LEFT JOIN decisions d USING (decision_id)
    WHERE a.name = $1 AND o.deleted_at IS NULL AND o.status IN ('pending', 'unknown', 'new', 'partially_filled')
    ORDER BY o.order_id]], account)
end
R.open = R.unresolved

--- Orders whose recorded fills fall short of their executed quantity (a
-- fill lost with a killed process or a dropped stream), newest first.
function R:missing_fills(account, limit)
  return self.pool:query([[SELECT o.client_order_id, o.symbol, o.venue_order_id, o.executed_quantity,
      coalesce((SELECT sum(f.quantity) FROM fills f WHERE f.client_order_id = o.client_order_id), 0) AS recorded
    FROM orders o JOIN accounts a USING (account_id)
    WHERE a.name = $1 AND o.deleted_at IS NULL AND o.executed_quantity > 0
      AND o.executed_quantity > coalesce((SELECT sum(f.quantity) FROM fills f WHERE f.client_order_id = o.client_order_id), 0)
    ORDER BY o.order_id DESC LIMIT $2]], account, limit or 200)
end

--- The legs of one cycle, in leg order.
function R:for_cycle(account, cycle_key)
  return self.pool:query([[SELECT o.* FROM orders o JOIN accounts a USING (account_id) JOIN decisions d USING (decision_id)
    WHERE a.name = $1 AND d.cycle_key = $2 ORDER BY o.leg, o.order_id]], account, cycle_key)
end

--- Which of these client ids the database holds (a set).
function R:known(client_order_ids)
  if #client_order_ids == 0 then return {} end
  local rows, err = self.pool:query("SELECT client_order_id FROM orders WHERE client_order_id = ANY($1::text[])",
    "{" .. table.concat(client_order_ids, ",") .. "}")
  if not rows then return nil, err end
  local set = {}
  for _, r in ipairs(rows) do set[r.client_order_id] = true end
  return set
end

--- Every state the order passed through, oldest first.
function R:events(client_order_id)
  return self.pool:query([[SELECT e.status, e.executed_quantity, e.average_price, e.venue_time, e.created_at
    FROM order_events e JOIN orders o USING (order_id) WHERE o.client_order_id = $1 ORDER BY e.order_event_id]],
    client_order_id)
end

return R
