--- vibex.api.stream — the WebSocket /api/v1/stream: events as they happen,
-- numbered, kept in a ring so a client that reconnects resumes without gaps.
--
-- Client → server (JSON text):
--   {"op":"auth","token":"…"}              (or the Authorization header at the upgrade)
--   {"op":"subscribe","topics":["decisions","orders"],"since":41,"accounts":["trend"],"log_level":"warn"}
--   {"op":"unsubscribe","topics":["logs"]}   {"op":"ping"}
-- Server → client:
--   {"type":"hello","seq":N,"topics":[…],"authenticated":bool}
--   {"type":"subscribed","topics":[…],"seq":N}
--   {"type":"event","seq":N,"topic":"orders","time":"…","data":{…}}
--   {"type":"gap","from":A,"to":B,"message":"…"}  (events A..B are no longer kept: reload them over REST)
--   {"type":"error","message":"…"}   {"type":"pong","seq":N}
-- Every event has the next sequence number of the whole stream; with
-- "since" a subscription first gets every kept event after it, in order,
-- then the live ones. Topics: decisions, orders, fills, positions, equity,
-- diary, accounts, logs (logs at log_level and above, kept only while a
-- client listens to them).
local json = require "vibex.json"
local log = require "vibex.log"
local types = require "vibex.api.types"
local runtime = require "vibex.runtime"

local M = {}

M.TOPICS = { "decisions", "orders", "fills", "positions", "equity", "diary", "accounts", "logs" }
local KNOWN = {}
for _, t in ipairs(M.TOPICS) do KNOWN[t] = true end
local LEVELS = { debug = 1, info = 2, warn = 3, error = 4 }

local Hub = {}
Hub.__index = Hub

--- o: capacity (events kept), auth (vibex.api.auth).
function M.new(o)
  return setmetatable({ seq = 0, cap = o.capacity or 10000, ring = {}, clients = {}, n_clients = 0, auth = o.auth,
                        log_listeners = 0 }, Hub)
end

local function send(c, t)
  local text = types.encode(t)
  if text then c.ws:send(text) end
end

local function wants(c, ev)
  if not c.topics[ev.topic] then return false end
  if c.accounts and ev.account and not c.accounts[ev.account] then return false end
  if ev.topic == "logs" and (LEVELS[ev.level] or 0) < c.log_level then return false end
  return true
end

--- Publish an event to every subscriber; keep it for resumes.
function Hub:publish(topic, data)
  self.seq = self.seq + 1
  local ev = { seq = self.seq, topic = topic, account = data.account, level = data.level,
               text = types.encode { type = "event", seq = self.seq, topic = topic, time = types.iso(runtime.wall_ms()), data = data } }
  self.ring[self.seq % self.cap] = ev
  for _, c in pairs(self.clients) do
    if c.live and wants(c, ev) then c.ws:send(ev.text) end
  end
  return self.seq
end

function Hub:oldest()
  return math.max(1, self.seq - self.cap + 1)
end

-- Kept events after `since`, in order (a gap first when some are gone).
function Hub:replay(c, since)
  since = math.max(0, math.floor(since))
  if since >= self.seq then return end
  local first = since + 1
  if first < self:oldest() then
    send(c, { type = "gap", from = first, to = self:oldest() - 1,
              message = ("events %d to %d are no longer kept (the server keeps the last %d): reload them over REST")
                :format(first, self:oldest() - 1, self.cap) })
    first = self:oldest()
  end
  for s = first, self.seq do
    local ev = self.ring[s % self.cap]
    if ev and ev.seq == s and wants(c, ev) then c.ws:send(ev.text) end
  end
end

function Hub:open(ws)
  local c = { ws = ws, id = ws:id(), topics = {}, log_level = LEVELS.info, peer = ws:peer() }
  local who = self.auth:identify(ws:header("authorization"))
  c.who = who
  self.clients[c.id] = c
  self.n_clients = self.n_clients + 1
  send(c, { type = "hello", seq = self.seq, topics = M.TOPICS, authenticated = who ~= nil })
end

function Hub:close(id)
  local c = self.clients[id]
  if not c then return end
  if c.topics.logs then self:log_listener(-1) end
  self.clients[id] = nil
  self.n_clients = self.n_clients - 1
end

-- Logs are only collected while someone listens.
function Hub:log_listener(d)
  self.log_listeners = self.log_listeners + d
  if self.log_listeners > 0 and not self.untap then
    self.untap = log.tap(function(level, channel, msg, fields)
      local f = fields and log.mask_secrets(json.encode(fields) or "{}") or nil
      self:publish("logs", { level = level, channel = channel, message = log.mask_secrets(msg),
                             fields = f and json.decode(f) or nil })
    end)
  elseif self.log_listeners <= 0 and self.untap then
    self.untap()
    self.untap = nil
  end
end

function Hub:subscribe(c, m)
  if not c.who then
    return send(c, { type = "error", message = "not authenticated: send {\"op\":\"auth\",\"token\":\"…\"} first" })
  end
  local topics = type(m.topics) == "table" and m.topics or M.TOPICS
  for _, t in ipairs(topics) do
    if not KNOWN[t] then
      return send(c, { type = "error", message = ("unknown topic %q (topics: %s)"):format(tostring(t), table.concat(M.TOPICS, ", ")) })
    end
  end
  if m.log_level ~= nil and not LEVELS[m.log_level] then
    return send(c, { type = "error", message = "log_level: one of debug, info, warn, error" })
  end
  if m.log_level then c.log_level = LEVELS[m.log_level] end
  if type(m.accounts) == "table" and #m.accounts > 0 then
    c.accounts = {}
    for _, a in ipairs(m.accounts) do c.accounts[tostring(a)] = true end
  end
  for _, t in ipairs(topics) do
    if t == "logs" and not c.topics.logs then self:log_listener(1) end
    c.topics[t] = true
  end
  local list = {}
  for t in pairs(c.topics) do list[#list + 1] = t end
  table.sort(list)
  send(c, { type = "subscribed", topics = list, seq = self.seq })
  -- no event may slip between the replay and the live ones: both happen
  -- in this turn of the loop
  if type(m.since) == "number" then self:replay(c, m.since) end
  c.live = true
end

function Hub:message(id, text)
  local c = self.clients[id]
  if not c then return end
  local m = json.decode(text)
  if type(m) ~= "table" then return send(c, { type = "error", message = "expected a JSON object with an \"op\"" }) end
  if m.op == "auth" then
    local limited = self.auth:limited(c.peer)
    if limited then return send(c, { type = "error", message = ("too many failed attempts: wait %d s"):format(limited) }) end
    local who, why = self.auth:identify("Bearer " .. tostring(m.token))
    if not who then
      self.auth:failed(c.peer, "stream token", {})
      return send(c, { type = "error", message = why })
    end
    c.who = who
    return send(c, { type = "authenticated", name = who.name, scope = who.scope })
  elseif m.op == "subscribe" then
    return self:subscribe(c, m)
  elseif m.op == "unsubscribe" then
    for _, t in ipairs(type(m.topics) == "table" and m.topics or {}) do
      if t == "logs" and c.topics.logs then self:log_listener(-1) end
      c.topics[t] = nil
    end
    return send(c, { type = "unsubscribed", topics = types.list(m.topics) })
  elseif m.op == "ping" then
    return send(c, { type = "pong", seq = self.seq })
  end
  send(c, { type = "error", message = ("unknown op %q (auth, subscribe, unsubscribe, ping)"):format(tostring(m.op)) })
end

return M
