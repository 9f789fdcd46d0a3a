--- vibex.llm.replay — recorded model answers: every call is kept under a
-- key over (provider, model, messages, parameters), and a backtest can be
-- answered from the record instead of the model.
--
--   local store = replay.store{pool = pool}            -- or {file = "out/answers.jsonl"}
--   local c = replay.wrap(client, store, "record")     -- a client with the same :chat
--   store:save(run_id)                                 -- what is still unwritten, and which answers the run used
--
-- Modes: nil (ask the model; keep every answer), "record" (answer from the
-- record; on a miss ask and keep), "strict" (answer from the record; a miss
-- is an error of kind not_found with err.replay_miss = true and the cycle
-- named), a run id (strict, and only the answers that run was given).
-- A replayed answer has the recorded text, tokens and cost, latency 0 and
-- replayed = true: the same prompt gives the same decisions, so a re-run
-- of a backtest is the same run.
local crypto = require "vibex.crypto"
local config = require "vibex.config"
local errors = require "vibex.errors"
local json = require "vibex.json"

local M = {}

--- The key of a request to a client: sha256 of the canonical text of
-- provider, model, messages and the parameters that change an answer.
function M.key(client, req)
  local p = client.provider or {}
  local request = { provider = client.name, model = client.model, messages = req.messages, json = req.json or false,
                    max_tokens = req.max_tokens or p.max_tokens, temperature = req.temperature or p.temperature }
  return crypto.sha256(config.canonical_text(request)), request
end

-- ---- the store ----------------------------------------------------------------------------------

local Store = {}
Store.__index = Store

--- o: pool (the database: llm_answers), file (a JSON-lines file instead),
-- run_id (only this run's answers: loaded at once), write_through (new
-- answers into the database as they come), recording_run (the run new
-- answers are first recorded by).
function M.store(o)
  local self = setmetatable({ pool = o.pool, file = o.file, cache = {}, new = {}, used = {}, used_list = {},
                              only_run = o.run_id, write_through = o.write_through, run_id = o.recording_run }, Store)
  if self.only_run then
    if not self.pool then return nil, errors.new("config", "llm.replay = a run id needs the database") end
    local rows, err = self.pool:query([[SELECT a.answer_key, a.answer, a.tokens_in, a.tokens_out, a.cost, a.model
      FROM llm_answers a JOIN run_answers u USING (answer_key) WHERE u.run_id = $1]], self.only_run)
    if not rows then return nil, err end
    if #rows == 0 then
      return nil, errors.new("not_found", ("run %s has no recorded model answers"):format(tostring(self.only_run)),
        { fix = "name a backtest run that called a model (vibex backtest list)" })
    end
    for _, r in ipairs(rows) do self.cache[r.answer_key] = M.entry(r) end
  elseif self.file then
    local f = io.open(self.file, "rb")
    if f then
      for line in f:lines() do
        local v = json.decode(line)
        if type(v) == "table" and v.answer_key then self.cache[v.answer_key] = M.entry(v) end
      end
      f:close()
    end
  end
  return self
end

--- A stored answer row as the client gives it back: {text, tokens_in, tokens_out, cost, model}.
function M.entry(r)
  return { text = r.answer, tokens_in = tonumber(r.tokens_in), tokens_out = tonumber(r.tokens_out),
           cost = tonumber(r.cost), model = r.model }
end

--- The recorded answer of key, or nil.
function Store:get(key)
  local hit = self.cache[key]
  if hit ~= nil then return hit or nil end
  if self.pool and not self.only_run then
    local rows = self.pool:query([[SELECT answer, tokens_in, tokens_out, cost, model FROM llm_answers
      WHERE answer_key = $1]], key)
    hit = rows and rows[1] and M.entry(rows[1]) or false
    self.cache[key] = hit
  end
  return hit or nil
end

local INSERT = [[INSERT INTO llm_answers (answer_key, provider, model, request, answer, tokens_in, tokens_out,
    cost, latency_ms, first_run_id)
  VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10) ON CONFLICT (answer_key) DO NOTHING]]

local function insert(db, e, run_id)
  return db:query(INSERT, e.answer_key, e.provider, e.model, json.encode(e.request), e.answer, e.tokens_in, e.tokens_out,
    e.cost, e.latency_ms, run_id)
end

--- Keep a new answer at once — in the database (o.write_through with a
-- pool: a paid answer survives a crash of the run) or the file — else at
-- save.
function Store:put(key, request, provider, a)
  local e = { answer_key = key, provider = provider, model = a.model, request = request, answer = a.text,
              tokens_in = a.tokens_in, tokens_out = a.tokens_out, cost = a.cost, latency_ms = a.latency_ms }
  self.cache[key] = M.entry(e)
  if self.pool and self.write_through then
    local ok, err = insert(self.pool, e, self.run_id)
    if ok then return end
    -- kept for the end of the run instead: the answer is not lost with the database away
    self.write_errors = (self.write_errors or 0) + 1
    self.last_write_error = err
  end
  self.new[#self.new + 1] = e
  if self.file then
    local f = io.open(self.file, "ab")
    if f then f:write(json.encode(e), "\n"); f:close() end
  end
end

function Store:use(key, account, cycle)
  if self.used[key] then return end
  self.used[key] = true
  self.used_list[#self.used_list + 1] = { key = key, account = account, cycle = cycle }
end

--- Write the new answers and the run's use of answers to the database.
-- Returns the number of new answers | nil, err.
function Store:save(run_id, conn)
  local db = conn or self.pool
  if not db then return #self.new end
  for _, e in ipairs(self.new) do
    local _, err = insert(db, e, run_id)
    if err then return nil, err end
  end
  if run_id then
    for _, u in ipairs(self.used_list) do
      local _, err = db:query([[INSERT INTO run_answers (run_id, answer_key, account, cycle_key) VALUES ($1, $2, $3, $4)
        ON CONFLICT DO NOTHING]], run_id, u.key, u.account, u.cycle)
      if err then return nil, err end
    end
  end
  return #self.new
end

-- ---- the client ---------------------------------------------------------------------------------

local Wrap = {}
Wrap.__index = function(t, k)
  local v = Wrap[k]
  if v ~= nil then return v end
  return t.client[k]
end

--- A client answering from store in mode (see the module's comment).
function M.wrap(client, store, mode)
  return setmetatable({ client = client, store = store, mode = mode, replayed = 0, asked = 0 }, Wrap)
end

function Wrap:breaker_state()
  if self.mode == "strict" or type(self.mode) == "number" then return "closed" end
  return self.client:breaker_state()
end

function Wrap:chat(req)
  local key, request = M.key(self.client, req)
  local hit = self.mode and self.store:get(key)
  if hit then
    self.replayed = self.replayed + 1
    self.store:use(key, req.account, req.cycle)
    return { text = hit.text, tokens_in = hit.tokens_in, tokens_out = hit.tokens_out, cost = hit.cost,
             model = hit.model or self.client.model, latency_ms = 0, attempts = 0, replayed = true }
  end
  if self.mode == "strict" or type(self.mode) == "number" then
    local where = req.cycle and (" for account %s, cycle %s"):format(tostring(req.account), req.cycle) or ""
    local e = errors.new("not_found", ("no recorded model answer%s (llm.replay = %s)"):format(where, tostring(self.mode)),
      { source = "llm", fix = "run it once with llm.replay = \"record\" to record the answers" })
    e.replay_miss, e.cycle, e.account = true, req.cycle, req.account
    self.store.missed = self.store.missed or e
    return nil, e
  end
  self.asked = self.asked + 1
  local a, err = self.client:chat(req)
  if a then
    self.store:put(key, request, self.client.name, a)
    self.store:use(key, req.account, req.cycle)
  end
  return a, err
end

return M
