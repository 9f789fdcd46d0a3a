--- vibex.api.routes.common — what the route files share: the standard list
-- parameters, keyset pagination over a table, row conversions (the
-- database's words to the API's: lower-case sides and statuses, times as
-- ISO text, money as decimal strings).
local T = require "vibex.api.types"
local json = require "vibex.json"

local M = {}

M.LIMIT = { name = "limit", schema = T.int { minimum = 1, maximum = 500, default = 50 }, doc = "items per page (1-500, default 50)" }
M.CURSOR = { name = "cursor", schema = T.str(), doc = "next_cursor of the previous page" }
M.ACCOUNT = { name = "account", schema = T.str(), doc = "only this account" }
M.SYMBOL = { name = "symbol", schema = T.str { pattern = T.SYMBOL }, doc = "only this symbol, e.g. BTCUSDT" }
M.FROM = { name = "from", schema = T.time(), doc = "from this time (ISO 8601 or epoch ms), inclusive" }
M.TO = { name = "to", schema = T.time(), doc = "up to this time, exclusive" }
M.LIST = { M.ACCOUNT, M.SYMBOL, M.FROM, M.TO, M.CURSOR, M.LIMIT }

function M.err(kind, message, fix) return { error = { kind = kind, message = message, fix = fix } } end

function M.pool(c)
  local db = c.app.db
  return db and db.pool
end

--- A page of rows, newest first. o: select (columns), from (tables and
--- joins), id (the key column, descending), filter (fixed SQL), where
--- {{sql with $?, value}, …} (skipped when the value is nil),
--- account, symbol, time (columns the standard filters apply to), map(row).
function M.page(c, o)
  local q = c.query
  local where, args = {}, {}
  local function add(sql, v)
    args[#args + 1] = v
    where[#where + 1] = (sql:gsub("%$%?", "$" .. #args))
  end
  if o.filter then where[#where + 1] = o.filter end
  for _, w in ipairs(o.where or {}) do
    if w[2] ~= nil then add(w[1], w[2]) end
  end
  if o.account and q.account then add(o.account .. " = $?", q.account) end
  if o.symbol and q.symbol then add(o.symbol .. " = $?", q.symbol) end
  if o.time and q.from then add(o.time .. " >= to_timestamp($? / 1000.0)", q.from) end
  if o.time and q.to then add(o.time .. " < to_timestamp($? / 1000.0)", q.to) end
  if q.cursor then
    local id = tonumber(q.cursor)
    if not id then return nil, M.err("invalid", "cursor: not a cursor this API gave", "pass next_cursor unchanged") end
    add(o.id .. " < $?", id)
  end
  local limit = q.limit or 50
  args[#args + 1] = limit + 1
  local sql = ("SELECT %s FROM %s%s ORDER BY %s DESC LIMIT $%d"):format(o.select, o.from,
    #where > 0 and (" WHERE " .. table.concat(where, " AND ")) or "", o.id, #args)
  local pool = M.pool(c)
  if not pool then return nil, M.err("unavailable", "no database") end
  local rows, err = pool:query(sql, unpack(args))
  if not rows then return nil, M.err("unavailable", "database: " .. tostring(err)) end
  local items, next_cursor = {}, json.null
  for i, row in ipairs(rows) do
    if i > limit then
      next_cursor = tostring(rows[limit][o.id_field or o.id:match("[%w_]+$")])
      break
    end
    items[#items + 1] = o.map and o.map(row) or row
  end
  return { items = T.list(items), next_cursor = next_cursor }
end

--- Run a page query as a route's answer.
function M.answer(c, o)
  local out, err = M.page(c, o)
  if not out then return err.error.kind == "invalid" and 400 or 503, err end
  return 200, out
end

function M.lower(s) return type(s) == "string" and s:lower() or nil end
M.iso = T.iso

--- A JSON column (text from the database) as a value.
function M.decode(s)
  if type(s) ~= "string" then return nil end
  local v = json.decode(s)
  return v
end

--- Strip the trailing zeros of a NUMERIC ("1.50000000" -> "1.5").
function M.dec(s)
  if s == nil then return nil end
  s = tostring(s)
  if s:find("%.") then s = s:gsub("0+$", ""):gsub("%.$", "") end
  return s
end

function M.f8(x)
  if type(x) ~= "number" or x ~= x or x == math.huge or x == -math.huge then return nil end
  return M.dec(("%.8f"):format(x))
end

function M.order(r)
  return { order_id = tonumber(r.order_id), account = r.account, client_order_id = r.client_order_id,
           venue_order_id = r.venue_order_id, symbol = r.symbol, side = M.lower(r.side), type = M.lower(r.type),
           status = M.lower(r.status), quantity = M.dec(r.quantity), price = M.dec(r.price), stop_price = M.dec(r.stop_price),
           executed_quantity = M.dec(r.executed_quantity), average_price = M.dec(r.average_price), reduce_only = r.reduce_only,
           origin = r.origin, kind = r.kind,
           close_position = r.close_position, reject_reason = r.reject_reason, cycle_key = r.cycle_key,
           created_at = T.iso(r.created_at), updated_at = T.iso(r.updated_at) }
end

function M.fill(r)
  return { fill_id = tonumber(r.fill_id), account = r.account, client_order_id = r.client_order_id, trade_id = r.trade_id,
           symbol = r.symbol, side = M.lower(r.side), price = M.dec(r.price), quantity = M.dec(r.quantity), fee = M.dec(r.fee),
           fee_asset = r.fee_asset, realized_pnl = M.dec(r.realized_pnl), maker = r.is_maker, filled_at = T.iso(r.filled_at) }
end

return M
