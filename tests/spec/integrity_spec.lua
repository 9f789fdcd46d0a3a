-- The integrity of the record, tried from outside: `vibex run` killed -9 at
-- random moments of a replay and of a paper account next to the fake venue,
-- then started again; the database afterwards against an uninterrupted run
-- of the same config (one row per fact, the same contents), orders that
-- only move forward, fills for every filled order.
local h = require "helpers"
local live = require "live"
local db = require "vibex.db"
local json = require "vibex.json"
local process = require "vibex.process"
local runtime = require "vibex.runtime"
local task = require "vibex.task"

local REPLAY = [[
return {
  runtime = { log_dir = %q, data_dir = %q, log_level = "info" },
  database = { url = env "DATABASE_URL" },
  replay = { interval = "5m", candles = 900, seed = 11, warmup = 100 },
  strategies = {
    cross = { rules = "ema_cross", params = { fast = 5, slow = 13, size_usd = 400, leverage = 2 } },
  },
  accounts = {
    { name = "fast", exchange = { venue = "sim" }, symbols = { "BTCUSDT", "ETHUSDT" }, decision_interval_s = 300,
      strategy = "cross", fallback = { policy = "rules" },
      risk = { max_leverage = 3, max_position_notional = 1000, max_total_notional = 1500, max_open_positions = 1,
               max_daily_loss = 1000, min_confidence = 0.5, max_orders_per_minute = 30 },
      paper = { starting_balance = 10000, fee_rate = 0.0004 } },
    { name = "slow", exchange = { venue = "sim" }, symbols = { "XRPUSDT", "ETHUSDT" }, decision_interval_s = 900,
      strategy = "cross", fallback = { policy = "rules" },
      paper = { starting_balance = 5000 } },
  },
}
]]

-- What a fact is, per table: the columns that identify and describe it,
-- without serial ids, wall-clock times and timings (a resumed run writes
-- them at other moments); references are followed to their natural keys.
local FACTS = {
  decisions = { drop = { "decision_id", "created_at", "updated_at", "completed_at", "step_ms", "latency_ms", "strategy_id" } },
  orders = { drop = { "order_id", "created_at", "updated_at", "sent_at", "resolved_at", "decision_id" },
             ref = "(SELECT d.cycle_key FROM decisions d WHERE d.decision_id = t.decision_id)" },
  order_events = { drop = { "order_event_id", "created_at", "order_id" },
                   ref = "(SELECT o.client_order_id FROM orders o WHERE o.order_id = t.order_id)" },
  fills = { drop = { "fill_id", "created_at", "order_id" } },
  diary_entries = { drop = { "diary_entry_id", "created_at", "updated_at", "decision_id" },
                    ref = "(SELECT d.cycle_key FROM decisions d WHERE d.decision_id = t.decision_id)" },
  account_snapshots = { drop = { "account_snapshot_id", "created_at" } },
  performance_metrics = { drop = { "performance_metric_id", "created_at" } },
  risk_refusals = { drop = { "risk_refusal_id", "created_at", "decision_id" },
                    ref = "(SELECT d.cycle_key FROM decisions d WHERE d.decision_id = t.decision_id)" },
  llm_calls = { drop = { "llm_call_id", "created_at", "decision_id", "latency_ms" } },
  funding_payments = { drop = { "funding_payment_id", "created_at" } },
  positions = { drop = { "position_id", "created_at", "updated_at", "deleted_at", "opened_at" } },
  position_history = { drop = { "position_history_id", "position_id", "recorded_at" } },
  paper_states = { drop = { "paper_state_id", "created_at", "updated_at" } },
  -- (the two configs differ in their directories: their text and hash do too)
  config_versions = { drop = { "config_version_id", "created_at", "applied_at", "source_path", "config", "hash" } },
  audit_log = { drop = { "audit_log_id", "row_id", "txid", "changed_at", "old_row", "new_row", "changed_by" } },
}

local function pg_array(list)
  local q = {}
  for i, s in ipairs(list) do q[i] = "'" .. s .. "'" end
  return "ARRAY[" .. table.concat(q, ",") .. "]::text[]"
end

-- {table = {n = rows, hash = md5 of the sorted facts}}
local function facts(pool)
  local out = {}
  for name, f in pairs(FACTS) do
    local row = f.ref and ("(to_jsonb(t) || jsonb_build_object('ref', %s))"):format(f.ref) or "to_jsonb(t)"
    local rows = assert(pool:query(([[SELECT count(*) AS n, md5(coalesce(string_agg(x, '|' ORDER BY x), '')) AS hash
      FROM (SELECT (%s - %s)::text AS x FROM %s t) s]]):format(row, pg_array(f.drop), name)))
    out[name] = { n = tonumber(rows[1].n), hash = rows[1].hash }
  end
  return out
end

local RANK = { pending = 0, unknown = 1, new = 2, partially_filled = 3, filled = 4, canceled = 4, expired = 4, rejected = 4 }

local function assert_forward(pool)
  local bad = {}
  -- each event with the one before it, per order
  local events = assert(pool:query([[
    SELECT o.client_order_id, e.status, e.executed_quantity,
           lag(e.status) OVER w AS prev_status, lag(e.executed_quantity) OVER w AS prev_qty
    FROM order_events e JOIN orders o USING (order_id)
    WINDOW w AS (PARTITION BY e.order_id ORDER BY e.order_event_id)]]))
  for _, r in ipairs(events) do
    if r.prev_status then
      local back = RANK[r.status] < RANK[r.prev_status] or (RANK[r.prev_status] == 4 and r.status ~= r.prev_status)
        or tonumber(r.executed_quantity) < tonumber(r.prev_qty)
      if back then bad[#bad + 1] = ("%s: %s → %s"):format(r.client_order_id, r.prev_status, r.status) end
    end
  end
  assert.same({}, bad)
end

-- Every order that executed has fills that add up to what it executed.
local function assert_fills_complete(pool)
  local rows = assert(pool:query([[SELECT o.client_order_id, o.executed_quantity,
      coalesce((SELECT sum(f.quantity) FROM fills f WHERE f.client_order_id = o.client_order_id), 0) AS filled
    FROM orders o WHERE o.executed_quantity > 0
      AND o.executed_quantity <> coalesce((SELECT sum(f.quantity) FROM fills f WHERE f.client_order_id = o.client_order_id), 0)]]))
  assert.equal(0, #rows, json.encode(rows))
end

describe("the record after kill -9 and restarts", function()
  local pg, admin
  setup(function()
    pg = h.postgres()
    admin = db.pool { conninfo = pg.conninfo, size = 1 }
  end)
  teardown(function()
    admin:close()
    pg:stop()
  end)

  local function database(name)
    assert(admin:query("CREATE DATABASE " .. name))
    return ("postgresql:///%s?host=%s&user=vibex"):format(name, pg.conninfo:match("host=(%S+)")),
      db.pool { conninfo = pg.conninfo:gsub("dbname=%S+", "dbname=" .. name), size = 2 }
  end

  local function replay_world(name)
    local dir = h.tmpdir()
    local cfg = dir .. "/vibex.lua"
    h.write(cfg, REPLAY:format(dir .. "/logs", dir .. "/data"))
    local url, pool = database(name)
    local env = { VIBEX_ENV = "testing", DATABASE_URL = url }
    local out, err, code = h.vibex({ "migrate", "up", cfg }, { env = env })
    assert(code == 0, tostring(err) .. tostring(out))
    return { dir = dir, cfg = cfg, env = env, pool = pool }
  end

  local function decisions(pool)
    return tonumber(assert(pool:query("SELECT count(*) AS n FROM decisions"))[1].n)
  end

  it("a replay killed 12 times resumes its run, and its record equals an uninterrupted run's", function()
    -- the reference: the same config, run once, in a database of its own
    local a = replay_world("vibex_whole")
    local t0 = task.now()
    local out, err, code = h.vibex({ "run", a.cfg }, { env = a.env, timeout_ms = 180000 })
    assert.equal(0, code, err)
    local whole_ms = task.now() - t0
    assert.truthy(out:find("Paper replay finished", 1, true), out)
    local total = decisions(a.pool)
    assert.truthy(total > 500, "decisions: " .. total)

    local b = replay_world("vibex_killed")
    math.randomseed(20261206)
    local kills, landed = 0, 0
    while kills < 12 do
      local p = assert(process.spawn { file = h.bin, args = { "run", b.cfg }, env = b.env, stdout = "ignore", stderr = "ignore" })
      -- a random moment: half of them a random time after the start (start-up
      -- included), half once the record reached a random number of cycles
      local before = decisions(b.pool)
      if kills % 2 == 0 then
        task.sleep(math.random(50, math.floor(whole_ms * 0.4)))
      else
        local target = math.min(total - 20, before + math.random(5, 60))
        h.wait_until(function() return decisions(b.pool) >= target end, 60000, 5)
      end
      local exited = false
      task.timeout(100, function() exited = p:wait() ~= nil end)
      if exited then break end -- it finished before the kill: no more to kill
      p:kill("KILL")
      task.timeout(10000, function() p:wait() end)
      kills = kills + 1
      if decisions(b.pool) > before then landed = landed + 1 end
    end
    assert.equal(12, kills)
    assert.truthy(landed >= 4, "kills that landed after progress: " .. landed)
    -- started again until it finishes (a kill may have come after its end)
    local done = assert(b.pool:query("SELECT outcome FROM runs WHERE outcome = 'completed'"))
    if #done == 0 then
      local out2, err2, code2 = h.vibex({ "run", b.cfg }, { env = b.env, timeout_ms = 180000 })
      assert.equal(0, code2, err2)
      assert.truthy(out2:find("Paper replay finished", 1, true), out2)
      assert.truthy(out2:find("In the database, run 1 (resumed", 1, true), out2)
    end
    -- one run, resumed (never a second one mixed in)
    local runs = assert(b.pool:query("SELECT run_id, kind, outcome, resumes FROM runs ORDER BY run_id"))
    assert.equal(1, #runs, json.encode(runs))
    assert.equal("completed", runs[1].outcome)
    assert.equal("replay", runs[1].kind)
    assert.truthy(tonumber(runs[1].resumes) >= 1)
    local applog = runtime.read_file(b.dir .. "/logs/app.log") or ""
    assert.truthy(applog:find("resuming replay run 1", 1, true))
    -- the same facts, table by table
    local fa, fb = facts(a.pool), facts(b.pool)
    local differ = {}
    for name in pairs(FACTS) do
      if fa[name].n ~= fb[name].n then
        differ[#differ + 1] = ("%s: %d rows, uninterrupted %d"):format(name, fb[name].n, fa[name].n)
      elseif fa[name].hash ~= fb[name].hash then
        differ[#differ + 1] = name .. ": contents differ"
      end
    end
    table.sort(differ)
    assert.same({}, differ)
    assert.truthy(fa.fills.n > 10, "fills: " .. fa.fills.n)
    assert.truthy(fa.order_events.n > 20)
    assert_forward(b.pool)
    assert_fills_complete(b.pool)
    a.pool:close()
    b.pool:close()
  end)

  it("a paper account next to the fake venue killed 10 times keeps one row per fact and every fill", function()
    local fake = h.fake_aster { accounts = {}, auto_price = { period_ms = 200, step = 0.002, seed = 5 } }
    local cfg = live.paper_config(h.tmpdir(), fake)
    local url, pool = database("vibex_paper")
    local env = { VIBEX_ENV = "testing", DATABASE_URL = url }
    local _, merr, mcode = h.vibex({ "migrate", "up", cfg }, { env = env })
    assert.equal(0, mcode, merr)
    math.randomseed(7)
    for _ = 1, 10 do
      local p = assert(process.spawn { file = h.bin, args = { "run", cfg }, env = env, stdout = "ignore", stderr = "ignore" })
      local before = decisions(pool)
      local target = before + math.random(1, 3)
      assert(h.wait_until(function() return decisions(pool) >= target end, 60000, 5), "no decisions after a restart")
      task.sleep(math.random(0, 900)) -- anywhere in the cycle that follows: orders, fills, the record
      p:kill("KILL")
      task.timeout(10000, function() p:wait() end)
    end
    -- a last start, stopped cleanly
    local p = assert(process.spawn { file = h.bin, args = { "run", cfg }, env = env, stdout = "ignore", stderr = "ignore" })
    local before = decisions(pool)
    assert(h.wait_until(function() return decisions(pool) >= before + 3 end, 60000, 10))
    local t0 = task.now()
    p:kill("TERM")
    local code
    task.timeout(30000, function() code = p:wait() end)
    assert.equal(0, code)
    assert.truthy(task.now() - t0 < 10000)

    -- trades happened, and the record holds all of them once
    local n = assert(pool:query("SELECT count(*) AS n FROM fills"))[1].n
    assert.truthy(tonumber(n) >= 5, "fills: " .. tostring(n))
    assert_fills_complete(pool)
    assert_forward(pool)
    -- one diary entry, one snapshot and one metrics row per recorded cycle of a run
    local dup = assert(pool:query([[
      SELECT d.cycle_key, d.run_id,
        (SELECT count(*) FROM diary_entries e WHERE e.account_id = d.account_id AND e.run_id = d.run_id
           AND e.cycle_key = d.cycle_key AND e.author = 'agent') AS diary,
        (SELECT count(*) FROM account_snapshots s WHERE s.account_id = d.account_id AND s.run_id = d.run_id
           AND s.cycle_key = d.cycle_key) AS snaps,
        (SELECT count(*) FROM performance_metrics m WHERE m.account_id = d.account_id AND m.run_id = d.run_id
           AND m.cycle_key = d.cycle_key) AS perf
      FROM decisions d WHERE d.completed_at IS NOT NULL]]))
    assert.truthy(#dup > 10)
    for _, r in ipairs(dup) do
      assert.same({ 1, 1, 1 }, { tonumber(r.diary), tonumber(r.snaps), tonumber(r.perf) }, r.cycle_key)
    end
    local orphans = assert(pool:query([[SELECT count(*) AS n FROM diary_entries WHERE author = 'agent' AND run_id IS NULL]]))
    assert.equal(0, tonumber(orphans[1].n))
    -- each start is a run; the killed ones are marked crashed, the last stopped
    local runs = assert(pool:query("SELECT kind, outcome FROM runs ORDER BY run_id"))
    assert.equal(11, #runs)
    for i = 1, 10 do assert.equal("crashed", runs[i].outcome) end
    assert.equal("stopped", runs[11].outcome)
    assert.equal("paper", runs[11].kind)
    pool:close()
    fake.stop()
  end)
end)
