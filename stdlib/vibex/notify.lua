--- vibex.notify — notifications to Telegram (Bot API), Discord and Slack
-- webhooks and a generic JSON webhook, per config entry (`notifications`),
-- filtered by event kind and account.
--
-- Kinds: fill, entry, exit (orders of a decision the venue took), fallback
-- (an account started deciding by its fallback), breaker (a circuit breaker
-- opened), daily_loss (the risk gate refused for the daily loss limit),
-- reconciliation (the venue corrected the record), error (error lines).
--
-- Nothing here blocks a decision: event() appends to a bounded queue and
-- returns; each notifier sends from its own task. Events within group_s
-- become one message (a storm is one message saying how many); at most
-- max_per_minute messages go out; sending goes through the notifier's
-- circuit breaker with retries and backoff, and a notifier that is down
-- only delays its own messages (dropped past 1000 waiting, and counted).
local http = require "vibex.http"
local json = require "vibex.json"
local log = require "vibex.log"
local task = require "vibex.task"
local breaker = require "vibex.breaker"
local runtime = require "vibex.runtime"
local metrics = require "vibex.metrics"

local M = {}

local alog = log.channel("app")
local sent_total = metrics.counter("vibex_notifications_total", "Notification messages by notifier and outcome", { "notifier", "outcome" })
local MAX_QUEUE, LIST_MAX = 1000, 10

local Notifier = {}
Notifier.__index = Notifier

local function iso(ms) return os.date("!%Y-%m-%d %H:%M:%S", math.floor(ms / 1000)) end

-- ---- what the agent's events mean --------------------------------------------------------------

local function decision_events(d, state)
  local out = {}
  for _, o in ipairs(d.orders or {}) do
    if (o.kind == "entry" or o.kind == "exit") and o.status ~= "rejected" and o.status ~= "skipped" and o.status ~= "failed" then
      out[#out + 1] = { kind = o.kind, account = d.account,
                        text = ("%s %s: %s %s %s%s"):format(d.account, o.kind, o.side or "", o.quantity or "", o.symbol or "",
                          d.by and (" (by " .. d.by .. ")") or "") }
    end
  end
  for _, r in ipairs(d.refusals or {}) do
    if r.rule == "max_daily_loss" or r.rule == "daily_loss" then
      local day = os.date("!%Y-%m-%d", math.floor((d.time_ms or runtime.wall_ms()) / 1000))
      if state.daily[d.account] ~= day then
        state.daily[d.account] = day
        out[#out + 1] = { kind = "daily_loss", account = d.account, text = ("%s: daily loss limit reached, no new entries today (%s)"):format(d.account, r.message or "") }
      end
    end
  end
  local fb = d.fallback
  if fb and not state.fallback[d.account] then
    out[#out + 1] = { kind = "fallback", account = d.account, text = ("%s: deciding by its fallback: %s"):format(d.account, fb) }
  end
  state.fallback[d.account] = fb
  return out
end

--- The notification events of one agent event (a list, often empty).
function M.translate(kind, data, state)
  if kind == "fill" then
    return { { kind = "fill", account = data.account, text = ("%s fill: %s %s %s @ %s (fee %s%s)"):format(data.account, data.side or "",
      data.quantity or "", data.symbol or "", data.price or "", data.fee or "0",
      (tonumber(data.realized_pnl) or 0) ~= 0 and (", PnL " .. data.realized_pnl) or "") } }
  elseif kind == "decision" then
    return decision_events(data, state)
  end
  return {}
end

-- ---- one notifier ---------------------------------------------------------------------------------

local function secret(v) return type(v) == "table" and v.reveal and v:reveal() or v end

function Notifier:wants(ev)
  local c = self.cfg
  if not self.kinds[ev.kind] then return false end
  if c.accounts and ev.account then
    for _, a in ipairs(c.accounts) do if a == ev.account then return true end end
    return false
  end
  return true
end

function Notifier:push(ev)
  if not self:wants(ev) then return end
  if #self.queue >= MAX_QUEUE then self.dropped = self.dropped + 1 return end
  ev.time_ms = ev.time_ms or runtime.wall_ms()
  self.queue[#self.queue + 1] = ev
  if self.waiting then task.unpark(self.waiting) end
end

-- One message of a group of events.
function Notifier:text(list, dropped)
  if #list == 1 and dropped == 0 then return list[1].text end
  local lines = { ("vibex: %d events%s"):format(#list + dropped, dropped > 0 and (" (%d not listed: the queue was full)"):format(dropped) or "") }
  local counts = {}
  for _, e in ipairs(list) do counts[e.kind] = (counts[e.kind] or 0) + 1 end
  local kinds = {}
  for k, n in pairs(counts) do kinds[#kinds + 1] = ("%d %s"):format(n, k) end
  table.sort(kinds)
  lines[1] = lines[1] .. ": " .. table.concat(kinds, ", ")
  for i = 1, math.min(#list, LIST_MAX) do lines[#lines + 1] = "• " .. list[i].text end
  if #list > LIST_MAX then lines[#lines + 1] = ("… and %d more"):format(#list - LIST_MAX) end
  return table.concat(lines, "\n")
end

function Notifier:request(list, dropped)
  local c, text = self.cfg, self:text(list, dropped)
  if c.kind == "telegram" then
    local base = (c.url or "https://api.telegram.org"):gsub("/$", "")
    return base .. "/bot" .. secret(c.bot_token) .. "/sendMessage",
      { chat_id = c.chat_id, text = text, disable_web_page_preview = true }
  elseif c.kind == "discord" then
    return c.url, { content = text:sub(1, 2000) }
  elseif c.kind == "slack" then
    return c.url, { text = text }
  end
  local events = {}
  for i, e in ipairs(list) do
    events[i] = { kind = e.kind, account = e.account, time = iso(e.time_ms), text = e.text }
  end
  return c.url, { source = "vibex", count = #list + dropped, dropped = dropped, text = text, events = events }
end

-- Send one message: retried with backoff while the endpoint fails in a
-- way that can pass; the breaker stops hammering one that is down.
function Notifier:send(list, dropped)
  local url, body = self:request(list, dropped)
  local payload = json.encode(body)
  for attempt = 1, 4 do
    local token = self.breaker:allow()
    if token then
      local res, err = http.request { method = "POST", url = url, headers = { ["Content-Type"] = "application/json" },
                                      body = payload, timeout_ms = self.cfg.timeout_ms, connect_timeout_ms = math.min(self.cfg.timeout_ms, 3000) }
      local ok = res and res.status >= 200 and res.status < 300
      self.breaker:record(token, ok or (res and res.status >= 400 and res.status < 500 and res.status ~= 429))
      if ok then
        sent_total:labels(self.cfg.name, "sent"):inc()
        return true
      end
      local why = res and ("HTTP " .. res.status) or tostring(err and err.message or err)
      if res and res.status >= 400 and res.status < 500 and res.status ~= 429 then
        alog:warn("notification refused by the endpoint; not retried", { notifier = self.cfg.name, status = res.status })
        sent_total:labels(self.cfg.name, "refused"):inc()
        return false
      end
      alog:warn("notification not sent; retrying", { notifier = self.cfg.name, attempt = attempt, error = why })
    end
    if self.closed then break end
    task.sleep(math.min(30000, 500 * 2 ^ attempt))
  end
  sent_total:labels(self.cfg.name, "failed"):inc()
  alog:warn("notification dropped after retries", { notifier = self.cfg.name, events = #list })
  return false
end

function Notifier:run()
  while not self.closed do
    if #self.queue == 0 then
      self.waiting = task.current()
      pcall(task.timeout, 60000, task.park, true)
      self.waiting = nil
    else
      -- gather the group: everything that arrives within group_s of the first
      if (self.cfg.group_s or 0) > 0 then task.sleep(self.cfg.group_s * 1000) end
      -- the rate limit: at most max_per_minute messages a minute
      local now = runtime.wall_ms()
      local recent = {}
      for _, t in ipairs(self.sent_at) do if t > now - 60000 then recent[#recent + 1] = t end end
      self.sent_at = recent
      if #recent >= self.cfg.max_per_minute then
        task.sleep(recent[1] + 60000 - now)
      else
        local list, dropped = self.queue, self.dropped
        self.queue, self.dropped = {}, 0
        self.sent_at[#self.sent_at + 1] = runtime.wall_ms()
        self:send(list, dropped)
      end
    end
  end
end

local function new_notifier(cfg)
  local kinds = {}
  for _, k in ipairs(cfg.events) do kinds[k] = true end
  local self = setmetatable({ cfg = cfg, kinds = kinds, queue = {}, dropped = 0, sent_at = {},
    breaker = breaker.new { name = "notify:" .. cfg.name, failure_threshold = 3, cooldown_ms = 30000 } }, Notifier)
  self.task = task.spawn("notify:" .. cfg.name, function() self:run() end)
  return self
end

-- ---- the set of notifiers --------------------------------------------------------------------------

local Set = {}
Set.__index = Set

--- o: config() -> the notifications list (read again on every event, so a
--- reload applies: a changed entry starts over).
function M.new(o)
  local self = setmetatable({ config = o.config, notifiers = {}, state = { daily = {}, fallback = {} }, breakers = {} }, Set)
  self:sync()
  self.untap = log.tap(function(level, channel, msg, fields) self:log_line(level, channel, msg, fields) end)
  self.watch = task.spawn("notify:breakers", function()
    while not self.closed do
      task.sleep(1000)
      self:check_breakers()
    end
  end)
  return self
end

function Set:sync()
  local list = self.config() or {}
  local seen = {}
  for _, cfg in ipairs(list) do
    seen[cfg.name] = true
    local cur = self.notifiers[cfg.name]
    if not cur or not require("vibex.config").deep_equal(cur.cfg, cfg) then
      if cur then cur.closed = true end
      self.notifiers[cfg.name] = new_notifier(cfg)
    end
  end
  for name, n in pairs(self.notifiers) do
    if not seen[name] then n.closed = true; self.notifiers[name] = nil end
  end
  self.list_ref = list
end

function Set:push(ev)
  if self.config() ~= self.list_ref then self:sync() end
  for _, n in pairs(self.notifiers) do n:push({ kind = ev.kind, account = ev.account, text = ev.text, time_ms = ev.time_ms }) end
end

--- An agent event (vibex.agent observe kinds).
function Set:event(kind, data)
  for _, ev in ipairs(M.translate(kind, data, self.state)) do self:push(ev) end
end

function Set:log_line(level, channel, msg, fields)
  if msg:find("^notification") then return end -- never about itself
  fields = fields or {}
  if channel == "trading" and (msg:find("corrected from the venue") or msg:find("did not place") or msg:find("unknown order resolved")) then
    self:push { kind = "reconciliation", account = fields.account, text = log.mask_secrets(("%s: %s"):format(tostring(fields.account or "?"), msg)) }
  elseif level == "error" then
    self:push { kind = "error", account = fields.account, text = log.mask_secrets(("error%s: %s"):format(
      fields.account and (" (" .. tostring(fields.account) .. ")") or "", msg)) }
  end
end

function Set:check_breakers()
  for _, b in ipairs(breaker.all()) do
    if not b.name:find("^notify:") then
      local st = b.state
      if st == "open" and self.breakers[b.name] ~= "open" then
        self:push { kind = "breaker", text = ("circuit breaker %s opened: calls fail fast until it recovers"):format(b.name) }
      end
      self.breakers[b.name] = st
    end
  end
end

function Set:close()
  self.closed = true
  if self.untap then self.untap() end
  if self.watch then self.watch:cancel() end
  for _, n in pairs(self.notifiers) do
    n.closed = true
    if n.task then n.task:cancel() end
  end
end

return M
