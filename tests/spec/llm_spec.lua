-- Model clients against the fake LLM provider (its own process, both wire
-- formats, the checks the real APIs make, injected faults).
local h = require "helpers"
local llm = require "vibex.llm"
local secret = require "vibex.secret"
local json = require "vibex.json"

local MSGS = { { role = "system", content = "Answer in JSON." },
               { role = "user", content = "### BTCUSDT\ncurrent_price = 100.5\n" } }

describe("LLM clients", function()
  local fake
  setup(function() fake = h.fake_llm { key = "sk-test" } end)
  teardown(function() fake.stop() end)

  local n = 0
  local function client(kind, model, o)
    n = n + 1
    local p = { name = ("%s-%d"):format(kind, n), kind = kind, model = model, api_key = secret.new("K", "sk-test"),
                base_url = kind == "anthropic" and fake.base or (fake.base .. "/v1"), max_retries = 2, retry_base_ms = 5,
                price = { input_per_mtok = 1, output_per_mtok = 2 }, breaker = { failure_threshold = 2, cooldown_ms = 200 } }
    for k, v in pairs(o or {}) do p[k] = v end
    return llm.client(p)
  end
  local function mode(model, m) fake.ctl("setup", { models = { [model] = m } }) end
  local function calls(model)
    local out = {}
    for _, c in ipairs(fake.log()) do if c.model == model then out[#out + 1] = c end end
    return out
  end

  it("speaks OpenAI chat completions: answer, tokens and cost", function()
    mode("o-good", { mode = "good" })
    local res = assert(client("openai", "o-good"):chat { messages = MSGS, json = true })
    local v = json.decode(res.text)
    assert.equal("BTCUSDT", v.decisions[1].symbol)
    assert.is_true(res.tokens_in > 0 and res.tokens_out > 0)
    assert.near(res.tokens_in * 1e-6 + res.tokens_out * 2e-6, res.cost, 1e-15)
    assert.equal(1, res.attempts)
    local c = calls("o-good")[1]
    assert.equal("openai", c.format)
    assert.equal(2, #c.messages)
  end)

  it("speaks Anthropic Messages: system outside the messages", function()
    mode("a-good", { mode = "good" })
    local res = assert(client("anthropic", "a-good"):chat { messages = MSGS })
    assert.equal("BTCUSDT", json.decode(res.text).decisions[1].symbol)
    assert.is_true(res.tokens_in > 0)
    local c = calls("a-good")[1]
    assert.equal("anthropic", c.format)
    assert.equal("system", c.messages[1].role)     -- as the fake logs it: the top-level system parameter
    assert.equal("user", c.messages[2].role)
  end)

  it("refuses a wrong key without retrying, and never shows the key", function()
    mode("o-key", { mode = "good" })
    local res, err = client("openai", "o-key", { api_key = secret.new("K2", "sk-wrong") }):chat { messages = MSGS }
    assert.is_nil(res)
    assert.equal("auth", err.kind)
    assert.equal(1, err.attempts)
    assert.is_nil(tostring(err):find("sk-wrong", 1, true))
  end)

  it("retries 429 and 5xx with backoff, then answers", function()
    mode("o-flaky", { sequence = { "429", "500" }, mode = "good" })
    local res = assert(client("openai", "o-flaky"):chat { messages = MSGS })
    assert.equal(3, res.attempts)
    mode("a-flaky", { sequence = { "529" }, mode = "good" })
    assert.equal(2, assert(client("anthropic", "a-flaky"):chat { messages = MSGS }).attempts)
  end)

  it("reports an empty answer as such", function()
    mode("o-empty", { mode = "empty" })
    local res, err = client("openai", "o-empty"):chat { messages = MSGS }
    assert.is_nil(res)
    assert.equal("protocol", err.kind)
    assert.is_true(err.empty)
    assert.is_true(err.tokens_in > 0) -- the call was paid for
  end)

  it("times out a slow answer", function()
    mode("o-slow", { mode = "slow", delay_ms = 3000 })
    local res, err = client("openai", "o-slow", { timeout_ms = 300, max_retries = 0 }):chat { messages = MSGS }
    assert.is_nil(res)
    assert.equal("timeout", err.kind)
  end)

  it("opens the breaker after failed calls, answers at once while open, and probes after the cool-down", function()
    mode("o-down", { mode = "500" })
    local c = client("openai", "o-down", { max_retries = 1 })
    for _ = 1, 2 do assert.is_nil((c:chat { messages = MSGS })) end
    assert.equal("open", c:breaker_state())
    local before = #calls("o-down")
    local _, err = c:chat { messages = MSGS }
    assert.equal("circuit_open", err.kind)
    assert.equal(before, #calls("o-down"))        -- nothing was sent
    mode("o-down", { mode = "good" })
    assert.is_true(h.wait_until(function() return c.breaker:retry_in_ms() == 0 end, 5000))
    assert(c:chat { messages = MSGS })
    assert.equal("closed", c:breaker_state())
  end)

  it("builds a provider from VIBEX_LLM_URL and VIBEX_LLM_KEY", function()
    local env = { VIBEX_LLM_URL = fake.base .. "/v1", VIBEX_LLM_KEY = "sk-test", VIBEX_LLM_MODEL = "o-env" }
    local p = llm.provider_from_env(function(k) return env[k] end)
    assert.equal("openai", p.kind)
    assert.equal("<secret VIBEX_LLM_KEY>", tostring(p.api_key))
    mode("o-env", { mode = "hold" })
    assert(llm.client(p):chat { messages = MSGS })
    assert.is_nil(llm.provider_from_env(function() return nil end))
  end)
end)
