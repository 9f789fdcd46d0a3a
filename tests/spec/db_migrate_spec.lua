-- Migrations and the trading schema on a real PostgreSQL started by this spec.
local h = require "helpers"
local db = require "vibex.db"
local migrate = require "vibex.db.migrate"
local runtime = require "vibex.runtime"

describe("migrations", function()
  local cluster, pool

  setup(function()
    cluster = h.postgres()
    pool = db.pool { conninfo = cluster.conninfo, size = 2 }
  end)
  teardown(function()
    pool:close()
    cluster:stop()
  end)

  local function scratch_db(name)
    assert(pool:query(("CREATE DATABASE %s"):format(name)))
    return db.pool { conninfo = (cluster.conninfo:gsub("dbname=%S+", "dbname=" .. name)), size = 2 }
  end

  it("builds the schema from zero, once", function()
    local st = assert(migrate.status(pool))
    assert.is_true(#st >= 1)
    for _, s in ipairs(st) do assert.equal("pending", s.state) end
    local ok, why = migrate.check(pool)
    assert.is_nil(ok)
    assert.matches("the database is behind: .*0001_init.sql.*run `vibex migrate up` first", why)
    local dry = assert(migrate.up(pool, nil, { dry_run = true }))
    assert.equal(#st, #dry)
    assert.equal("pending", assert(migrate.status(pool))[1].state) -- a dry run changes nothing
    local done = assert(migrate.up(pool))
    assert.equal(#st, #done)
    assert.is_true(migrate.check(pool))
    assert.same({}, assert(migrate.up(pool)))
    local tables = assert(pool:query([[select string_agg(tablename, ',' order by tablename) as t from pg_tables
      where schemaname = 'public' and tablename not like 'candles\_%']]))[1].t
    for _, t in ipairs { "accounts", "strategies", "account_strategies", "orders", "order_events", "fills", "positions",
                         "position_history", "candles", "funding_payments", "account_snapshots", "performance_metrics",
                         "decisions", "diary_entries", "config_versions", "audit_log", "schema_migrations" } do
      assert.truthy(("," .. tables .. ","):find("," .. t .. ",", 1, true), "missing table " .. t)
    end
    -- no TimescaleDB here: candles are natively range-partitioned
    local kind = assert(pool:query("select relkind from pg_class where relname = 'candles'"))[1].relkind
    local has_ts = #assert(pool:query("select 1 from pg_available_extensions where name = 'timescaledb'")) > 0
    assert.equal(has_ts and "r" or "p", kind)
  end)

  it("refuses a migration changed after it was applied", function()
    local dir = h.tmpdir()
    h.write(dir .. "/0001_first.sql", "CREATE TABLE t1 (t1_id int primary key);")
    local p = scratch_db("tamper")
    assert(migrate.up(p, dir))
    h.write(dir .. "/0001_first.sql", "CREATE TABLE t1 (t1_id bigint primary key);")
    h.write(dir .. "/0002_second.sql", "CREATE TABLE t2 (t2_id int primary key);")
    local st = assert(migrate.status(p, dir))
    assert.equal("changed", st[1].state)
    assert.equal("pending", st[2].state)
    local done, err = migrate.up(p, dir)
    assert.is_nil(done)
    assert.matches("migration 0001_first.sql was changed after it was applied", err)
    assert.matches("put the change in a new migration", err)
    assert.equal(0, #assert(p:query("select 1 from pg_tables where tablename = 't2'")))
    local ok, why = migrate.check(p, dir)
    assert.is_nil(ok)
    assert.matches("0001_first.sql was changed", why)
    p:close()
  end)

  it("applies a migration whole or not at all, and names bad files", function()
    local dir = h.tmpdir()
    h.write(dir .. "/0001_ok.sql", "CREATE TABLE a (a_id int primary key);")
    h.write(dir .. "/0002_broken.sql", "CREATE TABLE b (b_id int primary key);\nCREATE TABLE c (c_id nosuchtype);")
    local p = scratch_db("atomic")
    local done, err = migrate.up(p, dir)
    assert.is_nil(done)
    assert.matches("migration 0002_broken.sql failed, nothing of it was applied", err)
    assert.matches("nosuchtype", err)
    assert.equal(0, #assert(p:query("select 1 from pg_tables where tablename = 'b'")))
    local st = assert(migrate.status(p, dir))
    assert.equal("applied", st[1].state)
    assert.equal("pending", st[2].state)
    h.write(dir .. "/2_bad_name.sql", "select 1;")
    local _, ferr = migrate.status(p, dir)
    assert.matches("2_bad_name.sql: migration files are named NNNN_name.sql", ferr)
    os.remove(dir .. "/2_bad_name.sql")
    h.write(dir .. "/0002_again.sql", "select 1;")
    local _, derr = migrate.files(dir)
    assert.matches("two migrations share version 0002", derr)
    p:close()
  end)

  it("audits every change to accounts, orders and positions, and records order and position history", function()
    local a = assert(pool:query("insert into accounts (name, venue) values ('audit', 'sim') returning account_id"))[1]
    local o = assert(pool:query([[insert into orders (account_id, client_order_id, symbol, side, type, quantity, price)
      values ($1, 'vx-audit-1', 'BTCUSDT', 'buy', 'limit', $2, $3) returning order_id]], a.account_id, "0.010", "60000.1"))[1]
    assert(pool:query("update orders set status = 'new', venue_order_id = '77' where order_id = $1", o.order_id))
    assert(pool:query("update orders set status = 'filled', executed_quantity = quantity, average_price = price where order_id = $1", o.order_id))
    assert(pool:query("update orders set updated_at = now() where order_id = $1", o.order_id)) -- no real change
    local audit = assert(pool:query([[select action, new_row->>'status' as status from audit_log
      where table_name = 'orders' and row_id = $1 order by audit_log_id]], o.order_id))
    assert.same({ "INSERT", "UPDATE", "UPDATE" }, { audit[1].action, audit[2].action, audit[3].action })
    assert.equal(3, #audit)
    assert.equal("filled", audit[3].status)
    local ev = assert(pool:query("select status, executed_quantity from order_events where order_id = $1 order by order_event_id", o.order_id))
    assert.same({ "pending", "new", "filled" }, { ev[1].status, ev[2].status, ev[3].status })
    assert.equal("0.010", ev[3].executed_quantity)
    local p = assert(pool:query([[insert into positions (account_id, symbol, quantity, entry_price)
      values ($1, 'BTCUSDT', '0.010', '60000.1') returning position_id]], a.account_id))[1]
    assert(pool:query("update positions set quantity = '0.020', entry_price = '60100.05' where position_id = $1", p.position_id))
    assert.equal(2, #assert(pool:query("select 1 from audit_log where table_name = 'positions' and row_id = $1", p.position_id)))
    local hist = assert(pool:query("select quantity from position_history where position_id = $1 order by position_history_id", p.position_id))
    assert.same({ "0.010", "0.020" }, { hist[1].quantity, hist[2].quantity })
    assert(pool:query("update accounts set deleted_at = now() where account_id = $1", a.account_id))
    assert.equal(2, #assert(pool:query("select 1 from audit_log where table_name = 'accounts' and row_id = $1", a.account_id)))
    -- the name is free again once the old account is soft-deleted
    assert(pool:query("insert into accounts (name, venue) values ('audit', 'sim')"))
    local _, dup = pool:query("insert into accounts (name, venue) values ('audit', 'sim')")
    assert.equal("23505", dup.sqlstate)
  end)

  it("makes vibex run refuse a database that is behind, naming the command that fixes it", function()
    local dir = h.tmpdir()
    local cfg = dir .. "/vibex.lua"
    h.write(cfg, ([[return { runtime = { log_dir = %q, data_dir = %q },
      accounts = { { name = "a", exchange = { venue = "sim" }, symbols = { "BTCUSDT" } } } }]]):format(dir .. "/logs", dir .. "/data"))
    local _, err, code = h.vibex { "run", cfg }
    assert.equal(2, code)
    assert.matches("database: the database is behind: ", err, 1, true)
    assert.matches("not applied (0001_init.sql, ", err, 1, true)
    assert.matches("run `vibex migrate up " .. cfg .. "` first", err, 1, true)
    local out, _, scode = h.vibex { "migrate", "status", cfg }
    assert.equal(0, scode)
    assert.matches("0001  init%s+pending", out)
    out = h.migrate(cfg)
    assert.matches("applied 0001_init.sql\napplied 0002_journal.sql", out, 1, true)
    out = h.vibex { "migrate", "status", cfg }
    assert.matches("up to date", out)
    assert.is_false(runtime.exists(dir .. "/data/pg/postmaster.pid")) -- the CLI stopped the server it started
  end)
end)
