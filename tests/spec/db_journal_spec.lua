-- Nothing lost while the database is away: the journal, against a real
-- PostgreSQL that the test stops (immediate, like a crash) and starts again.
local h = require "helpers"
local db = require "vibex.db"
local journal = require "vibex.db.journal"
local migrate = require "vibex.db.migrate"
local process = require "vibex.process"
local runtime = require "vibex.runtime"
local task = require "vibex.task"

describe("the write journal", function()
  local cluster, pool, dir

  setup(function()
    cluster = h.postgres()
    pool = db.pool { conninfo = cluster.conninfo, size = 2, reconnect_ms = 200, connect_timeout_ms = 1000 }
    assert(migrate.up(pool))
    assert(pool:query("CREATE TABLE jrows (n int NOT NULL, note text)"))
    dir = h.tmpdir()
  end)
  teardown(function()
    pool:close()
    cluster:stop()
  end)

  local function counts(lo, hi)
    local r = assert(pool:query("SELECT count(*)::int AS total, count(DISTINCT n)::int AS distinct_n FROM jrows WHERE n BETWEEN $1 AND $2", lo, hi))
    return r[1].total, r[1].distinct_n
  end

  it("applies a batch as one transaction, once, and journals it whole during an outage", function()
    local w = journal.writer { pool = pool, path = dir .. "/batch.jsonl", retry_ms = 100 }
    local function batch(a, b, note)
      return { { sql = "INSERT INTO jrows (n, note) VALUES ($1, $2)", params = { a, note }, n = 2 },
               { sql = "INSERT INTO jrows (n, note) VALUES ($1, $2)", params = { b, nil }, n = 2 } }
    end
    assert(w:write_batch(batch(9001, 9002, "b")))
    assert.same({ 2, 2 }, { counts(9001, 9002) })
    -- a failing statement takes the whole batch with it
    local bad = batch(9003, 9004)
    bad[2].params[1] = "not a number"
    assert.is_nil((w:write_batch(bad)))
    assert.same({ 0, 0 }, { counts(9003, 9004) })
    -- the same entry again (a replay after a crash) applies nothing
    local e = { id = "replayed-1", stmts = batch(9005, 9006) }
    assert(w:_apply(e))
    assert.is_true(assert(w:_apply(e)).skipped)
    assert.same({ 2, 2 }, { counts(9005, 9006) })
    -- during an outage the batch is one journal line, replayed whole
    assert(cluster:stop("immediate"))
    assert.is_true(assert(w:write_batch(batch(9007, 9008))).journaled)
    assert.equal(1, w:pending())
    assert(cluster:restart())
    assert.is_true(h.wait_until(function() return w:pending() == 0 end, 20000, 50))
    assert.same({ 2, 2 }, { counts(9007, 9008) })
    w:close()
  end)

  it("keeps writing through a server crash and stores every row exactly once", function()
    local w = journal.writer { pool = pool, path = dir .. "/a.jsonl", retry_ms = 100 }
    for i = 1, 20 do assert(w:write("INSERT INTO jrows (n, note) VALUES ($1, $2)", i, "before")) end
    assert.equal(0, w:pending())
    assert(cluster:stop("immediate"))
    local journaled = 0
    for i = 21, 60 do
      local res = assert(w:write("INSERT INTO jrows (n, note) VALUES ($1, $2)", i, nil))
      if res.journaled then journaled = journaled + 1 end
    end
    assert.equal(40, journaled)
    assert.equal(40, w:pending())
    assert.equal("continue", w:outage())
    assert(cluster:restart { fast = true })
    for i = 61, 70 do assert(w:write("INSERT INTO jrows (n, note) VALUES ($1, $2)", i, "after")) end
    assert(h.wait_until(function() return w:pending() == 0 and not w:outage() end, 20000, 20))
    local total, distinct = counts(1, 70)
    assert.equal(70, total)
    assert.equal(70, distinct)
    assert.is_false(runtime.exists(dir .. "/a.jsonl"))
    -- order kept: rows written during the outage came in before the ones after it
    local r = assert(pool:query("SELECT n FROM jrows WHERE n BETWEEN 1 AND 70 ORDER BY ctid"))
    for i = 1, 70 do assert.equal(i, r[i].n) end
    w:close()
  end)

  it("replays after the writer was killed, and a replay interrupted half-way applies nothing twice", function()
    local path = dir .. "/b.jsonl"
    -- a separate vibex journals 30 writes against a database that is down, then is killed -9
    assert(cluster:stop("immediate"))
    local script = dir .. "/writer.lua"
    h.write(script, ([[
      local db = require "vibex.db"
      local journal = require "vibex.db.journal"
      local pool = db.pool { conninfo = %q, reconnect_ms = 50, connect_timeout_ms = 500 }
      local w = journal.writer { pool = pool, path = %q, retry_ms = 60000 }
      for i = 101, 130 do assert(w:write("INSERT INTO jrows (n) VALUES ($1)", i).journaled) end
      io.stdout:write("journaled\n"); io.stdout:flush()
      require("vibex.task").sleep(60000)
    ]]):format(cluster.conninfo, path))
    local p = assert(process.spawn { file = h.bin, args = { script } })
    assert.equal("journaled", task.timeout(20000, function() return p:read_line() end))
    p:kill("KILL")
    task.timeout(5000, function() return p:wait() end)
    assert(cluster:restart { fast = true })
    -- pretend a replay had applied the first ten before a crash
    local lines = {}
    for line in io.lines(path) do lines[#lines + 1] = line end
    assert.equal(30, #lines)
    local json = require "vibex.json"
    assert(pool:tx(function(c)
      for i = 1, 10 do
        local e = json.decode(lines[i])
        assert(c:query("INSERT INTO journal_applied (journal_id) VALUES ($1)", e.id))
        assert(c:query("INSERT INTO jrows (n) VALUES ($1)", e.params[1]))
      end
      return true
    end))
    local w = journal.writer { pool = pool, path = path, retry_ms = 50 }
    assert.equal(30, w:pending())
    assert.is_true(w:flush())
    assert.equal(20, w.stats.replayed)
    assert.equal(10, w.stats.skipped)
    local total, distinct = counts(101, 130)
    assert.equal(30, total)
    assert.equal(30, distinct)
    w:close()
  end)

  it("returns a refused write as an error and never journals it", function()
    local w = journal.writer { pool = pool, path = dir .. "/c.jsonl" }
    local res, err = w:write("INSERT INTO jrows (n) VALUES ($1)", nil)
    assert.is_nil(res)
    assert.equal("rejected", err.kind)
    assert.equal("23502", err.sqlstate)
    assert.equal(0, w:pending())
    assert.is_false(runtime.exists(dir .. "/c.jsonl"))
  end)
end)
