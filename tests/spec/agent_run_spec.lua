-- `vibex run` on a replay config, as `make run` does: it trades, records,
-- prints a summary and exits by itself; without a model it says so and the
-- fallback decides; with VIBEX_LLM_URL / VIBEX_LLM_KEY the model does.
local h = require "helpers"

local CONFIG = [[
return {
  runtime = { log_dir = %q, data_dir = %q },
  replay = { interval = "5m", candles = 260, seed = 3, warmup = 200 },
  strategies = { rules = { rules = "ema_cross", params = { fast = 5, slow = 12, size_usd = 300 } } },
  accounts = {
    { name = "demo", exchange = { venue = "sim" }, symbols = { "BTCUSDT", "ETHUSDT" }, decision_interval_s = 300,
      strategy = "rules", fallback = { policy = "rules" } },
  },
}
]]

describe("vibex run on a replay", function()
  local llm
  setup(function() llm = h.fake_llm { key = "sk-run", models = { ["m-run"] = { mode = "hold" } } } end)
  teardown(function() llm.stop() end)

  local function run(env)
    local dir = h.tmpdir()
    local cfg = dir .. "/vibex.lua"
    h.write(cfg, CONFIG:format(dir .. "/logs", dir .. "/data"))
    h.migrate(cfg)
    local out, err, code = h.vibex({ "run", cfg }, { env = env, timeout_ms = 120000 })
    return out, err, code, dir
  end

  it("runs the fallback when no model is configured, and says so", function()
    local out, err, code, dir = run { VIBEX_ENV = "testing" }
    assert.equal(0, code, err)
    local applog = require("vibex.runtime").read_file(dir .. "/logs/app.log") or ""
    assert.truthy(applog:find("no model configured for account demo", 1, true))
    assert.truthy(out:find("Paper replay finished: 520 candles, 60 decision cycles", 1, true), out)
    assert.truthy(out:find("demo%s+%-%s+fallback%s+60"), out)
    assert.truthy(out:find("60 decisions", 1, true), out)
    assert.truthy(out:find("60 diary entries", 1, true), out)
    -- what `vibex status` shows afterwards counts the replay's cycles
    local sout, serr, scode = h.vibex({ "status", dir .. "/vibex.lua", "--json" }, { env = { VIBEX_ENV = "testing" } })
    assert.equal(0, scode, serr)
    local st = require("vibex.json").decode(sout)
    assert.equal("stopped", st.accounts.demo.status, sout)
    assert.equal(60, st.accounts.demo.decisions, sout)
  end)

  it("asks the model named by VIBEX_LLM_URL and VIBEX_LLM_KEY", function()
    local before = #llm.log()
    local out, err, code = run { VIBEX_ENV = "testing", VIBEX_LLM_URL = llm.base .. "/v1", VIBEX_LLM_KEY = "sk-run",
                                 VIBEX_LLM_MODEL = "m-run" }
    assert.equal(0, code, err)
    assert.truthy(out:find("demo%s+%-%s+model%s+60"), out)
    assert.equal(60, #llm.log() - before)
    assert.is_nil(out:find("sk-run", 1, true))
    assert.is_nil(err:find("sk-run", 1, true))
  end)
end)
