-- Thousands of randomly mutated configs: each gives either a valid config or
-- errors that all carry a path (or a file:line for code that did not run);
-- nothing raises out of the loader.
local config = require "vibex.config"

local BASE = [[return {
  runtime = { log_level = "info", log_dir = "logs", data_dir = "data" },
  api = { enabled = false, port = 8080 },
  llm = { providers = { { name = "ds", kind = "deepseek", base_url = "https://api.deepseek.com",
                          model = "deepseek-chat", api_key = env "DS_KEY", price = { input_per_mtok = 0.27 } } },
          default = "ds" },
  accounts = {
    { name = "main", mode = "paper", exchange = { venue = "sim" }, symbols = { "BTCUSDT", "ETHUSDT" },
      decision_interval_s = 60, llm = "ds",
      risk = { max_leverage = 5, max_position_notional = 500, max_total_notional = 1500, min_confidence = 0.7 } },
    { name = "live", mode = "live", exchange = { venue = "aster", testnet = true,
        credentials = { api_key = env "K", api_secret = env "S" } }, symbols = { "XRPUSDT" } },
  },
}]]

local VARS = { DS_KEY = "ds-key-0001", K = "key-0002", S = "secret-0003" }
local getenv = function(n) return VARS[n] end

local ODD_VALUES = {
  function() return nil end, function() return 0 end, function() return -1 end, function() return 1e308 end,
  function() return 0 / 0 end, function() return math.huge end, function() return "" end,
  function() return "x" end, function() return true end, function() return {} end,
  function() return { 1, 2, 3 } end, function() return { a = { b = {} } } end,
  function() return setmetatable({}, { __index = function() error("trap") end }) end,
  function() return function() end end, function() return ("y"):rep(300) end,
  function() return 0.5 end, function() return 200 end, function() return "live" end,
  function() return { name = "main" } end,
}

local KEYS = { "name", "mode", "risk", "symbols", "exchange", "venue", "max_leverage", "accounts", "llm",
               "runtime", "api", "port", "credentials", "api_key", "zzz", 1, 2, "environments", "production" }

--- Collect every table (with its parent) in a tree.
local function tables(t, out, seen)
  out, seen = out or {}, seen or {}
  if seen[t] then return out end
  seen[t] = true
  out[#out + 1] = t
  for _, v in pairs(t) do
    if type(v) == "table" and getmetatable(v) == nil then tables(v, out, seen) end
  end
  return out
end

local function mutate(cfg, rng)
  local all = tables(cfg)
  for _ = 1, rng(1, 4) do
    local t = all[rng(1, #all)]
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    local choice = rng(1, 4)
    if choice == 1 and #keys > 0 then
      t[keys[rng(1, #keys)]] = ODD_VALUES[rng(1, #ODD_VALUES)]()
    elseif choice == 2 then
      t[KEYS[rng(1, #KEYS)]] = ODD_VALUES[rng(1, #ODD_VALUES)]()
    elseif choice == 3 and #keys > 0 then
      local k = keys[rng(1, #keys)]
      if type(t[k]) == "number" then t[k] = t[k] * (rng(0, 1) == 0 and -1 or 1000) else t[k] = nil end
    else
      local a, b = keys[rng(1, math.max(1, #keys))], keys[rng(1, math.max(1, #keys))]
      if a ~= nil and b ~= nil then t[a], t[b] = t[b], t[a] end
    end
  end
  return cfg
end

describe("config fuzzing", function()
  local base_fn = assert(loadstring(BASE))
  local function fresh()
    setfenv(base_fn, { env = require("vibex.secret").ref })
    return base_fn()
  end

  local function check(snap, errors, label)
    if snap then
      assert.is_table(snap.config)
      assert.equal(64, #snap.hash)
      return "valid"
    end
    assert.is_table(errors, label)
    assert.is_true(#errors > 0, label)
    for _, e in ipairs(errors) do
      assert.is_string(e.path, label)
      assert.is_string(e.message, label)
      -- either a path into the config or a located message (file:line or a whole-file error)
      local located = e.path ~= "" or e.message:match("^fuzz%.lua:%d+:") or e.message:match("config")
        or e.message:match("environment")
      assert.truthy(located, label .. ": unlocated error: " .. e.message)
    end
    return "invalid"
  end

  it("structural mutations: 3000 configs", function()
    local seed = tonumber(os.getenv("VIBEX_FUZZ_SEED")) or 20261124
    math.randomseed(seed)
    local rng = math.random
    local counts = { valid = 0, invalid = 0 }
    for i = 1, 3000 do
      local tbl = mutate(fresh(), rng)
      local env = ({ "development", "testing", "production" })[rng(1, 3)]
      local ok, snap, errors = pcall(config.from_table, tbl, { environment = env, path = "fuzz.lua", getenv = getenv })
      assert.is_true(ok, ("loader raised on mutation %d (seed %d): %s"):format(i, seed, tostring(snap)))
      local r = check(snap, errors, ("mutation %d (seed %d)"):format(i, seed))
      counts[r] = counts[r] + 1
    end
    assert.is_true(counts.invalid > 100)
    assert.is_true(counts.valid > 10)
  end)

  it("text mutations: 2000 corrupted sources", function()
    local seed = tonumber(os.getenv("VIBEX_FUZZ_SEED")) or 424242
    math.randomseed(seed)
    local rng = math.random
    local alphabet = "{}[]()=,\"'.-+*0123456789abcdefxyz \n\\#;:"
    local counts = { valid = 0, invalid = 0 }
    for i = 1, 2000 do
      local src = BASE
      for _ = 1, rng(1, 3) do
        local pos = rng(1, #src)
        local op = rng(1, 3)
        local c = alphabet:sub(rng(1, #alphabet)):sub(1, 1)
        if op == 1 then src = src:sub(1, pos - 1) .. src:sub(pos + 1)
        elseif op == 2 then src = src:sub(1, pos - 1) .. c .. src:sub(pos)
        else src = src:sub(1, pos - 1) .. c .. src:sub(pos + 1) end
      end
      local ok, snap, errors = pcall(config.load_string, src, { environment = "development", path = "fuzz.lua", getenv = getenv })
      assert.is_true(ok, ("loader raised on text mutation %d (seed %d): %s"):format(i, seed, tostring(snap)))
      local label = ("text mutation %d (seed %d)"):format(i, seed)
      local r = check(snap, errors, label)
      counts[r] = counts[r] + 1
    end
    assert.is_true(counts.invalid > 100)
  end)
end)
