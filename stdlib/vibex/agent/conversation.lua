--- vibex.agent.conversation — where a cycle's decisions come from: the
-- model (the prompt, the answer, validation, at most one repair round-trip)
-- or the fallback (its state machine: engaged when no model is configured,
-- the breaker is open, the call failed or the answers were invalid
-- `after_invalid` times in a row; released after `cooldown_s`), or, in a
-- resumed run, the record. Methods of the agent (mixed into vibex.agent).
local decision = require "vibex.agent.decision"
local log = require "vibex.log"
local metrics = require "vibex.metrics"
local task = require "vibex.task"

local alog = log.channel("app")
local llog = log.channel("llm")

local invalid_total = metrics.counter("vibex_agent_invalid_answers_total", "Model answers that could not be used", { "account" })

local Agent = {}

function Agent:validation_ctx(acc, view)
  local syms, n = {}, 0
  for _, s in ipairs(acc.symbols) do
    syms[s] = { price = view.prices[s] }
    n = n + 1
  end
  return { symbols = syms, nsymbols = n, positions = view.positions, free_margin = view.available,
           max_leverage = 125, max_stop_distance_pct = acc.risk and acc.risk.max_stop_distance_pct }
end

local REPAIR = [[Your previous answer could not be used: %s.
Answer again with only one JSON object in this form, and nothing else:
%s]]

-- Ask the model; at most one repair round-trip. Returns the read result
-- (or nil), and the calls made.
function Agent:ask_model(a, acc, client, messages, vctx, rec, variant)
  local calls = {}
  local function ask(msgs, purpose)
    local res, err = client:chat { messages = msgs, json = true, variant = variant, account = acc.name, cycle = rec.cycle_key }
    local c = { purpose = purpose, provider = client.name, model = client.model, variant = variant,
                outcome = res and "ok" or err.kind, tokens_in = res and res.tokens_in or err.tokens_in,
                tokens_out = res and res.tokens_out or err.tokens_out, latency_ms = res and res.latency_ms or err.latency_ms,
                cost = res and res.cost or err.cost, error = err and err.message, attempts = res and res.attempts or err.attempts }
    calls[#calls + 1] = c
    return res, err
  end
  local res, err = ask(messages, "decide")
  if not res and not err.empty then return nil, calls, err end
  local text = res and res.text or ""
  rec.raw_answer, rec.validation.raw_answer = decision.cap_raw(text)
  local read = decision.read(text, vctx)
  if read.ok and #read.decisions > 0 or (read.ok and #read.rejected == 0) then return read, calls end
  -- one repair round-trip
  rec.validation.first_answer = { reason = read.reason, rejected = read.rejected }
  local msgs = {}
  for i, m in ipairs(messages) do msgs[i] = m end
  msgs[#msgs + 1] = { role = "assistant", content = text ~= "" and decision.cap_raw(text) or "(empty)" }
  msgs[#msgs + 1] = { role = "user", content = REPAIR:format(read.reason or "empty", decision.SCHEMA_TEXT) }
  local res2, err2 = ask(msgs, "repair")
  rec.validation.repair_asked = true
  if not res2 then
    if not err2.empty then return nil, calls, err2 end
    return { ok = false, reason = "the repaired answer is empty", decisions = {}, rejected = read.rejected, notes = {} }, calls
  end
  local first, second = decision.cap_raw(text), decision.cap_raw(res2.text)
  rec.raw_answer = first .. "\n\n--- repair ---\n\n" .. second
  local read2 = decision.read(res2.text, vctx)
  read2.repaired = read2.ok and (#read2.decisions > 0 or #read2.rejected == 0)
  return read2, calls
end

-- Fallback state: engaged when the provider's breaker is open or the
-- account's answers were invalid too often; released when both are well.
function Agent:fallback_reason(a, acc, client, now_ms, strat)
  if not client then return "no model configured" end
  local off = strat and self:note_disabled(a, acc, strat, "prompt")
  if off then return "the prompt script is disabled: " .. off end
  -- open and still cooling down; once the cool-down is over the next call is the probe
  if client:breaker_state() == "open" and client.breaker:retry_in_ms() > 0 then
    return ("the model's circuit breaker is open (%s)"):format(client.name)
  end
  if a.fallback_until and now_ms < a.fallback_until then
    return ("%d invalid answers in a row; the model is tried again in %ds"):format(acc.fallback.after_invalid,
      math.ceil((a.fallback_until - now_ms) / 1000))
  end
end

function Agent:set_fallback(a, acc, reason, rec)
  if reason and not a.fallback_reason then
    alog:warn("fallback engaged: " .. reason, { account = acc.name, fallback = acc.fallback.policy })
    a.pending_notes[#a.pending_notes + 1] = ("Fallback engaged (%s): %s."):format(acc.fallback.policy, reason)
    rec.fallback_event = "engaged"
  elseif not reason and a.fallback_reason then
    alog:info("fallback released: decisions come from the model again", { account = acc.name })
    a.pending_notes[#a.pending_notes + 1] = "Fallback released: the model decides again."
    rec.fallback_event = "released"
  end
  a.fallback_reason = reason
end

function Agent:fallback_decisions(a, acc, strat, ctx, vctx, rec)
  if acc.fallback.policy == "hold" then return { ok = true, decisions = {}, rejected = {}, notes = {} } end
  local raw = self:call_script(strat, "rules", "decide", ctx, strat.params or {})
  rec.script_versions.rules = self:script_version(strat, "rules")
  local list = type(raw) == "table" and (raw.decisions or raw) or {}
  local res = decision.validate(list, vctx)
  res.ok, res.notes = true, {}
  return res
end

-- A resumed run: this cycle was decided before the crash (and maybe
-- traded); what it decided comes from the record, not a new answer.
function Agent:recorded_decisions(a, acc, rec, recorded)
  local p, v = recorded.parsed or {}, recorded.validation or {}
  rec.source, rec.raw_answer, rec.valid, rec.error = p.source or "none", recorded.raw_answer, recorded.valid, recorded.error
  rec.validation.fallback, rec.validation.reason, rec.validation.raw_answer = v.fallback, v.reason, v.raw_answer
  rec.was_complete = recorded.completed
  -- the fallback's state moves as it did then (its notes go with the cycle)
  self:set_fallback(a, acc, type(v.fallback) == "table" and v.fallback.reason or nil, rec)
  return { decisions = p.decisions or {}, rejected = v.rejected or {}, notes = v.notes or {}, repaired = v.repaired }
end

-- The prompt and the model: the reason the fallback must decide (nil when
-- the model did), what was read from the answer, and true when the cycle
-- ends here (the prompt script failed).
function Agent:model_decisions(a, acc, strat, ab, ctx, vctx, view, rec, step)
  local provider = self:provider(acc, ab and ab.variant)
  local client = provider and self:client(provider)
  local reason = self:fallback_reason(a, acc, client, view.now_ms, strat)
  if not reason and a.fallback_until then a.fallback_until = nil end -- cooldown over: probe the model
  local read
  if not reason then
    local okp, messages = pcall(self.call_script, self, strat, "prompt", "render", ctx, strat.params or {})
    rec.script_versions.prompt = self:script_version(strat, "prompt")
    step("prompt")
    if not okp or type(messages) ~= "table" or #messages == 0 then
      rec.error = "prompt script: " .. tostring(okp and "returned no messages" or messages)
      self:note_disabled(a, acc, strat, "prompt")
      return nil, nil, true
    end
    rec.prompt, rec.provider, rec.model = messages, client.name, client.model
    local t_model = task.hrtime()
    local r, calls, err = self:ask_model(a, acc, client, messages, vctx, rec, rec.variant)
    rec.model_ms = (task.hrtime() - t_model) / 1e6
    rec.llm_calls = calls
    step("model")
    rec.step_ms.model = rec.model_ms
    if not r then
      rec.error = "model: " .. tostring(err)
      reason = ("the model call failed (%s)"):format(err.kind)
    elseif not r.ok or (#r.decisions == 0 and #r.rejected > 0) then
      a.invalid_streak = a.invalid_streak + 1
      invalid_total:labels(acc.name):inc()
      rec.valid = false
      rec.validation.reason = r.reason
      llog:warn("model answer rejected", { account = acc.name, reason = r.reason, streak = a.invalid_streak })
      if a.invalid_streak >= acc.fallback.after_invalid then
        a.fallback_until = view.now_ms + acc.fallback.cooldown_s * 1000
        reason = ("%d invalid answers in a row"):format(a.invalid_streak)
        a.invalid_streak = 0
        for _, x in ipairs(r.rejected or {}) do rec.validation.rejected[#rec.validation.rejected + 1] = x end
        read = nil -- the fallback decides this cycle
      else
        read = { decisions = {}, rejected = r.rejected } -- this cycle holds
      end
    else
      a.invalid_streak = 0
      read = r
      rec.valid = true
    end
  end
  self:set_fallback(a, acc, reason, rec)
  return reason, read
end

return Agent
