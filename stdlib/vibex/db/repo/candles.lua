--- db.candles — market data in bulk: COPY into a staging table, then into
-- candles with ON CONFLICT DO NOTHING, so re-ingesting a range is harmless.
-- Market data is not journaled during an outage: it is fetched again
-- (REST backfill) when the database is back.
local R = {}
R.__index = R

local copyfmt = require "vibex.db.copyfmt"

local FIELDS = { "open_time", "open", "high", "low", "close", "volume", "quote_volume", "trades", "close_time" }
local INTS = { true, false, false, false, false, false, false, true, true }

--- Ingest rows {open_time (ms), open, high, low, close, volume,
-- quote_volume, trades, close_time (ms)} for one symbol and interval.
-- Returns the number of new rows (duplicates skipped) | nil, err.
function R:copy(symbol, interval, rows, o)
  o = o or {}
  return self.pool:tx(function(c)
    local _, err = c:exec([[CREATE TEMP TABLE candles_in (
      open_ms bigint, open numeric, high numeric, low numeric, close numeric, volume numeric,
      quote_volume numeric, trades integer, close_ms bigint) ON COMMIT DROP]])
    if err then return nil, err end
    local res, cerr = c:copy("COPY candles_in FROM STDIN", copyfmt.producer(rows, FIELDS, INTS, o.batch))
    if not res then return nil, cerr end
    local ins, ierr = c:query([[
      INSERT INTO candles (symbol, interval, open_time, open, high, low, close, volume, quote_volume, trades, close_time)
      SELECT $1, $2, to_timestamp(open_ms / 1000.0), open, high, low, close, volume, quote_volume, trades,
             to_timestamp(close_ms / 1000.0)
      FROM candles_in ON CONFLICT (symbol, interval, open_time) DO NOTHING]], symbol, interval)
    if not ins then return nil, ierr end
    return ins.count
  end)
end

--- Candles of [from_ms, to_ms], oldest first, prices as doubles (for
-- indicators); o.exact = true keeps them as exact decimal strings; o.limit
-- caps how many (the first ones).
function R:range(symbol, interval, from_ms, to_ms, o)
  local cast = (o and o.exact) and "" or "::float8"
  return self.pool:query(([[SELECT (extract(epoch FROM open_time) * 1000)::bigint AS open_time,
      open%s AS open, high%s AS high, low%s AS low, close%s AS close, volume%s AS volume, quote_volume%s AS quote_volume,
      trades, (extract(epoch FROM close_time) * 1000)::bigint AS close_time
    FROM candles WHERE symbol = $1 AND interval = $2
      AND open_time >= to_timestamp($3::float8 / 1000) AND open_time <= to_timestamp($4::float8 / 1000)
    ORDER BY open_time LIMIT $5]]):format(cast, cast, cast, cast, cast, cast), symbol, interval, from_ms, to_ms,
    o and o.limit or nil)
end

--- Open times missing between from_ms and to_ms (for a backfill).
function R:gaps(symbol, interval, from_ms, to_ms, step_ms)
  return self.pool:query([[SELECT (extract(epoch FROM t) * 1000)::bigint AS open_time
    FROM generate_series(to_timestamp($3::float8 / 1000), to_timestamp($4::float8 / 1000), $5::float8 * interval '1 millisecond') t
    WHERE NOT EXISTS (SELECT 1 FROM candles c WHERE c.symbol = $1 AND c.interval = $2 AND c.open_time = t)
    ORDER BY t]], symbol, interval, from_ms, to_ms, step_ms)
end

--- The open time (ms) of the newest candle stored in [from_ms, to_ms]: ms, or nil when none; nil, err on failure.
function R:last_open(symbol, interval, from_ms, to_ms)
  local rows, err = self.pool:query([[SELECT (extract(epoch FROM max(open_time)) * 1000)::bigint AS last_ms
    FROM candles WHERE symbol = $1 AND interval = $2 AND open_time >= to_timestamp($3::float8 / 1000)
      AND open_time <= to_timestamp($4::float8 / 1000)]], symbol, interval, from_ms, to_ms)
  if not rows then return nil, err end
  return rows[1].last_ms
end

--- What is stored, per symbol and interval: {symbol, interval, count,
--- first_ms, last_ms}, ordered by symbol and interval.
function R:summary()
  return self.pool:query([[SELECT symbol, interval, count(*)::int AS count,
      (extract(epoch FROM min(open_time)) * 1000)::bigint AS first_ms,
      (extract(epoch FROM max(open_time)) * 1000)::bigint AS last_ms
    FROM candles GROUP BY symbol, interval ORDER BY symbol, interval]])
end

--- The holes of one symbol and interval: {after_ms, before_ms, missing}
--- (the candles on either side and how many are missing between), at most limit (20).
function R:holes(symbol, interval, step_ms, limit)
  return self.pool:query([[SELECT (extract(epoch FROM prev) * 1000)::bigint AS after_ms,
      (extract(epoch FROM open_time) * 1000)::bigint AS before_ms,
      ((extract(epoch FROM open_time - prev) * 1000) / $3::float8 - 1)::bigint AS missing
    FROM (SELECT open_time, lag(open_time) OVER (ORDER BY open_time) AS prev
          FROM candles WHERE symbol = $1 AND interval = $2) c
    WHERE open_time - prev > $3::float8 * interval '1 millisecond'
    ORDER BY open_time LIMIT $4]], symbol, interval, step_ms, limit or 20)
end

-- ---- funding settlements and mark price candles (vibex data download --funding --mark) ---------

local function array(rows, field, fmt)
  local parts = {}
  for i, r in ipairs(rows) do
    local v = r[field]
    parts[i] = v == nil and "NULL" or (fmt and fmt:format(v) or tostring(v))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

--- Store funding settlements {time_ms, rate, mark} of a symbol (again: no change). New rows | nil, err.
function R:funding_copy(symbol, rows)
  if #rows == 0 then return 0 end
  local res, err = self.pool:query([[INSERT INTO funding_rates (symbol, funding_time, rate, mark_price)
    SELECT $1, to_timestamp(t / 1000.0), r, m FROM unnest($2::bigint[], $3::numeric[], $4::numeric[]) AS u(t, r, m)
    ON CONFLICT DO NOTHING]], symbol, array(rows, "time_ms", "%d"), array(rows, "rate"), array(rows, "mark"))
  if not res then return nil, err end
  return res.count
end

--- Funding settlements of [from_ms, to_ms], oldest first: {time_ms, rate (string)}.
function R:funding_range(symbol, from_ms, to_ms)
  return self.pool:query([[SELECT (extract(epoch FROM funding_time) * 1000)::bigint AS time_ms, rate::text AS rate
    FROM funding_rates WHERE symbol = $1 AND funding_time >= to_timestamp($2::float8 / 1000)
      AND funding_time <= to_timestamp($3::float8 / 1000) ORDER BY funding_time]], symbol, from_ms, to_ms)
end

--- The newest funding settlement stored in [from_ms, to_ms] (ms), or nil.
function R:funding_last(symbol, from_ms, to_ms)
  local rows, err = self.pool:query([[SELECT (extract(epoch FROM max(funding_time)) * 1000)::bigint AS last_ms
    FROM funding_rates WHERE symbol = $1 AND funding_time >= to_timestamp($2::float8 / 1000)
      AND funding_time <= to_timestamp($3::float8 / 1000)]], symbol, from_ms, to_ms)
  if not rows then return nil, err end
  return rows[1].last_ms
end

--- Store mark price candles {open_time, open, high, low, close}. New rows | nil, err.
function R:mark_copy(symbol, interval, rows)
  if #rows == 0 then return 0 end
  local res, err = self.pool:query([[INSERT INTO mark_candles (symbol, interval, open_time, open, high, low, close)
    SELECT $1, $2, to_timestamp(t / 1000.0), o, h, l, c
    FROM unnest($3::bigint[], $4::numeric[], $5::numeric[], $6::numeric[], $7::numeric[]) AS u(t, o, h, l, c)
    ON CONFLICT DO NOTHING]], symbol, interval, array(rows, "open_time", "%d"), array(rows, "open", "%.10g"),
    array(rows, "high", "%.10g"), array(rows, "low", "%.10g"), array(rows, "close", "%.10g"))
  if not res then return nil, err end
  return res.count
end

--- Mark price closes of [from_ms, to_ms] by open time: {open_time = close (string)}.
function R:mark_closes(symbol, interval, from_ms, to_ms)
  local rows, err = self.pool:query([[SELECT (extract(epoch FROM open_time) * 1000)::bigint AS t, close::text AS c
    FROM mark_candles WHERE symbol = $1 AND interval = $2 AND open_time >= to_timestamp($3::float8 / 1000)
      AND open_time <= to_timestamp($4::float8 / 1000)]], symbol, interval, from_ms, to_ms)
  if not rows then return nil, err end
  local out, n = {}, 0
  for _, r in ipairs(rows) do out[tonumber(r.t)] = r.c; n = n + 1 end
  return out, n
end

--- The open time of the newest mark candle stored in [from_ms, to_ms], or nil.
function R:mark_last_open(symbol, interval, from_ms, to_ms)
  local rows, err = self.pool:query([[SELECT (extract(epoch FROM max(open_time)) * 1000)::bigint AS last_ms
    FROM mark_candles WHERE symbol = $1 AND interval = $2 AND open_time >= to_timestamp($3::float8 / 1000)
      AND open_time <= to_timestamp($4::float8 / 1000)]], symbol, interval, from_ms, to_ms)
  if not rows then return nil, err end
  return rows[1].last_ms
end

return R
