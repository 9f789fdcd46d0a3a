-- `vibex run` on a config that is rewritten under it: what took effect, when,
-- seen from its logs and its state file; the process never stops.
local h = require "helpers"
local json = require "vibex.json"
local process = require "vibex.process"
local runtime = require "vibex.runtime"

local function account(name, lev, extra)
  return ([[{ name = %q, exchange = { venue = "sim" }, symbols = { "BTCUSDT" },
    decision_interval_s = 0.05, risk = { max_leverage = %d }%s }]]):format(name, lev, extra or "")
end

local function config_text(dir, accounts)
  return ([[return {
  runtime = { log_dir = %q, data_dir = %q },
  accounts = { %s },
}
]]):format(dir .. "/logs", dir .. "/data", table.concat(accounts, ",\n"))
end

local function read_state(dir)
  local text = runtime.read_file(dir .. "/data/state.json")
  return text and json.decode(text)
end

local function log_lines(dir)
  local text = runtime.read_file(dir .. "/logs/app.log") or ""
  local out = {}
  for line in text:gmatch("[^\n]+") do out[#out + 1] = json.decode(line) end
  return out
end

local function has_log(dir, msg, fields)
  for _, l in ipairs(log_lines(dir)) do
    if l and l.msg == msg then
      local ok = true
      for k, v in pairs(fields or {}) do if l[k] ~= v then ok = false end end
      if ok then return l end
    end
  end
end

--- Replace the config the way an editor does: write a temp file, rename it in.
local function save_renamed(path, text)
  h.write(path .. ".tmp~", text)
  assert(os.rename(path .. ".tmp~", path))
end

describe("config hot reload under vibex run", function()
  it("applies valid changes, rejects invalid ones, starts and stops accounts, survives delete and rename", function()
    local dir = h.tmpdir()
    local cfg = dir .. "/vibex.lua"
    h.write(cfg, config_text(dir, { account("main", 3) }))
    h.migrate(cfg)
    local p = assert(process.spawn { file = h.bin, args = { "run", cfg }, stdout = "ignore", stderr = "ignore",
                                     env = { VIBEX_ENV = "development" } })
    local function state() return read_state(dir) or { accounts = {}, config = {} } end
    local function wait(pred, what)
      assert(h.wait_until(function() local ok, r = pcall(pred, state()); return ok and r end, 15000, 20), "timed out waiting for: " .. what)
    end

    -- started, deciding under version 1
    wait(function(s) return s.accounts.main.decisions >= 2 and s.accounts.main.last_config_version == 1 end, "first decisions")

    -- a valid change: a risk limit applies at the next decision, under version 2
    h.write(cfg, config_text(dir, { account("main", 7) }))
    wait(function(s) return s.config.version == 2 and s.accounts.main.last_config_version == 2 end, "version 2 decision")
    assert.equal(7, state().accounts.main.risk.max_leverage)
    wait(function() return has_log(dir, "account config changed; applies at its next decision", { account = "main" }) end, "change logged")
    local l = has_log(dir, "account config changed; applies at its next decision", { account = "main" })
    assert.equal("risk", l.changed)

    -- an invalid change: logged with paths, the running config stays
    h.write(cfg, config_text(dir, { account("main", 500) }))
    wait(function() return has_log(dir, "config change rejected; keeping the running config") end, "rejection logged")
    local rej = has_log(dir, "config change rejected; keeping the running config")
    assert.matches("accounts[1].risk.max_leverage -> expected a number >= 1 and <= 125, found number 500", rej.errors, 1, true)
    assert.equal(2, rej.version)
    local before = state().accounts.main.decisions
    wait(function(s) return s.accounts.main.decisions > before + 2 end, "decisions go on after a bad edit")
    assert.equal(2, state().config.version)
    assert.equal(7, state().accounts.main.risk.max_leverage)

    -- an account added (editor-style rename into place)
    save_renamed(cfg, config_text(dir, { account("main", 7), account("second", 2) }))
    wait(function(s) return s.accounts.second and s.accounts.second.decisions >= 1 end, "second account deciding")
    assert.equal(3, state().config.version)
    wait(function() return has_log(dir, "account started", { account = "second", config_version = 3 }) end, "start logged")

    -- an account removed: stopped cleanly, its positions left and logged, main unaffected
    save_renamed(cfg, config_text(dir, { account("second", 2) }))
    wait(function(s) return s.accounts.main and s.accounts.main.status == "stopped" end, "main stopped")
    wait(function() return has_log(dir, "account stopped", { account = "main" }) end, "main's stop logged")
    local stopped = has_log(dir, "account stopped", { account = "main" })
    assert.equal("untouched", stopped.positions_left)
    assert.equal("removed from the config or disabled", stopped.reason)
    local n = state().accounts.main.decisions
    local sn = state().accounts.second.decisions
    wait(function(s) return s.accounts.second.decisions > sn + 2 end, "second keeps deciding")
    assert.equal(n, state().accounts.main.decisions)

    -- the file deleted: logged, nothing changes; recreated: applied
    os.remove(cfg)
    wait(function() return has_log(dir, "config file is gone; keeping the running config") end, "deletion logged")
    assert.equal(4, state().config.version)
    h.write(cfg, config_text(dir, { account("second", 5), account("main", 4) }))
    wait(function(s) return s.config.version == 5 and s.accounts.main.status == "running" end, "recreated file applied")
    wait(function(s) return s.accounts.second.risk.max_leverage == 5 end, "second picks up its new limit")

    -- the loop never stopped: the process is alive and exits 0 on SIGTERM
    assert.is_nil(has_log(dir, "decision failed"))
    p:kill("TERM")
    local code = task.timeout(15000, function() return p:wait() end)
    assert.equal(0, code)
    assert.truthy(has_log(dir, "vibex stopped"))
    local versions = state().versions
    assert.equal(5, #versions)
    for _, v in ipairs(versions) do assert.equal(64, #v.hash) end
  end)

  it("refuses to start on an invalid config, naming every error", function()
    local dir = h.tmpdir()
    h.write(dir .. "/bad.lua", "return { runtime = { log_level = 'loud' }, accounts = { { name = 'x', symbols = {} } } }")
    local _, err, code = h.vibex { "run", dir .. "/bad.lua" }
    assert.equal(2, code)
    assert.matches(dir .. "/bad.lua: runtime.log_level: expected one of", err, 1, true)
    assert.matches(dir .. "/bad.lua: accounts[1].exchange: required field is missing", err, 1, true)
    assert.matches("not started (3 errors)", err, 1, true)
  end)
end)

describe("config hot reload of .env", function()
  it("applies a rotated secret, and keeps the running config when one goes missing", function()
    local dir = h.tmpdir()
    local cfg = dir .. "/vibex.lua"
    h.write(cfg, ([[return {
  runtime = { log_dir = %q, data_dir = %q },
  llm = { providers = { { name = "p", kind = "openai", base_url = "http://127.0.0.1:9/v1", model = "m", api_key = env "VX_SPEC_KEY" } } },
  accounts = { { name = "a", exchange = { venue = "sim" }, symbols = { "BTCUSDT" }, decision_interval_s = 0.05, llm = "p" } },
}]]):format(dir .. "/logs", dir .. "/data"))
    h.write(dir .. "/.env", "VX_SPEC_KEY=first-key-value\n")
    h.migrate(cfg)
    local p = assert(process.spawn { file = h.bin, args = { "run", cfg }, stdout = "ignore", stderr = "ignore" })
    local function version()
      local s = read_state(dir)
      return s and s.config and s.config.version
    end
    assert.is_true(h.wait_until(function() return version() == 1 end, 15000, 20))
    h.write(dir .. "/.env", "# key removed\n")
    assert.is_true(h.wait_until(function() return has_log(dir, "config change rejected; keeping the running config") end, 15000, 20))
    local rej = has_log(dir, "config change rejected; keeping the running config")
    assert.matches("llm.providers[1].api_key -> secret VX_SPEC_KEY is not set", rej.errors, 1, true)
    h.write(dir .. "/.env", "VX_SPEC_KEY=second-key-value\n")
    assert.is_true(h.wait_until(function() return version() == 2 end, 15000, 20))
    p:kill("TERM")
    assert.equal(0, (task.timeout(15000, function() return p:wait() end)))
    for _, name in ipairs { "app.log", "errors.log" } do
      local text = runtime.read_file(dir .. "/logs/" .. name) or ""
      assert.is_nil(text:find("first-key-value", 1, true))
      assert.is_nil(text:find("second-key-value", 1, true))
    end
  end)
end)
