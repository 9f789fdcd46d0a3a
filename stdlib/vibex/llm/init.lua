--- vibex.llm — model clients over the async HTTP client.
--
--   local llm = require "vibex.llm"
--   local m = llm.client{name = "ds", kind = "openai", base_url = "https://api.deepseek.com/v1",
--                        model = "deepseek-chat", api_key = secret, price = {input_per_mtok = 0.27, …}}
--   local res, err = m:chat{messages = {{role = "system", content = "…"}, {role = "user", content = "…"}},
--                           json = true}
--   -- res = {text, tokens_in, tokens_out, latency_ms, cost, model, attempts, finish_reason}
--   -- err: a vibex.errors value, kind "rate_limited" | "unavailable" | "timeout" | "transport"
--   --      | "auth" | "rejected" | "protocol" (empty = true: no text) | "circuit_open"; status
--
-- Two wire formats: OpenAI-compatible chat completions (kind "openai",
-- "deepseek", "openrouter", "ollama": OpenAI, OpenRouter, DeepSeek, Qwen,
-- Ollama, llama.cpp, vLLM all speak it) and Anthropic Messages ("anthropic").
-- 429, 5xx (and Anthropic's 529), timeouts and transport failures are
-- retried with full-jitter exponential backoff (Retry-After honoured);
-- other 4xx are not. Each provider sits behind a circuit breaker named
-- "llm:<name>": a call that still fails after its retries counts against
-- it, and an open breaker answers at once with kind "circuit_open".
-- Token usage and cost (from the provider's configured prices) come back
-- with every answer and are exported as metrics.
local http = require "vibex.http"
local json = require "vibex.json"
local task = require "vibex.task"
local breaker = require "vibex.breaker"
local secret = require "vibex.secret"
local metrics = require "vibex.metrics"
local log = require "vibex.log"
local errors = require "vibex.errors"

local M = {}
local llog = log.channel("llm")

local calls_total = metrics.counter("vibex_llm_calls_total", "Model calls by outcome (ok or the error kind)",
  { "provider", "model", "variant", "outcome" })
local latency_hist = metrics.histogram("vibex_llm_latency_seconds", "Model call latency (all attempts)",
  { "provider", "model", "variant" })
local tokens_total = metrics.counter("vibex_llm_tokens_total", "Tokens used", { "provider", "model", "variant", "direction" })
local cost_total = metrics.counter("vibex_llm_cost_usd_total", "Model cost in USD from configured prices",
  { "provider", "model", "variant" })

local WIRE = { openai = "openai", deepseek = "openai", openrouter = "openai", ollama = "openai", anthropic = "anthropic" }
M.KINDS = WIRE

-- ---- errors -------------------------------------------------------------------------------

-- Model errors are vibex.errors values: rate_limited, auth, unavailable (5xx,
-- 529), rejected (another 4xx), timeout, transport, protocol (not JSON, no
-- text: `empty` is set when the model answered nothing), circuit_open.
local function new_err(kind, message, status)
  return errors.new(kind, message, { source = "llm", status = status })
end
M.error = new_err

local RETRYABLE = { rate_limited = true, unavailable = true, timeout = true, transport = true }
-- what counts against the breaker: the provider is unwell, not the request
local BREAKER_FAILURE = { rate_limited = true, unavailable = true, timeout = true, transport = true, auth = true }

local function status_error(status, body)
  local detail = body and body:sub(1, 300) or ""
  local ok, v = pcall(json.decode, body or "")
  if ok and type(v) == "table" and type(v.error) == "table" and v.error.message then detail = tostring(v.error.message) end
  if status == 429 then return new_err("rate_limited", "rate limited (429): " .. detail, status) end
  if status == 401 or status == 403 then return new_err("auth", ("not authorised (%d): %s"):format(status, detail), status) end
  if status >= 500 then return new_err("unavailable", ("server error (%d): %s"):format(status, detail), status) end
  return new_err("rejected", ("request refused (%d): %s"):format(status, detail), status)
end

-- ---- wire formats ---------------------------------------------------------------------------

local function reveal(key)
  if secret.is_secret(key) then return key:reveal() end
  return key
end

local function join_url(base, path)
  return (base:gsub("/+$", "")) .. path
end

local openai = {}

function openai.request(p, req)
  local body = { model = p.model, messages = req.messages, max_tokens = req.max_tokens or p.max_tokens,
                 temperature = req.temperature or p.temperature }
  if req.json and p.json_mode ~= false then body.response_format = { type = "json_object" } end
  local headers = { ["Content-Type"] = "application/json" }
  local key = reveal(p.api_key)
  if key and key ~= "" then headers["Authorization"] = "Bearer " .. key end
  return { url = join_url(p.base_url, "/chat/completions"), headers = headers, body = json.encode(body) }
end

function openai.answer(v)
  local choice = type(v.choices) == "table" and v.choices[1]
  if type(choice) ~= "table" or type(choice.message) ~= "table" then
    return nil, new_err("protocol", "answer has no choices[1].message")
  end
  local text = choice.message.content
  if text == json.null then text = nil end
  local u = type(v.usage) == "table" and v.usage or {}
  return { text = text, finish_reason = choice.finish_reason ~= json.null and choice.finish_reason or nil,
           tokens_in = tonumber(u.prompt_tokens), tokens_out = tonumber(u.completion_tokens),
           model = type(v.model) == "string" and v.model or nil }
end

local anthropic = {}

function anthropic.request(p, req)
  local system, messages = {}, {}
  for _, m in ipairs(req.messages) do
    if m.role == "system" then system[#system + 1] = m.content else messages[#messages + 1] = m end
  end
  local body = { model = p.model, messages = messages, max_tokens = req.max_tokens or p.max_tokens or 2000,
                 temperature = req.temperature or p.temperature,
                 system = #system > 0 and table.concat(system, "\n\n") or nil }
  local base = p.base_url:gsub("/+$", "")
  local url = base:match("/v1$") and (base .. "/messages") or (base .. "/v1/messages")
  return { url = url, body = json.encode(body),
           headers = { ["Content-Type"] = "application/json", ["x-api-key"] = reveal(p.api_key) or "",
                       ["anthropic-version"] = p.anthropic_version or "2023-06-01" } }
end

function anthropic.answer(v)
  if type(v.content) ~= "table" then return nil, new_err("protocol", "answer has no content blocks") end
  local parts = {}
  for _, b in ipairs(v.content) do
    if type(b) == "table" and b.type == "text" and type(b.text) == "string" then parts[#parts + 1] = b.text end
  end
  local u = type(v.usage) == "table" and v.usage or {}
  return { text = #parts > 0 and table.concat(parts) or nil, finish_reason = v.stop_reason ~= json.null and v.stop_reason or nil,
           tokens_in = tonumber(u.input_tokens), tokens_out = tonumber(u.output_tokens),
           model = type(v.model) == "string" and v.model or nil }
end

local FORMATS = { openai = openai, anthropic = anthropic }

-- ---- the client ---------------------------------------------------------------------------------

local Client = {}
Client.__index = Client
Client.__tostring = function(c) return ("<llm %s: %s %s>"):format(c.name, c.kind, c.model) end

--- A client for one provider entry (llm.providers[i] of the config).
-- Extra options: retry_base_ms (500), retry_max_ms (30000), breaker
-- ({failure_threshold, cooldown_ms}), json_mode (true).
---@param p table a provider: name, kind, base_url, model, api_key, price, timeout_ms, max_retries, breaker
---@return table client with :chat{messages, json, max_tokens, temperature, timeout_ms, variant}
function M.client(p)
  if type(p) ~= "table" or type(p.name) ~= "string" then error("llm.client{name = …, kind = …}: a provider table is required", 2) end
  local wire = WIRE[p.kind]
  if not wire then error(("llm.client: kind %q has no wire format (openai, anthropic, deepseek, openrouter, ollama)"):format(tostring(p.kind)), 2) end
  if type(p.base_url) ~= "string" then error(("llm.client: provider %s needs a base_url"):format(p.name), 2) end
  local b = p.breaker or {}
  return setmetatable({
    name = p.name, kind = p.kind, model = p.model, provider = p, format = FORMATS[wire],
    timeout_ms = p.timeout_ms or 120000, connect_timeout_ms = p.connect_timeout_ms or 5000,
    max_retries = p.max_retries or 2, retry_base_ms = p.retry_base_ms or 500, retry_max_ms = p.retry_max_ms or 30000,
    price_in = (p.price and p.price.input_per_mtok or 0) / 1e6, price_out = (p.price and p.price.output_per_mtok or 0) / 1e6,
    breaker = breaker.new { name = "llm:" .. p.name, failure_threshold = b.failure_threshold or 3,
                            window_ms = b.window_ms or 120000, cooldown_ms = b.cooldown_ms or 60000,
                            min_calls = b.min_calls or 1 },
  }, Client)
end

--- A provider from the process environment: VIBEX_LLM_URL (required),
-- VIBEX_LLM_KEY, VIBEX_LLM_MODEL, VIBEX_LLM_KIND ("openai"). nil when
-- VIBEX_LLM_URL is not set.
---@param getenv function|nil os.getenv by default
---@return table|nil provider
function M.provider_from_env(getenv)
  getenv = getenv or os.getenv
  local url = getenv("VIBEX_LLM_URL")
  if not url or url == "" then return nil end
  local key = getenv("VIBEX_LLM_KEY")
  return { name = "env", kind = getenv("VIBEX_LLM_KIND") or "openai", base_url = url,
           model = getenv("VIBEX_LLM_MODEL") or "gpt-4o-mini", max_tokens = 2000, timeout_ms = 120000,
           api_key = key and key ~= "" and secret.new("VIBEX_LLM_KEY", key) or nil, price = {} }
end

local function retry_wait_ms(self, attempt, res)
  local ra = res and res.headers and tonumber(res.headers["retry-after"])
  if ra then return math.min(ra * 1000, self.retry_max_ms) end
  local cap = math.min(self.retry_base_ms * 2 ^ (attempt - 1), self.retry_max_ms)
  return cap / 2 + math.random() * cap / 2
end

-- One HTTP exchange: the parsed answer, or nil, err and the response.
function Client:_once(req)
  local r = self.format.request(self.provider, req)
  local res, terr = http.request { method = "POST", url = r.url, headers = r.headers, body = r.body,
                                          timeout_ms = req.timeout_ms or self.timeout_ms,
                                          connect_timeout_ms = self.connect_timeout_ms }
  if not res then
    return nil, errors.wrap(terr, terr.kind == "timeout" and "timeout" or "transport",
      ("%s: %s"):format(terr.kind, terr.message), { source = "llm" })
  end
  if res.status == 529 then return nil, new_err("unavailable", "overloaded (529)", 529), res end
  if res.status ~= 200 then return nil, status_error(res.status, res.body), res end
  local v, jerr = json.decode(res.body)
  if type(v) ~= "table" then return nil, new_err("protocol", "answer is not JSON: " .. tostring(jerr)), res end
  local a, aerr = self.format.answer(v)
  if not a then return nil, aerr, res end
  if not a.text or a.text:match("^%s*$") then
    local e = new_err("protocol", "the model answered with no text")
    e.answer, e.empty = a, true
    return nil, e, res
  end
  return a
end

function Client:_observe(outcome, variant, started, a)
  local model, v = self.model, variant or ""
  calls_total:labels(self.name, model, v, outcome):inc()
  latency_hist:labels(self.name, model, v):observe((task.now() - started) / 1000)
  if a then
    tokens_total:labels(self.name, model, v, "in"):inc(a.tokens_in or 0)
    tokens_total:labels(self.name, model, v, "out"):inc(a.tokens_out or 0)
    if a.cost then cost_total:labels(self.name, model, v):inc(a.cost) end
  end
end

--- Ask the model. req: messages (role/content list), json (ask for a JSON
-- object where the provider supports it), max_tokens, temperature,
-- timeout_ms, variant (metrics label). Returns the answer or nil, err.
function Client:chat(req)
  if type(req) ~= "table" or type(req.messages) ~= "table" then error("llm client:chat{messages = …}: messages are required", 2) end
  local started = task.now()
  local token, berr = self.breaker:allow()
  if not token then
    local e = new_err("circuit_open", berr)
    self:_observe("circuit_open", req.variant, started)
    return nil, e
  end
  local attempt, a, err, res = 0, nil, nil, nil
  while true do
    attempt = attempt + 1
    a, err, res = self:_once(req)
    if a or not RETRYABLE[err.kind] or attempt > self.max_retries then break end
    local wait = retry_wait_ms(self, attempt, res)
    llog:warn("model call failed; retrying", { provider = self.name, model = self.model, attempt = attempt,
                                               error = err.message, kind = err.kind, wait_ms = math.floor(wait) })
    task.sleep(wait)
  end
  self.breaker:record(token, not (err and BREAKER_FAILURE[err.kind]))
  local latency = task.now() - started
  if not a then
    err.attempts, err.latency_ms = attempt, latency
    if err.answer then
      err.tokens_in, err.tokens_out = err.answer.tokens_in, err.answer.tokens_out
      err.cost = (err.tokens_in or 0) * self.price_in + (err.tokens_out or 0) * self.price_out
    end
    llog:warn("model call failed", { provider = self.name, model = self.model, kind = err.kind, error = err.message,
                                     attempts = attempt, latency_ms = latency })
    self:_observe(err.kind, req.variant, started, err.answer and err)
    return nil, err
  end
  a.attempts, a.latency_ms = attempt, latency
  a.model = a.model or self.model
  a.cost = (a.tokens_in or 0) * self.price_in + (a.tokens_out or 0) * self.price_out
  self:_observe("ok", req.variant, started, a)
  llog:info("model answered", { provider = self.name, model = a.model, tokens_in = a.tokens_in, tokens_out = a.tokens_out,
                                latency_ms = latency, attempts = attempt })
  return a
end

function Client:breaker_state() return self.breaker:state() end

return M
