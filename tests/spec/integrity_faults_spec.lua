-- The record when the machine misbehaves, through the binary: the data
-- disk full or read-only while the database is away, a model provider
-- that echoes the key, and commands started back to back on one managed
-- database server.
local h = require "helpers"
local live = require "live"
local db = require "vibex.db"
local json = require "vibex.json"
local process = require "vibex.process"
local runtime = require "vibex.runtime"
local task = require "vibex.task"

local function count(text, needle)
  local n, i = 0, 1
  while true do
    local s, e = text:find(needle, i, true)
    if not s then return n end
    n, i = n + 1, e + 1
  end
end

local function sh(line) return process.run("sh", { "-c", line }) end

-- A short replay of one account ("demo", BTCUSDT) in dir: o.candles (past
-- 200 of warm-up), o.strategy (the strategies table, Lua text), o.llm (the
-- llm table), o.account (more account fields). Returns the config's path.
local function replay_config(dir, o)
  local cfg = dir .. "/vibex.lua"
  h.write(cfg, ([[
return {
  runtime = { log_dir = %q, data_dir = %q },
  replay = { interval = "5m", candles = %d, seed = 3, warmup = 200 },
  llm = %s,
  strategies = %s,
  accounts = {
    { name = "demo", exchange = { venue = "sim" }, symbols = { "BTCUSDT" }, decision_interval_s = 300%s },
  },
}
]]):format(dir .. "/logs", dir .. "/data", o.candles, o.llm or "{}", o.strategy or "{}",
    o.account and (", " .. o.account) or ""))
  return cfg
end


describe("disk faults during a database outage", function()
  local root = runtime.uid() == 0
  local pg, fake, dir, mnt, run
  setup(function()
    pg = h.postgres()
    fake = h.fake_aster { accounts = {}, auto_price = { period_ms = 200, step = 0.002, seed = 9 } }
  end)
  teardown(function()
    -- a failed assertion leaves vibex run behind: it would keep the spec's process alive
    if run then pcall(run.kill, run, "KILL") end
    if mnt then sh(("umount -l %s 2>/dev/null; umount -l %s 2>/dev/null"):format(mnt, mnt)) end
    fake.stop()
    pg:stop()
  end)

  local it_root = root and it or pending
  it_root("holds what it cannot journal, opens nothing new, says why, and loses nothing", function()
    dir = h.tmpdir()
    mnt = dir .. "/data"
    assert(runtime.mkdir_p(mnt))
    -- a small disk of its own for the data directory (journal, order logs, state)
    local _, code = sh(("mount -t tmpfs -o size=4m,mode=0700 tmpfs %s"):format(mnt))
    assert.equal(0, code)
    local cfg = live.paper_config(dir, fake, { data_dir = mnt, on_outage = "continue" })
    local url = ("postgresql:///vibex?host=%s&user=vibex"):format(pg.conninfo:match("host=(%S+)"))
    local env = { VIBEX_ENV = "testing", DATABASE_URL = url }
    local _, merr, mcode = h.vibex({ "migrate", "up", cfg }, { env = env })
    assert.equal(0, mcode, merr)
    local pool = db.pool { conninfo = pg.conninfo, size = 1 }
    local function decisions()
      local rows = pool:query("SELECT count(*) AS n FROM decisions")
      return rows and tonumber(rows[1].n) or 0
    end
    local function applog() return runtime.read_file(dir .. "/logs/app.log") or "" end
    local function tradelog() return runtime.read_file(dir .. "/logs/trading.log") or "" end

    local p = assert(process.spawn { file = h.bin, args = { "run", cfg }, env = env, stdout = "ignore", stderr = "ignore" })
    run = p
    assert(h.wait_until(function() return decisions() >= 3 end, 60000, 20), "no decisions")
    local good_state = assert(json.decode(runtime.read_file(mnt .. "/state.json")))
    assert.truthy(good_state.accounts.shadow)

    local function state_whole(name)
      local st = json.decode(runtime.read_file(mnt .. "/state.json") or "")
      assert.is_table(st, name .. ": state.json is not valid JSON")
      assert.truthy(st.accounts and st.accounts.shadow)
    end
    local function fault(name, break_disk, mend_disk, errtext, state_visible)
      -- the disk goes bad, then the database goes away
      local reported = count(applog(), "cannot write run state")
      break_disk()
      assert(h.wait_until(function() return count(applog(), "cannot write run state") > reported end, 30000, 20),
        name .. ": the state write failure was not reported")
      -- the state file is the last good version, whole
      if state_visible then state_whole(name) end
      -- counted before the database goes: the first write after it went
      -- may raise the ALERT before pg:stop returns
      local alerts = count(applog(), "its journal cannot be written")
      pool:close()
      assert(pg:stop("immediate"))
      assert(h.wait_until(function() return count(applog(), "its journal cannot be written") > alerts end, 60000, 50),
        name .. ": no ALERT for the journal")
      local log_now = applog()
      local at = log_now:find("its journal cannot be written[^\n]*" .. errtext)
      assert.truthy(at, name .. ": the ALERT does not carry the disk's error (" .. errtext .. ")")
      assert.is_nil(log_now:find("table: 0x", 1, true))
      -- cycles go on, and what would open a position is refused, with the reason
      local refused = count(tradelog(), "journal cannot be written")
      assert(h.wait_until(function() return count(tradelog(), "journal cannot be written") > refused + 1 end, 60000, 50),
        name .. ": no entry refused while the record cannot be kept")
      -- the disk and the database come back
      mend_disk()
      state_whole(name)
      assert(pg:restart { fast = true })
      pool = db.pool { conninfo = pg.conninfo, size = 1 }
      local back = count(applog(), "journal writable again")
      assert(h.wait_until(function() return count(applog(), "journal writable again") > back end, 60000, 50),
        name .. ": the held writes were never stored")
      assert(h.wait_until(function() return applog():find("database back: journal replayed", 1, true) ~= nil end, 60000, 50))
      local n = decisions()
      assert(h.wait_until(function() return decisions() >= n + 2 end, 60000, 20), name .. ": no decisions afterwards")
    end

    fault("full disk", function()
      sh(("dd if=/dev/zero of=%s/filler bs=64k 2>/dev/null; sync"):format(mnt))
    end, function()
      os.remove(mnt .. "/filler")
    end, "No space left on device", true)

    -- a read-only file system over the data directory: files opened from
    -- now on (the journal, the state file's replacement) are refused; the
    -- old state file is underneath it, whole
    fault("read-only disk", function()
      -- a fresh file system with the data directory's layout, then made read-only
      local _, c = sh(("mount -t tmpfs -o size=1m,mode=0700 tmpfs %s && mkdir -m 700 %s/journal %s/orders"):format(mnt, mnt, mnt))
      assert.equal(0, c)
      assert(h.wait_until(function()
        local _, rc = sh(("mount -o remount,ro %s 2>/dev/null"):format(mnt))
        return rc == 0
      end, 10000, 5), "the overlay could not be made read-only")
    end, function()
      local _, c = sh(("umount %s"):format(mnt))
      assert.equal(0, c)
    end, "Read%-only file system", false)

    p:kill("TERM")
    local code
    task.timeout(30000, function() code = p:wait() end)
    run = nil
    assert.equal(0, code)
    -- every cycle the process ran is in the database, whole
    local cycles = count(tradelog(), '"msg":"decision cycle"')
    local rows = assert(pool:query("SELECT count(*) AS n, count(completed_at) AS done FROM decisions"))
    assert.equal(cycles, tonumber(rows[1].n))
    assert.equal(cycles, tonumber(rows[1].done))
    local diary = assert(pool:query("SELECT count(*) AS n FROM diary_entries WHERE author = 'agent'"))
    assert.equal(cycles, tonumber(diary[1].n))
    local refusals = assert(pool:query([[SELECT count(*) AS n FROM risk_refusals
      WHERE rule = 'database_outage' AND message LIKE '%journal cannot be written%']]))
    assert.truthy(tonumber(refusals[1].n) >= 2)
    local lost = assert(pool:query([[SELECT o.client_order_id, o.status, o.executed_quantity::text AS executed,
        (SELECT coalesce(sum(f.quantity), 0)::text FROM fills f WHERE f.client_order_id = o.client_order_id) AS filled
      FROM orders o WHERE o.executed_quantity > 0
      AND o.executed_quantity <> coalesce((SELECT sum(f.quantity) FROM fills f WHERE f.client_order_id = o.client_order_id), 0)]]))
    assert.equal(0, #lost, "orders whose fills are not all recorded: " .. json.encode(lost) .. " (logs in " .. dir .. "/logs)")
    local stale = assert(pool:query("SELECT count(*) AS n FROM orders WHERE status IN ('pending', 'unknown')"))
    assert.equal(0, tonumber(stale[1].n))
    pool:close()
    sh("umount -l " .. mnt)
    mnt = nil
  end)
end)

describe("a secret in a provider's error", function()
  it("reaches no log, file or database dump", function()
    local key = "sk-echo-7f3a9c2e51d84b6a"
    local llm = h.fake_llm { key = key, models = { ["m-echo"] = { mode = "echo_key" } } }
    local dir = h.tmpdir()
    local cfg = replay_config(dir, { candles = 230,
      llm = ([[{ providers = { { name = "echo", kind = "openai", base_url = %q, api_key = env "ECHO_KEY", model = "m-echo",
                                 max_retries = 0, breaker = { failure_threshold = 100 } } } }]]):format(llm.base .. "/v1"),
      strategy = [[{ s = { rules = "ema_cross", params = { fast = 5, slow = 12, size_usd = 300 } } }]],
      account = [[strategy = "s", llm = "echo", fallback = { policy = "rules" }]] })
    h.write(dir .. "/.env", "ECHO_KEY=" .. key .. "\n")
    local env = { VIBEX_ENV = "testing" }
    local _, merr, mcode = h.vibex({ "migrate", "up", cfg }, { env = env })
    assert.equal(0, mcode, merr)
    local out, err, code = h.vibex({ "run", cfg }, { env = env, timeout_ms = 120000 })
    assert.equal(0, code, err)
    assert.truthy(#llm.log() >= 5, "the provider was not asked")
    -- the errors were recorded (masked) where a user looks for them
    local dump_out, dump_code
    local pgdir = dir .. "/data/pg"
    local c = assert(require("vibex.db.cluster").start { dir = pgdir })
    local bin = assert(require("vibex.db.cluster").bindir())
    local as_pg = runtime.uid() == 0 and ("runuser -u postgres -- ") or ""
    dump_out, dump_code = process.run("sh", { "-c", ("%s%s/pg_dump -h %s -U vibex vibex"):format(as_pg, bin, pgdir) })
    c:stop()
    assert.equal(0, dump_code, dump_out)
    assert.truthy(dump_out:find("invalid request for credentials", 1, true), "the provider's error is not in the dump")
    assert.truthy(dump_out:find("***", 1, true))
    assert.is_nil(dump_out:find(key, 1, true), "the key is in the database dump")
    -- every file vibex wrote
    local files = process.run("sh", { "-c", "find " .. dir .. " -type f -not -path '*/pg/*'" })
    local n = 0
    for path in files:gmatch("[^\n]+") do
      if not path:match("/%.env$") then
        n = n + 1
        local text = runtime.read_file(path) or ""
        assert.is_nil(text:find(key, 1, true), "the key is in " .. path)
      end
    end
    assert.truthy(n >= 4)
    assert.is_nil(out:find(key, 1, true))
    assert.is_nil(err:find(key, 1, true))
    llm.stop()
  end)
end)

describe("the managed database server", function()
  it("is stopped by the last command out: migrate, run, llm stats and ab report back to back, 25 times", function()
    local dir = h.tmpdir()
    assert(runtime.mkdir_p(dir .. "/strat"))
    h.write(dir .. "/strat/cross.lua", runtime.read_file(runtime.home() .. "/scripts/ema_cross.lua"))
    -- a strategy with its own directory (its watcher must not keep `vibex run` alive)
    local cfg = replay_config(dir, { candles = 215,
      strategy = ([[{ s = { dir = %q, rules = "cross", params = { fast = 5, slow = 12, size_usd = 300 } } }]]):format(dir .. "/strat"),
      account = [[strategy = "s", fallback = { policy = "rules" }]] })
    local env = { VIBEX_ENV = "testing" }
    local function server_running()
      local out = process.run("sh", { "-c", "ps -eo args | grep -c '[p]ostgres -D " .. dir .. "/data/pg'" })
      return tonumber(out) ~= 0
    end
    for i = 1, 25 do
      for _, args in ipairs { { "migrate", "up", cfg }, { "run", cfg }, { "llm", "stats", cfg }, { "ab", "report", cfg } } do
        local out, err, code = h.vibex(args, { env = env, timeout_ms = 60000 })
        assert(code == 0, ("round %d: vibex %s exited %s: %s %s"):format(i, args[1], tostring(code), err, out))
      end
    end
    assert.is_false(server_running())
    local users = runtime.listdir(dir .. "/data/pg.users") or {}
    assert.equal(0, #users)
    -- the REPL's server goes when the REPL does
    h.write(dir .. "/repl.txt", ('db = require("vibex.db").open{data_dir = %q}\nprint(db.pool:query("SELECT 41 + 1 AS x")[1].x)\n')
      :format(dir .. "/data"))
    local out, code = process.run("sh", { "-c", ("%s repl < %s/repl.txt"):format(h.bin, dir) })
    assert.equal(0, code)
    assert.truthy(out:find("42", 1, true), out)
    assert.is_false(server_running())
    -- private files and directories
    for _, path in ipairs { dir .. "/data", dir .. "/data/state.json", dir .. "/logs", dir .. "/logs/app.log",
                            dir .. "/data/journal" } do
      local st = runtime.stat(path)
      if st then
        assert.equal(0, bit.band(st.mode, 6 * 8 + 6), ("%s is %04o: readable by others"):format(path, st.mode))
      end
    end
  end)

  it("says when .env can be read by others", function()
    local dir = h.tmpdir()
    local cfg = replay_config(dir, { candles = 205 })
    h.write(dir .. "/.env", "SOME_KEY=abcdefgh12345678\n")
    process.run("chmod", { "644", dir .. "/.env" })
    local env = { VIBEX_ENV = "testing" }
    assert.equal(0, select(3, h.vibex({ "migrate", "up", cfg }, { env = env })))
    local _, err, code = h.vibex({ "run", cfg }, { env = env, timeout_ms = 60000 })
    assert.equal(0, code, err)
    local log = runtime.read_file(dir .. "/logs/app.log") or ""
    assert.truthy(log:find(".env can be read by other users", 1, true), log:sub(1, 2000))
    assert.truthy(log:find("chmod 600 " .. dir .. "/.env", 1, true))
  end)
end)
