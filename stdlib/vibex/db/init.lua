--- vibex.db — PostgreSQL through a small pool of asynchronous connections.
--
--   local db = require "vibex.db"
--   local pool = db.pool{conninfo = "host=… dbname=vibex user=vibex", size = 4}
--   local rows, err = pool:query("select * from orders where account_id = $1", id)
--   local ok, err = pool:tx(function(c)
--     c:query("insert into a values ($1)", 1)
--     return c:query("update b set n = n + 1")
--   end)                                           -- BEGIN … COMMIT, ROLLBACK on error
--   pool:copy("COPY candles (…) FROM STDIN", chunks)
--   local l = pool:listen("orders", function(n) … end)   -- n = {channel, payload, pid}
--   pool:close()
--
-- A query waits (in its task) for a free connection, then for its result;
-- other tasks run meanwhile. Connections are opened on demand up to `size`.
-- A connection that died while idle (server restart) is noticed before use
-- and replaced; opening one retries with backoff for `reconnect_ms`, then
-- fails clearly. A statement whose connection breaks mid-flight fails with
-- err.kind == "lost" — except that one taken from the idle pool and lost
-- before any answer is re-sent once on a fresh connection. Nothing is
-- dropped silently: every call returns rows or an error.
-- Results and errors: see vibex.db.pg.
local log = require "vibex.log"
local errors = require "vibex.errors"
local metrics = require "vibex.metrics"
local pg = require "vibex.db.pg"
local task = require "vibex.task"

local M = {}
M.pg = pg
M.is_error = pg.is_error

local dlog = log.channel("app")
local queries_total = metrics.counter("vibex_db_queries_total", "Database statements by outcome", { "outcome" })
local query_seconds = metrics.histogram("vibex_db_query_seconds", "Database statement latency, pool wait included", {})

local Pool = {}
Pool.__index = Pool
Pool.__tostring = function(p)
  return ("<db pool %s: %d open, %d idle, %d waiting>"):format(p.db, p.open, #p.idle, #p.waiters)
end

--- o: conninfo, size (4), connect_timeout_ms (5000), reconnect_ms (5000),
-- min_backoff_ms (100), max_backoff_ms (2000), statement_timeout_ms (the
-- server cancels a statement running longer; nil = the server's default).
---@param o table conninfo, size, connect_timeout_ms, reconnect_ms, min_backoff_ms, max_backoff_ms, statement_timeout_ms
---@return table pool query, exec, tx, copy, close
function M.pool(o)
  if type(o) ~= "table" or type(o.conninfo) ~= "string" then
    error("db.pool{conninfo = …}: a connection string is required", 2)
  end
  return setmetatable({
    conninfo = o.conninfo, db = pg.describe(o.conninfo), size = o.size or 4,
    connect_timeout_ms = o.connect_timeout_ms or 5000, reconnect_ms = o.reconnect_ms or 5000,
    min_backoff_ms = o.min_backoff_ms or 100, max_backoff_ms = o.max_backoff_ms or 2000,
    statement_timeout_ms = o.statement_timeout_ms,
    idle = {}, waiters = {}, open = 0, listeners = {},
  }, Pool)
end

--- Open a connection, retrying with backoff for reconnect_ms.
function Pool:_connect()
  local deadline, attempt = task.now() + self.reconnect_ms, 0
  while true do
    local c, err = pg.connect(self.conninfo, { timeout_ms = self.connect_timeout_ms,
                                               statement_timeout_ms = self.statement_timeout_ms })
    if c then
      if attempt > 0 then dlog:info("database connection re-established", { db = self.db, attempts = attempt + 1 }) end
      return c
    end
    attempt = attempt + 1
    local wait = math.min(self.max_backoff_ms, self.min_backoff_ms * 2 ^ (attempt - 1)) * (0.5 + math.random() / 2)
    if self.closed or task.now() + wait > deadline then return nil, err end
    if attempt == 1 then dlog:warn("database unreachable; retrying", { db = self.db, error = tostring(err) }) end
    task.sleep(wait)
  end
end

--- A connection for one command; waits when all `size` are busy.
function Pool:_acquire()
  while true do
    if self.closed then return nil, pg.error("invalid", "the pool is closed", self.db) end
    local c = table.remove(self.idle)
    if c then
      if c:alive() then return c, true end
      c:close()
      self.open = self.open - 1
    elseif self.open < self.size then
      self.open = self.open + 1
      local nc, err = self:_connect()
      if nc then return nc, false end
      self.open = self.open - 1
      self:_wake()
      return nil, err
    else
      self.waiters[#self.waiters + 1] = task.current()
      task.park(true)
    end
  end
end

function Pool:_wake()
  while #self.waiters > 0 do
    if task.unpark(table.remove(self.waiters, 1)) then return end
  end
end

function Pool:_release(c)
  if self.closed or not c:ok() or c:tx_status() ~= "idle" then
    c:close()
    self.open = self.open - 1
  else
    self.idle[#self.idle + 1] = c
  end
  self:_wake()
end

--- Run fn(conn) on a pooled connection; an idle connection that turns out
-- dead before answering is replaced and fn tried once more.
function Pool:_with(fn)
  local t0 = task.hrtime()
  for attempt = 1, 2 do
    local c, reused = self:_acquire()
    if not c then
      queries_total:labels("connect"):inc()
      return nil, reused
    end
    local ok, res, err = pcall(fn, c)
    self:_release(c)
    if not ok then error(res, 0) end
    if res ~= nil or not (err and err.kind == "lost" and reused and attempt == 1 and not c.answered) then
      query_seconds:observe(tonumber(task.hrtime() - t0) / 1e9)
      queries_total:labels(res ~= nil and "ok" or err.kind):inc()
      return res, err
    end
    dlog:warn("idle database connection was dead; sending again on a new one", { db = self.db })
  end
end

function Pool:query(sql, ...)
  local n, args = select("#", ...), { ... }
  return self:_with(function(c) return c:query(sql, unpack(args, 1, n)) end)
end

--- A statement prepared once per connection (on first use) and then only
-- executed: for the hot, repeated writes.
--- Statements {{sql, params, n}, …} in one round trip, all or nothing
-- (vibex.db.pg Conn:pipeline).
function Pool:pipeline(stmts)
  return self:_with(function(c) return c:pipeline(stmts) end)
end

function Pool:run_prepared(name, sql, ...)
  local n, args = select("#", ...), { ... }
  return self:_with(function(c)
    if not (c.prepared and c.prepared[name]) then
      local ok, err = c:prepare(name, sql)
      if not ok then return nil, err end
    end
    return c:execute(name, unpack(args, 1, n))
  end)
end

function Pool:copy(sql, data)
  return self:_with(function(c) return c:copy(sql, data) end)
end

--- BEGIN; fn(conn); COMMIT. fn returning nil, err — or raising — rolls back
-- and gives nil, err (a raise is re-raised after the rollback).
function Pool:tx(fn)
  local c, err = self:_acquire()
  if not c then return nil, err end
  local res = { c:query("BEGIN") }
  if res[1] == nil then
    self:_release(c)
    return nil, res[2]
  end
  local out = { pcall(fn, c) }
  local failed = not out[1] or (out[2] == nil and out[3] ~= nil)
  if failed then
    c:query("ROLLBACK")
    self:_release(c)
    if not out[1] then error(out[2], 0) end
    return nil, out[3]
  end
  local _, cerr = c:query("COMMIT")
  self:_release(c)
  if cerr then return nil, cerr end
  return unpack(out, 2, table.maxn(out))
end

--- Call fn(notification) for every NOTIFY on `channel`, on a connection of
-- its own (outside the pool's size), re-listening after a reconnect;
-- o.on_reconnect() is called then (notifications sent meanwhile are gone:
-- re-read what they announce). Returns a handle with :close().
function Pool:listen(channel, fn, o)
  o = o or {}
  local h = { channel = channel }
  local pool = self
  h.task = task.spawn("db-listen", function()
    local first = true
    while not h.closed do
      local c = pool:_connect()
      if c and c:listen(channel) then
        h.conn = c
        if not first and o.on_reconnect then o.on_reconnect() end
        first = false
        while true do
          local n = c:notification()
          if not n then break end
          local ok, err = xpcall(fn, debug.traceback, n)
          if not ok then dlog:error("db listener failed", { channel = channel, error = tostring(err) }) end
        end
        h.conn = nil
      end
      if c then c:close() end
      if not h.closed then task.sleep(pool.min_backoff_ms) end
    end
  end)
  function h.close()
    h.closed = true
    if h.conn then h.conn:close() end
    h.task:cancel()
  end
  self.listeners[#self.listeners + 1] = h
  return h
end

-- ---- the private server vibex manages ------------------------------------------------------------
-- Several vibex processes may use one data directory's server at once (a
-- `vibex run`, and `vibex llm stats` beside it). Each registers its pid in
-- <data_dir>/pg.users/ while it uses the server; the last one out stops it
-- and waits until it is down. Starting, registering, and the last-one-out
-- check and stop all happen under one lock (<data_dir>/pg.lock, flock, so
-- a killed holder releases it), so no process starts a server that another
-- is stopping, or mistakes a server on its way down for a running one. A
-- user killed with -9 leaves its pid behind; it is dead, so it does not
-- count, and the next process out stops the server.

-- A wait that a shutdown lets finish (an I/O wait with a deadline).
local function pause(ms) pcall(task.timeout, ms, task.park, true) end

local function with_lock(path, fn, ...)
  local runtime = require "vibex.runtime"
  local deadline = task.now() + 60000
  local fd, err = runtime.lock_try(path)
  while not fd do
    if err ~= "busy" or task.now() > deadline then
      return nil, errors.new(err == "busy" and "timeout" or "storage", ("database server lock %s: %s"):format(path, err == "busy" and "held for over a minute" or tostring(err)), { source = "database" })
    end
    pause(50)
    fd, err = runtime.lock_try(path)
  end
  local res = { pcall(fn, ...) }
  runtime.unlock(fd)
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, table.maxn(res))
end

local function live_users(dir)
  local runtime = require "vibex.runtime"
  local n = 0
  for _, name in ipairs(runtime.listdir(dir) or {}) do
    local pid = tonumber(name)
    if pid and pid ~= runtime.pid() and runtime.pid_alive(pid) then
      n = n + 1
    elseif pid and pid ~= runtime.pid() then
      os.remove(dir .. "/" .. name) -- a user that died without signing out
    end
  end
  return n
end

local managed = {} -- handles of this process's managed servers, closed by M.close_all()

--- The database a config names, or the private one vibex manages:
-- o.url (a string or a vibex.secret), o.data_dir (the local cluster lives
-- in <data_dir>/pg), o.pool_size. Returns {pool, cluster (when local),
-- describe, close()} | nil, err. The local server is started when needed
-- and stopped (and waited for) by the last process that closes it.
---@param o table url, data_dir, pool_size, statement_timeout_ms
---@return table|nil handle {pool, describe, close()}
---@return vibex.Error|nil err
function M.open(o)
  o = o or {}
  local url = o.url
  if type(url) == "table" and url.reveal then url = url:reveal() end
  local h = {}
  if url then
    h.conninfo = url
  else
    local cluster = require "vibex.db.cluster"
    local runtime = require "vibex.runtime"
    local base = o.data_dir or "data"
    local ok, merr = runtime.mkdir_p(base)
    if not ok then return nil, errors.new("storage", ("cannot create %s: %s"):format(base, tostring(merr)), { source = "database" }) end
    local users = base .. "/pg.users"
    runtime.mkdir_p(users)
    local c, err = with_lock(base .. "/pg.lock", function()
      local c, err = cluster.start { dir = base .. "/pg" }
      if not c then return nil, err end
      local wok, werr = runtime.write_file(users .. "/" .. runtime.pid(), tostring(runtime.pid()))
      if not wok then return nil, werr end
      return c
    end)
    if not c then return nil, err end
    h.cluster, h.lock, h.users = c, base .. "/pg.lock", users
    h.conninfo = c.conninfo
    managed[h] = true
  end
  h.pool = M.pool { conninfo = h.conninfo, size = o.pool_size or 4, statement_timeout_ms = o.statement_timeout_ms }
  h.describe = h.pool.db
  function h.close()
    if h.closed then return end
    h.closed = true
    h.pool:close()
    if not h.cluster then return end
    managed[h] = nil
    local runtime = require "vibex.runtime"
    local _, err = with_lock(h.lock, function()
      os.remove(h.users .. "/" .. runtime.pid())
      if live_users(h.users) > 0 then return true end -- another vibex still uses it
      local ok, serr = h.cluster:stop()
      if not ok and not tostring(serr):find("not running", 1, true) and not tostring(serr):find("No such", 1, true) then
        return nil, serr
      end
      return true
    end)
    if err then dlog:warn("the local database server did not stop cleanly", { dir = h.cluster.dir, error = tostring(err) }) end
  end
  -- a first statement proves the database answers (and says why not)
  local v, err = h.pool:query("SELECT current_setting('server_version_num')::int AS n")
  if err then
    h.close()
    return nil, err
  end
  if v[1].n < 140000 then
    h.close()
    return nil, errors.new("config", ("database %s runs PostgreSQL %d.%d; vibex needs 14 or newer"):format(h.describe,
      math.floor(v[1].n / 10000), v[1].n % 10000), { source = "database" })
  end
  return h
end

--- Close every managed server this process opened and did not close (the
-- REPL's, a command's that returned early): the CLI calls it on the way out.
function M.close_all()
  local list = {}
  for h in pairs(managed) do list[#list + 1] = h end
  for _, h in ipairs(list) do pcall(h.close) end
end

local REPOS = { "accounts", "strategies", "orders", "fills", "positions", "candles", "decisions", "diary", "ledger",
                "runs" }

--- The repositories over a pool: db.repos{pool = …, writer = …}.accounts,
-- .orders, .fills, .positions, .candles, .decisions, .diary, .ledger.
-- Writes go through the journal writer when one is given (they survive an
-- outage), straight to the pool otherwise; reads always use the pool.
-- A secret never reaches storage: every text a repository writes has the
-- registered secret values masked (a model error that echoes the key, a
-- diary line, an answer), as the logs do.
local mask = log.mask_secrets
local function masked(n, ...)
  local args = { ... }
  for i = 1, n do
    if type(args[i]) == "string" then args[i] = mask(args[i]) end
  end
  return args
end

--- The repositories (orders, fills, decisions, runs, …) over a pool: o = {pool, writer}.
---@param o table {pool, writer}
---@return table repos
function M.repos(o)
  local pool = assert(o and o.pool, "db.repos{pool = …}")
  local write
  if o.writer then
    write = function(sql, ...)
      local n = select("#", ...)
      return o.writer:write(sql, unpack(masked(n, ...), 1, n))
    end
  else
    write = function(sql, ...)
      local n = select("#", ...)
      return pool:query(sql, unpack(masked(n, ...), 1, n))
    end
  end
  local out = {}
  for _, name in ipairs(REPOS) do
    out[name] = setmetatable({ pool = pool, write = write }, require("vibex.db.repo." .. name))
  end
  --- A set of the same repositories whose writes are collected and sent
  -- by :commit() as one transaction in one round trip (a pipeline), or
  -- as one journal entry during an outage. Reads still go to the pool.
  function out.batch()
    local stmts = {}
    local b = {}
    -- parameters are masked at commit, not here: a cycle's record is built
    -- on the decision's critical path and committed behind it
    local function collect(sql, ...)
      local n = select("#", ...)
      stmts[#stmts + 1] = { sql = sql, params = { ... }, n = n }
      return { batched = true }
    end
    for _, name in ipairs(REPOS) do
      b[name] = setmetatable({ pool = pool, write = collect }, require("vibex.db.repo." .. name))
    end
    function b.commit()
      if #stmts == 0 then return true end
      local list = stmts
      stmts = {}
      for _, st in ipairs(list) do
        local params = st.params
        for i = 1, st.n do
          if type(params[i]) == "string" then params[i] = mask(params[i]) end
        end
      end
      if o.writer then return o.writer:write_batch(list) end
      return pool:pipeline(list)
    end
    return b
  end
  return out
end

function Pool:stats()
  return { size = self.size, open = self.open, idle = #self.idle, waiting = #self.waiters }
end

function Pool:close()
  self.closed = true
  for _, c in ipairs(self.idle) do c:close() end
  self.open = self.open - #self.idle
  self.idle = {}
  for _, h in ipairs(self.listeners) do h.close() end
  while #self.waiters > 0 do task.unpark(table.remove(self.waiters, 1)) end
end

return M
