-- The database layer on a real PostgreSQL that this spec starts (initdb in a
-- temporary directory, Unix socket only) and stops.
local h = require "helpers"
local db = require "vibex.db"
local pg = require "vibex.db.pg"
local process = require "vibex.process"
local task = require "vibex.task"

describe("database layer", function()
  local cluster, pool

  setup(function()
    cluster = h.postgres()
    pool = db.pool { conninfo = cluster.conninfo, size = 3, reconnect_ms = 500 }
  end)
  teardown(function()
    pool:close()
    cluster:stop()
  end)

  it("converts values by type, exactly", function()
    local rows = assert(pool:query([[
      select $1::numeric as price, $2::numeric(20,8) as qty, 42 as i, 9007199254740993::int8 as big,
             2.5::float8 as f, true as yes, false as no, null::text as missing, $3::text as txt,
             '2026-11-24 10:00:00.5+00'::timestamptz as ts, '2026-11-24'::date as d,
             'infinity'::timestamptz as forever, '\x00ff'::bytea as raw, '{"a":1}'::jsonb as doc]],
      "0.10", "1.23456789", "naïve"))
    local r = rows[1]
    assert.equal("0.10", r.price)
    assert.equal("1.23456789", r.qty)
    assert.equal(42, r.i)
    assert.equal("9007199254740993", r.big) -- beyond 2^53: kept exact as a string
    assert.equal(2.5, r.f)
    assert.is_true(r.yes)
    assert.is_false(r.no)
    assert.is_nil(r.missing)
    assert.equal("naïve", r.txt)
    assert.equal(1795514400500, r.ts)
    assert.equal(1795478400000, r.d)
    assert.equal(math.huge, r.forever)
    assert.equal("\0\255", r.raw)
    assert.equal('{"a": 1}', r.doc)
    assert.same({ "price", "qty", "i", "big", "f", "yes", "no", "missing", "txt", "ts", "d", "forever", "raw", "doc" },
      rows.fields)
  end)

  it("sends parameters as values, never as SQL", function()
    local evil = "x'); drop table pg_class; --"
    local r = assert(pool:query("select $1::text as s, $2::int as n, $3::bool as b, $4::text as z, $5::float8 as f",
      evil, 7, true, nil, 0.1))[1]
    assert.equal(evil, r.s)
    assert.equal(7, r.n)
    assert.is_true(r.b)
    assert.is_nil(r.z)
    assert.equal(0.1, r.f)
    assert.has_error(function() pool:query("select $1", {}) end)
  end)

  it("reports statement errors with the database and SQLSTATE, and the connection goes on", function()
    assert(pool:query("create table uniq (id int primary key)"))
    assert(pool:query("insert into uniq values ($1)", 1))
    local rows, err = pool:query("insert into uniq values ($1)", 1)
    assert.is_nil(rows)
    assert.equal("rejected", err.kind)
    assert.equal("23505", err.sqlstate)
    assert.matches("vibex@.*/vibex", tostring(err))
    assert.matches("duplicate key", tostring(err))
    local _, serr = pool:query("selec 1")
    assert.equal("42601", serr.sqlstate)
    assert.equal(1, assert(pool:query("select count(*)::int as n from uniq"))[1].n)
  end)

  it("fails clearly on a bad or unreachable database, never showing a password", function()
    local c, err = pg.connect("host=/nonexistent dbname=shop user=bob password=s3cret-pw")
    assert.is_nil(c)
    assert.equal("transport", err.kind)
    assert.matches("bob@/nonexistent/shop", tostring(err))
    assert.is_nil(tostring(err):find("s3cret", 1, true))
    local c2, err2 = pg.connect("postgresql://bob:s3cret-pw@127.0.0.1:1/shop", { timeout_ms = 2000 })
    assert.is_nil(c2)
    assert.matches("refused", tostring(err2))
    assert.is_nil(tostring(err2):find("s3cret", 1, true))
    local _, err3 = pg.connect((cluster.conninfo:gsub("dbname=%S+", "dbname=nosuchdb")))
    assert.matches("nosuchdb", tostring(err3))
    local _, err4 = pg.connect("")
    assert.equal("invalid", err4.kind)
  end)

  it("refuses a wrong password with the database named", function()
    assert(pool:query("create role pwuser login password 'right-pw'"))
    -- password auth for that role only, ahead of the cluster's trust lines
    local hba = cluster.dir .. "/pg_hba.conf"
    local f = assert(io.open(hba))
    local text = f:read("*a")
    f:close()
    f = assert(io.open(hba, "w"))
    f:write("local all pwuser scram-sha-256\n" .. text)
    f:close()
    assert(pool:query("select pg_reload_conf()"))
    local base = cluster.conninfo:gsub("user=%S+", "user=pwuser")
    local ok = h.wait_until(function()
      local _, e = pg.connect(base .. " password=wrong-pw")
      return e and tostring(e):find("password authentication failed", 1, true)
    end, 5000, 50)
    assert.truthy(ok)
    local _, e = pg.connect(base .. " password=wrong-pw")
    assert.matches("pwuser@", tostring(e))
    assert.is_nil(tostring(e):find("wrong-pw", 1, true))
    assert(pg.connect(base .. " password=right-pw")):close()
  end)

  it("prepares a statement once per connection and cancels one over the statement timeout", function()
    assert(pool:query("create table prep (n int)"))
    for i = 1, 20 do assert(pool:run_prepared("prep_insert", "insert into prep values ($1)", i)) end
    assert.equal(20, assert(pool:query("select count(*)::int as n from prep"))[1].n)
    local c = assert(pg.connect(cluster.conninfo, { statement_timeout_ms = 100 }))
    local _, err = c:query("select pg_sleep(2)")
    assert.equal("rejected", err.kind)
    assert.equal("57014", err.sqlstate) -- canceled by statement_timeout
    assert.equal(1, assert(c:query("select 1 as n"))[1].n)
    c:close()
  end)

  it("runs queries from many tasks on a bounded pool", function()
    local results, tasks, max_open = {}, {}, 0
    for i = 1, 12 do
      tasks[i] = task.spawn(function()
        local r = assert(pool:query("select $1::int as n, pg_sleep(0.02)", i))
        max_open = math.max(max_open, pool.open)
        results[i] = r[1].n
      end)
    end
    for _, t in ipairs(tasks) do assert(t:join(20000)) end
    for i = 1, 12 do assert.equal(i, results[i]) end
    assert.is_true(max_open <= 3)
    assert.equal(0, pool:stats().waiting)
  end)

  it("commits a transaction, and rolls back on an error or a raise", function()
    assert(pool:query("create table acct (id int primary key, bal numeric not null)"))
    assert(pool:tx(function(c)
      assert(c:query("insert into acct values (1, $1)", "100.50"))
      return c:query("insert into acct values (2, $1)", "0.01")
    end))
    local r, err = pool:tx(function(c)
      assert(c:query("update acct set bal = bal - 1 where id = 1"))
      return c:query("insert into acct values (2, 0)") -- duplicate: nil, err
    end)
    assert.is_nil(r)
    assert.equal("23505", err.sqlstate)
    assert.has_error(function()
      pool:tx(function(c)
        assert(c:query("update acct set bal = 0"))
        error("strategy bug")
      end)
    end, "strategy bug")
    local rows = assert(pool:query("select id, bal from acct order by id"))
    assert.equal("100.50", rows[1].bal)
    assert.equal("0.01", rows[2].bal)
  end)

  it("copies rows in bulk from a producer", function()
    assert(pool:query("create table bulk (t bigint primary key, close numeric)"))
    local i, n = 0, 20000
    local res = assert(pool:copy("COPY bulk (t, close) FROM STDIN", function()
      if i >= n then return nil end
      local parts = {}
      for k = 1, 1000 do parts[k] = ("%d\t%d.%02d\n"):format(i + k, i + k, k % 100) end
      i = i + 1000
      return table.concat(parts)
    end))
    assert.equal(n, res.count)
    assert.equal("1.01", assert(pool:query("select close from bulk where t = 1"))[1].close)
    local bad, err = pool:copy("COPY bulk (t, close) FROM STDIN", "1\tnot-a-number\n")
    assert.is_nil(bad)
    assert.equal("22P02", err.sqlstate)
  end)

  it("delivers LISTEN/NOTIFY to a listener", function()
    local got = {}
    local l = pool:listen("fills", function(n) got[#got + 1] = n.payload end)
    assert(h.wait_until(function()
      pool:query("select pg_notify('fills', 'probe')")
      return #got > 0
    end, 5000, 50))
    assert(pool:query("select pg_notify('fills', $1)", "order-7"))
    assert(h.wait_until(function() return got[#got] == "order-7" end, 5000))
    l.close()
  end)

  it("replaces a connection the server killed, and reports one lost mid-statement", function()
    -- every idle connection of the pool is terminated by the server
    local c = assert(pg.connect(cluster.conninfo))
    local others = "from pg_stat_activity where pid <> pg_backend_pid() and usename = 'vibex' and backend_type = 'client backend'"
    assert(c:query("select pg_terminate_backend(pid) " .. others))
    assert(h.wait_until(function() return assert(c:query("select count(*)::int as n " .. others))[1].n == 0 end, 5000, 20))
    -- the end-of-file reaches our sockets a moment after the backends leave the view
    assert(h.wait_until(function()
      for _, ic in ipairs(pool.idle) do if ic:alive() then return false end end
      return true
    end, 5000, 10))
    assert.equal(5, assert(pool:query("select 5 as n"))[1].n)
    -- a statement whose session is ended under it
    local t = task.spawn(function() return pool:query("select pg_sleep(10)") end)
    assert(h.wait_until(function()
      local r = c:query("select count(*)::int as n from pg_stat_activity where query = 'select pg_sleep(10)'")
      return r and r[1].n == 1
    end, 5000, 20))
    assert(c:query("select pg_terminate_backend(pid) from pg_stat_activity where query = 'select pg_sleep(10)'"))
    local _, rows, err = t:join(10000)
    assert.is_nil(rows)
    assert.equal("lost", err.kind)
    c:close()
    assert.equal(6, assert(pool:query("select 6 as n"))[1].n)
  end)

  it("fails clearly while the server is down and works again when it is back", function()
    assert(cluster:stop("immediate"))
    local rows, err = pool:query("select 1 as n")
    assert.is_nil(rows)
    assert.truthy(err.kind == "transport" or err.kind == "lost", tostring(err))
    assert.matches("vibex@", tostring(err))
    assert(cluster:restart { fast = true })
    assert.equal(1, assert(pool:query("select 1 as n"))[1].n)
    local _ = process
  end)
end)
