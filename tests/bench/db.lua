--- Database benchmarks on a private PostgreSQL started here: candle ingest
-- with COPY through vibex beside `psql \copy` of the same rows into the same
-- table (the server's own limit), and single-row insert latency through
-- the pool.
local cluster = require "vibex.db.cluster"
local db = require "vibex.db"
local migrate = require "vibex.db.migrate"
local process = require "vibex.process"
local runtime = require "vibex.runtime"
local task = require "vibex.task"
local copyfmt = require "vibex.db.copyfmt"

local M = {}

local FIELDS = { "open_time", "open", "high", "low", "close", "volume", "trades", "close_time" }
local INTS = { true, false, false, false, false, false, true, true }

local fmt = string.format

local function candle_rows(n)
  local rows, t0 = {}, 1500000000000
  for i = 1, n do
    local p = 0.5 + (i % 10000) * 0.0001
    rows[i] = { open_time = t0 + (i - 1) * 60000, open = p, high = p + 0.002, low = p - 0.002, close = p + 0.001,
                volume = 1000 + i % 977, trades = i % 50, close_time = t0 + i * 60000 - 1 }
  end
  return rows
end

function M.run(row, fmt_n, _, quick)
  local dir = ("/tmp/vibex-bench-pg-%d"):format(runtime.pid())
  process.run("rm", { "-rf", dir })
  local c = assert(cluster.start { dir = dir, fast = true })
  local pool = db.pool { conninfo = c.conninfo, size = 4 }
  assert(migrate.up(pool))
  assert(pool:query([[CREATE TABLE bench_candles (open_ms bigint, open numeric, high numeric, low numeric,
    close numeric, volume numeric, trades integer, close_ms bigint)]]))
  local n = quick and 100000 or 1000000
  local rows = candle_rows(n)

  -- vibex: Lua candle tables -> COPY text -> the server, in 5000-row chunks
  local best_vx = math.huge
  for _ = 1, 3 do
    assert(pool:query("TRUNCATE bench_candles"))
    local t0 = task.hrtime()
    assert(pool:copy("COPY bench_candles FROM STDIN", copyfmt.producer(rows, FIELDS, INTS)))
    best_vx = math.min(best_vx, tonumber(task.hrtime() - t0) / 1e9)
  end
  -- the same rows as a file, for psql \copy into the same (emptied) table
  local file = dir .. "/candles.tsv"
  local f = assert(io.open(file, "w"))
  local produce = copyfmt.producer(rows, FIELDS, INTS)
  for chunk in produce do f:write(chunk) end
  f:close()
  local best_psql = math.huge
  for _ = 1, 3 do
    assert(pool:query("TRUNCATE bench_candles"))
    local t0 = task.hrtime()
    local _, code = process.run("psql", { "-q", "-h", c.dir, "-U", c.user, "-d", c.dbname, "-c",
                                          "\\copy bench_candles FROM '" .. file .. "'" })
    assert(code == 0, "psql \\copy failed")
    best_psql = math.min(best_psql, tonumber(task.hrtime() - t0) / 1e9)
  end
  local vx, ps = n / best_vx, n / best_psql
  row("candle ingest, COPY through vibex", fmt_n(vx), "rows/s", ("ratio %.2fx of psql \\copy (target >= 0.8x): %s"):format(
    vx / ps, vx / ps >= 0.8 and "ok" or "MISSED"))
  row("  baseline: psql \\copy of the same rows", fmt_n(ps), "rows/s", ("%d rows, best of 3"):format(n))
  -- the repository path: staging table + INSERT … ON CONFLICT DO NOTHING (re-ingest safe)
  local repo = db.repos { pool = pool }
  local t0 = task.hrtime()
  assert(repo.candles:copy("XRPUSDT", "1m", rows))
  local t1 = task.hrtime()
  assert(repo.candles:copy("XRPUSDT", "1m", rows))
  local t2 = task.hrtime()
  row("  candles repo ingest (dedup, partitions)", fmt_n(n / (tonumber(t1 - t0) / 1e9)), "rows/s",
    ("re-ingest of the same range %s rows/s"):format(fmt_n(n / (tonumber(t2 - t1) / 1e9))))

  -- single-row inserts through the pool, one at a time
  assert(pool:query("CREATE TABLE bench_single (id bigint, price numeric, at timestamptz DEFAULT now())"))
  local m = quick and 500 or 5000
  local lat = {}
  for i = 1, m do
    local s = task.hrtime()
    assert(pool:query("INSERT INTO bench_single (id, price) VALUES ($1, $2)", i, "60000.1"))
    lat[i] = tonumber(task.hrtime() - s) / 1e3
  end
  table.sort(lat)
  row("single-row insert through the pool, p50", fmt("%.0f", lat[math.floor(m * 0.5)]), "us",
    ("p99 %.0f us over %d inserts"):format(lat[math.floor(m * 0.99)], m))
  pool:close()
  c:stop()
  process.run("rm", { "-rf", dir })
end

return M
