--- A live trading world for end-to-end specs: the fake Aster venue (V1 and
-- V3 keys, prices that move by themselves), a private PostgreSQL, a config
-- of live accounts in the testing environment, and `vibex run` as a
-- separate process that the spec starts, kills and restarts. Everything is
-- asserted from the venue's own record, the database and the files.
local h = require "helpers"
local http = require "vibex.http"
local json = require "vibex.json"
local process = require "vibex.process"
local runtime = require "vibex.runtime"
local task = require "vibex.task"
local dec = require "vibex.decimal"
local db = require "vibex.db"

local M = {}

-- A strategy that trades on every cycle, one symbol at a time (so orders
-- flow without waiting for a signal), closes what it opened on the next
-- cycle of that symbol, and now and then asks for a size the risk gate
-- must refuse.
M.FLIP = [[
local M = {}
function M.decide(ctx, params)
  local n = ctx.cycle
  local s = ctx.symbols[(n % #ctx.symbols) + 1]
  local pos = ctx.positions[s.symbol]
  local px = s.mark_price or s.price
  if not px then return { decisions = {} } end
  if pos then return { decisions = { { symbol = s.symbol, action = "close", confidence = 0.9 } } } end
  local long = n % 4 < 2
  local size = (n % 7 == 6) and params.oversize or params.size_usd
  return { decisions = { { symbol = s.symbol, action = long and "open_long" or "open_short", size_usd = size,
    leverage = 2, confidence = 0.9, stop_loss = long and px * 0.98 or px * 1.02,
    take_profit = long and px * 1.03 or px * 0.97, invalidation = "test", rationale = "test flip" } } }
end
return M
]]

M.LIMITS = { max_leverage = 3, max_position_notional = 300, max_total_notional = 600, max_open_positions = 2,
             max_daily_loss = 100000, min_confidence = 0.5, max_orders_per_minute = 400 }

local CONFIG = [[
return {
  runtime = { log_dir = %q, data_dir = %q, log_level = "info", shutdown_grace_ms = 5000%s },
  database = { url = env "DATABASE_URL" },
  strategies = { flip = { dir = %q, rules = "flip", intervals = { "1m", "5m" },
                          params = { size_usd = 120, oversize = 5000 } },%s },
  accounts = {
%s
  },
}
]]

local ACCOUNT = [[
    { name = %q, mode = "live", symbols = %s, decision_interval_s = %s, strategy = %q,
      exchange = { venue = "aster", testnet = true, chain_id = 1666, base_url = %q, ws_url = %q,
                   credentials = %s },
      fallback = { policy = "rules" }, reconcile = { interval_s = 30 },
      risk = { max_leverage = 3, max_position_notional = 300, max_total_notional = 600, max_open_positions = 2,
               max_daily_loss = 100000, min_confidence = 0.5, max_orders_per_minute = 400 } },
]]

-- A paper account next to a live venue (the fake one): its public data
-- feeds the simulated venue; FLIP decides every second.
local PAPER = [[
return {
  runtime = { log_dir = %q, data_dir = %q, log_level = "info" },
  database = { url = env "DATABASE_URL", on_outage = %q },
  strategies = { flip = { dir = %q, rules = "flip", intervals = { "1m", "5m" }, params = { size_usd = 120, oversize = 5000 } } },
  accounts = {
    { name = "shadow", mode = "paper", symbols = { "BTCUSDT", "ETHUSDT" }, decision_interval_s = 1, strategy = "flip",
      exchange = { venue = "aster", testnet = true, base_url = %q, ws_url = %q },
      fallback = { policy = "rules" }, paper = { starting_balance = 10000 },
      risk = { max_leverage = 3, max_position_notional = 300, max_total_notional = 600, max_open_positions = 2,
               max_daily_loss = 100000, min_confidence = 0.5, max_orders_per_minute = 400 } },
  },
}
]]

--- Write a config with one paper account ("shadow") next to the fake venue
-- into dir (scripts in dir/scripts, logs in dir/logs); o.data_dir
-- (dir/data), o.on_outage (no_new_positions). Returns the config's path.
function M.paper_config(dir, fake, o)
  o = o or {}
  assert(runtime.mkdir_p(dir .. "/scripts"))
  h.write(dir .. "/scripts/flip.lua", M.FLIP)
  local cfg = dir .. "/vibex.lua"
  h.write(cfg, PAPER:format(dir .. "/logs", o.data_dir or (dir .. "/data"), o.on_outage or "no_new_positions",
    dir .. "/scripts", fake.base, fake.ws))
  return cfg
end

local function lua_list(t)
  local parts = {}
  for i, s in ipairs(t) do parts[i] = ("%q"):format(s) end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

--- o.accounts: list of {name, keys = "v1" | "v3" | "bad", symbols, base_url?, ws_url?}
function M.world(o)
  local w = { dir = h.tmpdir(), accounts = o.accounts, interval = o.interval or 1 }
  w.pg = h.postgres()
  w.url = ("postgresql:///vibex?host=%s&user=vibex"):format(w.pg.conninfo:match("host=(%S+)"))
  -- two accounts deciding every second ask far more of the venue than a
  -- real configuration would: the per-IP weight limit is raised to match
  local setup = { accounts = {}, auto_price = { period_ms = 250, step = 0.0015, seed = o.seed or 1 }, weight_limit = 12000 }
  for _, a in ipairs(o.accounts) do
    if a.keys == "v1" then
      setup.accounts[#setup.accounts + 1] = { name = a.name, balance = "10000", api_key = "key-" .. a.name,
                                              api_secret = "secret-" .. a.name }
    elseif a.keys == "v3" then
      setup.accounts[#setup.accounts + 1] = { name = a.name, balance = "10000", user = h.ASTER_V3.user,
                                              signer = h.ASTER_V3.signer }
    end
  end
  w.fake = h.fake_aster(setup)
  assert(runtime.mkdir_p(w.dir .. "/scripts"))
  h.write(w.dir .. "/scripts/flip.lua", M.FLIP)
  local accs, env = {}, { "T_V3_USER=" .. h.ASTER_V3.user, "T_V3_SIGNER=" .. h.ASTER_V3.signer,
                          "T_V3_KEY=" .. h.ASTER_V3.private_key }
  for _, a in ipairs(o.accounts) do
    local creds
    if a.keys == "v3" then
      creds = [[{ user = env "T_V3_USER", signer = env "T_V3_SIGNER", private_key = env "T_V3_KEY" }]]
    else
      local up = a.name:upper()
      creds = ([[{ api_key = env "T_%s_KEY", api_secret = env "T_%s_SECRET" }]]):format(up, up)
      env[#env + 1] = ("T_%s_KEY=%s"):format(up, a.keys == "bad" and "not-a-key" or ("key-" .. a.name))
      env[#env + 1] = ("T_%s_SECRET=secret-%s"):format(up, a.name)
    end
    accs[#accs + 1] = ACCOUNT:format(a.name, lua_list(a.symbols), tostring(w.interval), a.strategy or "flip",
                                     a.base_url or w.fake.base,
                                     a.ws_url or w.fake.ws, creds)
  end
  w.config = w.dir .. "/vibex.lua"
  -- o.runtime: more runtime settings (Lua text); o.strategies: more strategies, {name = dir}, each a flip
  local strategies = {}
  for name, dir in pairs(o.strategies or {}) do
    assert(runtime.mkdir_p(dir))
    h.write(dir .. "/" .. name .. ".lua", M.FLIP)
    strategies[#strategies + 1] = ([[ [%q] = { dir = %q, rules = %q, intervals = { "1m", "5m" },
      params = { size_usd = 120, oversize = 5000 } }]]):format(name, dir, name)
  end
  table.sort(strategies)
  h.write(w.config, CONFIG:format(w.dir .. "/logs", w.dir .. "/data", o.runtime and (", " .. o.runtime) or "",
    w.dir .. "/scripts", table.concat(strategies, ","), table.concat(accs)))
  h.write(w.dir .. "/.env", table.concat(env, "\n") .. "\n")
  w.env = { VIBEX_ENV = "testing", DATABASE_URL = w.url }
  local out, err, code = h.vibex({ "migrate", "up", w.config }, { env = w.env })
  assert(code == 0, "vibex migrate up failed: " .. tostring(err) .. tostring(out))
  w.pool = db.pool { conninfo = w.pg.conninfo, size = 2 }
  return setmetatable(w, { __index = M })
end

function M:close()
  if self.proc then self:kill() end
  self.pool:close()
  self.fake.stop()
  self.pg:stop()
end

--- Start `vibex run` as its own process.
function M:start()
  assert(not self.proc, "already running")
  self.started_ms = runtime.wall_ms()
  self.proc = assert(process.spawn { file = h.bin, args = { "run", self.config }, env = self.env, stdout = "ignore",
                                     stderr = "ignore" })
  return self.proc
end

--- kill -9: no shutdown, no flush, nothing.
function M:kill()
  self.proc:kill("KILL")
  task.timeout(10000, function() return self.proc:wait() end)
  self.proc = nil
end

--- SIGTERM, and wait for the exit code.
function M:stop()
  self.proc:kill("TERM")
  local code
  task.timeout(30000, function() code = self.proc:wait() end)
  self.proc = nil
  return code
end

function M:state()
  local text = runtime.read_file(self.dir .. "/data/state.json")
  return text and json.decode(text) or {}
end

--- Wait until pred(state) holds (bounded); returns the state.
function M:wait_state(pred, what, ms)
  local st
  local ok = h.wait_until(function()
    st = self:state()
    return pred(st)
  end, ms or 30000, 50)
  assert(ok, ("timed out waiting for %s; state.json: %s"):format(what, json.encode(st)))
  return st
end

--- Every account running, reconciled after this start.
function M:wait_running(ms)
  return self:wait_state(function(st)
    for _, a in ipairs(self.accounts) do
      local s = st.accounts and st.accounts[a.name]
      if not (s and s.status == "running" and s.reconciled_at and st.pid == self.proc:pid()) then return false end
    end
    return true
  end, "every account running and reconciled", ms or 60000)
end

function M:query(sql, ...) return assert(self.pool:query(sql, ...)) end

function M:decisions(name)
  return tonumber(self:query([[SELECT count(*) AS n FROM decisions d JOIN accounts a USING (account_id)
    WHERE a.name = $1]], name)[1].n)
end

--- Wait until every account has at least n decision rows.
function M:wait_decisions(n, ms)
  assert(h.wait_until(function()
    for _, a in ipairs(self.accounts) do if self:decisions(a.name) < n then return false end end
    return true
  end, ms or 60000, 100), "timed out waiting for " .. n .. " decisions per account")
end

function M:venue(full)
  local res = assert(http.get(self.fake.base .. "/_fake/state" .. (full and "?full=1" or "")))
  return json.decode(res.body)
end

function M:faults(list) return self.fake.ctl("faults", { faults = list }) end
function M:clear_faults() return self.fake.ctl("faults", { clear = true }) end
function M:freeze(on) return self.fake.ctl("setup", { freeze = on ~= false }) end

--- Wait until the venue has no request in hand.
function M:wait_idle(ms)
  assert(h.wait_until(function() return self:venue().inflight == 0 end, ms or 30000, 20), "the venue stayed busy")
end

--- Wait until the venue holds at least n requests in hand.
function M:wait_inflight(n, ms)
  assert(h.wait_until(function() return self:venue().inflight >= (n or 1) end, ms or 30000, 5),
    "no request reached the held fault")
end

function M:kline_calls()
  local n = 0
  for _, r in ipairs(self.fake.log()) do if r[2]:match("/klines$") then n = n + 1 end end
  return n
end

local function same(a, b)
  local ok, r = pcall(dec.cmp, a or "0", b or "0")
  return ok and r == 0
end
M.same = same

--- The database against the venue's own record, for one account: returns
-- a list of differences (empty when they agree). Checks every order the
-- venue holds (in the database, its status and executed quantity, its
-- fills), that none was placed twice, and that each passed the risk gate.
function M:order_differences(name)
  local v = self:venue(true).accounts[name]
  local diffs = {}
  if not v then return { "the venue has no account " .. name } end
  for _, cid in ipairs(v.duplicates) do diffs[#diffs + 1] = "placed twice: " .. cid end
  local rows = self:query([[SELECT o.client_order_id, o.status, o.executed_quantity, o.risk IS NOT NULL AS gated,
      o.quantity, o.stop_price, o.close_position,
      (SELECT count(*) FROM fills f WHERE f.client_order_id = o.client_order_id) AS fills,
      (SELECT coalesce(sum(f.quantity), 0) FROM fills f WHERE f.client_order_id = o.client_order_id) AS filled
    FROM orders o JOIN accounts a USING (account_id) WHERE a.name = $1]], name)
  local by = {}
  for _, r in ipairs(rows) do by[r.client_order_id] = r end
  local trades = {}
  for _, t in ipairs(v.trades) do
    local x = trades[t.orderId] or { n = 0, qty = "0" }
    x.n = x.n + 1
    x.qty = tostring((tonumber(x.qty) or 0) + tonumber(t.qty))
    trades[t.orderId] = x
  end
  for _, o in ipairs(v.all_orders) do
    local r = by[o.clientOrderId]
    local status = o.status:lower()
    if not r then
      diffs[#diffs + 1] = ("venue order %s (%s %s) is not in the database"):format(o.clientOrderId, o.type, o.status)
    else
      if r.status ~= status then
        diffs[#diffs + 1] = ("%s: database says %s, the venue %s"):format(o.clientOrderId, r.status, status)
      end
      if not same(r.executed_quantity, o.executedQty) then
        diffs[#diffs + 1] = ("%s: executed %s in the database, %s at the venue"):format(o.clientOrderId,
          r.executed_quantity, o.executedQty)
      end
      local t = trades[o.orderId] or { n = 0, qty = "0" }
      if tonumber(r.fills) ~= t.n or math.abs((tonumber(r.filled) or 0) - tonumber(t.qty)) > 1e-9 then
        diffs[#diffs + 1] = ("%s: %s fills in the database, %d at the venue"):format(o.clientOrderId, r.fills, t.n)
      end
      if not r.gated then diffs[#diffs + 1] = o.clientOrderId .. ": no risk-gate verdict recorded" end
      -- the row holds exactly what was sent: the quantity and stop price the venue took
      if not r.close_position and not same(r.quantity, o.origQty) then
        diffs[#diffs + 1] = ("%s: quantity %s recorded, %s sent"):format(o.clientOrderId, tostring(r.quantity), o.origQty)
      end
      if o.stopPrice ~= "0" and not same(r.stop_price, o.stopPrice) then
        diffs[#diffs + 1] = ("%s: stop price %s recorded, %s sent"):format(o.clientOrderId, tostring(r.stop_price), o.stopPrice)
      end
    end
  end
  return diffs, v
end

--- Positions and the wallet in the database against the venue's.
function M:state_differences(name)
  local v = self:venue().accounts[name]
  local diffs = {}
  local rows = self:query([[SELECT p.symbol, p.quantity FROM positions p JOIN accounts a USING (account_id)
    WHERE a.name = $1 AND p.deleted_at IS NULL AND p.quantity <> 0]], name)
  local db_pos = {}
  for _, r in ipairs(rows) do db_pos[r.symbol] = r.quantity end
  local venue_pos = {}
  for key, p in pairs(v.positions) do venue_pos[key:match("^[^:]+")] = p.amt end
  for sym, q in pairs(venue_pos) do
    if not same(db_pos[sym], q) then diffs[#diffs + 1] = ("%s position: database %s, venue %s"):format(sym, tostring(db_pos[sym]), q) end
  end
  for sym, q in pairs(db_pos) do
    if not venue_pos[sym] then diffs[#diffs + 1] = ("%s position: database %s, venue flat"):format(sym, q) end
  end
  local snap = self:query([[SELECT s.wallet_balance FROM account_snapshots s JOIN accounts a USING (account_id)
    WHERE a.name = $1 ORDER BY s.account_snapshot_id DESC LIMIT 1]], name)[1]
  if not snap or math.abs(tonumber(snap.wallet_balance) - tonumber(v.wallet)) > 1e-8 then
    diffs[#diffs + 1] = ("wallet: database %s, venue %s"):format(snap and snap.wallet_balance or "none", v.wallet)
  end
  return diffs
end

--- Wait until the database agrees with the venue for every account (the
-- user stream and the cycles may still be writing the last events).
function M:wait_consistent(ms, with_state, label)
  local last = {}
  local ok = h.wait_until(function()
    last = {}
    for _, a in ipairs(self.accounts) do
      for _, d in ipairs((self:order_differences(a.name))) do last[#last + 1] = a.name .. ": " .. d end
      if with_state then
        for _, d in ipairs(self:state_differences(a.name)) do last[#last + 1] = a.name .. ": " .. d end
      end
    end
    return #last == 0
  end, ms or 20000, 250)
  if not ok then
    local tail = {}
    for line in (self:log_text("trading") .. self:log_text("errors")):gmatch("[^\n]+") do
      tail[#tail + 1] = line:sub(1, 300)
      if #tail > 40 then table.remove(tail, 1) end
    end
    error(("%s: the database does not match the venue (world %s):\n%s\nlast log lines:\n%s"):format(label or "check",
      self.dir, table.concat(last, "\n"), table.concat(tail, "\n")), 2)
  end
end

function M:log_text(file)
  return runtime.read_file(self.dir .. "/logs/" .. (file or "app") .. ".log") or ""
end

return M
