--- vibex.agent.recorder — an account's order record, written ahead of the
-- wire and behind it in order.
--
--   local rq = recorder.new{repos = repos, path = "data/orders/main.log", account = "main"}
--   rq:replay()                         -- at start: what a killed process logged goes to the database
--   rq:insert(row)                      -- before the order is sent: logged now, written to PostgreSQL behind
--   rq:update(client_order_id, fields)  -- the venue's answer (or "unknown"), the same way
--   rq:state(client_order_id, order, extra) -- the order's state as the venue reports it (an update)
--   rq:fill(f)                          -- a fill the venue reported, the same way
--   rq:decision(row)                    -- the decision row the cycle's orders point at, the same way
--   rq:enqueue(fn)                      -- any other write that must keep its place (the decision row)
--   rq:flush()                          -- wait until the database has everything queued so far
--
-- Why: the row of an order must exist before its bytes leave, and a
-- decision must reach the venue in microseconds, not after a database
-- round trip. So the row is appended to a local log first (one write(2): it
-- survives kill -9, which is the process dying, not the machine) and the
-- database writes run in a task, strictly in order. At the next start the
-- log is replayed into the database (inserts are idempotent on the client
-- order id, updates only move an order forward) and truncated; a running
-- process truncates it whenever the queue has drained.
local json = require "vibex.json"
local log = require "vibex.log"
local runtime = require "vibex.runtime"
local task = require "vibex.task"

local M = {}

local alog = log.channel("app")

local R = {}
R.__index = R

--- o: repos (vibex.db repos, may be nil: then nothing is recorded),
-- path (the log file), account (for messages), max_log_bytes (1 MiB).
function M.new(o)
  local self = setmetatable({ repos = o.repos, path = o.path, account = o.account, queue = {}, head = 1, tail = 0,
                              max_log_bytes = o.max_log_bytes or 2 ^ 20, log_bytes = 0, waiters = {},
                              failures = 0 }, R)
  if self.path then runtime.mkdir_p(runtime.dirname(self.path)) end
  return self
end

function R:_log(entry)
  if not self.path then return true end
  if not self.file then
    local f, err = io.open(self.path, "ab")
    if not f then return nil, err end
    self.file = f
    self.log_bytes = f:seek("end") or 0
  end
  -- what reaches the disk is masked like the logs: a secret never lands in a file
  local line = log.mask_secrets(json.encode(entry)) .. "\n"
  local ok, err = self.file:write(line)
  if ok then ok, err = self.file:flush() end -- in the kernel now: a kill cannot lose it
  if not ok then return nil, err end
  self.log_bytes = self.log_bytes + #line
  return true
end

local function apply(repos, entry)
  if entry.op == "insert" then return repos.orders:insert(entry.row) end
  if entry.op == "update" then return repos.orders:update(entry.client_order_id, entry.fields) end
  if entry.op == "fill" then return repos.fills:record(entry.account, entry.fill, entry.run_id) end
  if entry.op == "decision" then return repos.decisions:record(entry.row) end
  return true
end

function R:_pump()
  while self.head <= self.tail do
    local item = self.queue[self.head]
    local ok, res, err = pcall(item)
    if not ok or (res == nil and err) then
      self.failures = self.failures + 1
      alog:error("order record not written to the database (it stays in the local order log)",
        { account = self.account, error = tostring(ok and err or res) })
    end
    self.queue[self.head] = nil
    self.head = self.head + 1
  end
  self.head, self.tail = 1, 0
  self.worker = nil
  -- everything logged so far is in the database (or its outage journal),
  -- or was refused by it (and replaying would be refused again)
  if self.file and self.log_bytes > self.max_log_bytes then self:_truncate() end
  local w = self.waiters
  self.waiters = {}
  for _, t in ipairs(w) do task.unpark(t) end
end

function R:enqueue(fn)
  if not self.repos then return end
  self.tail = self.tail + 1
  self.queue[self.tail] = fn
  if not self.worker then
    self.worker = task.spawn("order-recorder:" .. tostring(self.account), function() self:_pump() end)
  end
end

--- Record an order before it is sent (row: see db.orders:insert). Returns
-- true, or nil, err when even the local log cannot be written (then the
-- order must not be sent).
function R:insert(row)
  if not self.repos then return true end
  local ok, err = self:_log { op = "insert", row = row }
  if not ok then return nil, ("order log %s: %s"):format(self.path, tostring(err)) end
  local repos = self.repos
  self:enqueue(function() return repos.orders:insert(row) end)
  return true
end

--- Record the decision row a cycle's orders point at (row: see
-- db.decisions:record), logged ahead of them.
function R:decision(row)
  if not self.repos then return true end
  local ok, err = self:_log { op = "decision", row = row }
  if not ok then alog:error("order log not written", { account = self.account, error = tostring(err) }) end
  local repos = self.repos
  self:enqueue(function() return repos.decisions:record(row) end)
  return true
end

--- Record what became of an order (fields: see db.orders:update).
function R:update(client_order_id, fields)
  if not self.repos then return true end
  local ok, err = self:_log { op = "update", client_order_id = client_order_id, fields = fields }
  if not ok then alog:error("order log not written", { account = self.account, error = tostring(err) }) end
  local repos, account = self.repos, self.account
  self:enqueue(function()
    local res, uerr = repos.orders:update(client_order_id, fields)
    if type(res) == "table" and res.refused then
      alog:warn("order update refused: it would move the order backwards", { account = account,
        client_order_id = client_order_id, recorded = res.status, recorded_executed = res.executed_quantity,
        update = fields.status, update_executed = fields.executed_quantity })
      return true
    end
    return res, uerr
  end)
  return true
end

--- Record the state of order client_order_id as the venue reports it (o: a
-- domain order; extra: more fields, see db.orders:update; time_ms: the
-- venue's time of this state, else the order's own).
function R:state(client_order_id, o, extra, time_ms)
  return self:update(client_order_id, M.state_fields(o, extra, time_ms))
end

--- The update fields of a domain order's state (extra: more fields;
-- time_ms: the venue's time of this state, else the order's own).
function M.state_fields(o, extra, time_ms)
  local fields = extra or {}
  fields.status, fields.executed_quantity, fields.average_price = o.status, o.executed_quantity, o.average_price
  fields.venue_order_id, fields.venue_time_ms = o.venue_order_id, time_ms or o.updated_ms
  return fields
end

--- Record a fill the venue reported (f: a domain fill), the same way.
function R:fill(f)
  if not self.repos then return true end
  local account, run_id = self.account, self.run_id
  local ok, err = self:_log { op = "fill", account = account, fill = f, run_id = run_id }
  if not ok then alog:error("order log not written", { account = self.account, error = tostring(err) }) end
  local repos = self.repos
  self:enqueue(function() return repos.fills:record(account, f, run_id) end)
  return true
end

--- Wait until every queued write has been tried.
function R:flush()
  if not self.worker then return true end
  local me = task.current()
  if not me then return true end
  self.waiters[#self.waiters + 1] = me
  task.park(true)
  return true
end

function R:_truncate()
  if self.file then self.file:close() end
  self.file = nil
  local f = io.open(self.path, "wb")
  if f then f:close() end
  self.log_bytes = 0
end

--- At start: apply what the log holds (a previous process wrote it and may
-- have died before the database had it), then empty it. Returns the number
-- of entries applied | nil, err (the log stays for the next start).
function R:replay()
  if not (self.repos and self.path) then return 0 end
  local text = runtime.read_file(self.path)
  if not text or text == "" then return 0 end
  local n = 0
  for line in text:gmatch("[^\n]+") do
    local entry = json.decode(line)
    if type(entry) == "table" then -- a line cut short by the kill is the only kind that fails
      local res, err = apply(self.repos, entry)
      if res == nil and err then
        if err.kind == "transport" or err.kind == "lost" then
          return nil, ("order log %s: %s"):format(self.path, tostring(err))
        end
        alog:error("order log entry refused by the database", { account = self.account, error = tostring(err),
                                                                entry = line:sub(1, 300) })
      end
      n = n + 1
    end
  end
  self:_truncate()
  if n > 0 then alog:info("order log replayed into the database", { account = self.account, entries = n }) end
  return n
end

function R:close()
  self:flush()
  if self.file then self.file:close() end
  self.file = nil
end

return M
