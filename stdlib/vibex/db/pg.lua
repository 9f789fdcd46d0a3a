--- vibex.db.pg — one PostgreSQL connection, asynchronous on the loop.
--
-- libpq in non-blocking mode, called through LuaJIT FFI; the waiting is a
-- libuv poll on the connection's socket (vibex.core.fdwait), so a query
-- yields its task and the loop runs on. One command in flight per
-- connection: use vibex.db's pool for concurrency.
--
--   local c, err = pg.connect("host=/path dbname=vibex user=vibex", {timeout_ms = 10000})
--   local rows, err = c:query("select $1::numeric as x, now() as t", "0.10")
--   rows[1].x   --> "0.10"   (NUMERIC stays an exact decimal string)
--   rows[1].t   --> 1795531234567.123  (timestamps: epoch ms, µs as the fraction)
--   rows.count, rows.fields, rows.command
--   c:copy("COPY t (a, b) FROM STDIN", {"1\tx\n", "2\ty\n"})  -- or a function returning chunks
--   c:listen("ch"); local n = c:notification()  -- {channel, payload, pid}
--
-- Values convert by type: bool → boolean; int2/4/8, oid, float4/8 → number
-- (int8 beyond 2^53 stays a string); numeric, money → string; date,
-- timestamp, timestamptz → epoch ms; bytea → raw bytes; NULL → nil (a
-- missing field); everything else (text, json, uuid, …) → string.
-- Parameters: nil → NULL, booleans, numbers (integers printed exactly),
-- strings (pass decimals as strings). Never build SQL from values.
--
-- Failures are nil, err (a vibex.errors value) with err.kind: "transport"
-- (cannot connect), "rejected" (the server refused this statement;
-- err.sqlstate, err.detail, err.hint), "lost" (the connection broke
-- mid-command: a write's outcome is unknown), "invalid" (no connection
-- string). err.source names the database (user@host/dbname), never the
-- password.
local ffi = require "ffi"
local fdwait = require "vibex.core.fdwait"
local task = require "vibex.task"
local errors = require "vibex.errors"

require "vibex.cdef" -- the declarations (one registry, checked against the headers at build time)

local C = ffi.C
local M = {}

local POLL_FAILED, POLL_READING, POLL_WRITING, POLL_OK = 0, 1, 2, 3
local CONNECTION_OK, CONNECTION_BAD = 0, 1
local RES = { EMPTY = 0, COMMAND_OK = 1, TUPLES_OK = 2, COPY_OUT = 3, COPY_IN = 4, BAD_RESPONSE = 5,
              NONFATAL = 6, FATAL = 7, PIPELINE_SYNC = 10, PIPELINE_ABORTED = 11 }
local TX = { [0] = "idle", "active", "in_transaction", "in_error", "unknown" }

-- ---- errors ---------------------------------------------------------------------

--- libpq's messages are multi-line; logs and errors want one line.
local function clean(msg) return (tostring(msg or ""):gsub("%s+$", ""):gsub("\n%s*", "; ")) end

--- Strip passwords from anything that might echo a connection string.
local function mask(s)
  s = tostring(s or "")
  s = s:gsub("(password%s*=%s*)'[^']*'", "%1***"):gsub("(password%s*=%s*)[^%s']+", "%1***")
  s = s:gsub("(://[^:/@]*:)[^@]*@", "%1***@")
  return s
end
M.mask = mask

--- A Lua list of strings as a PostgreSQL text[] literal (pass it as $n::text[]).
function M.text_array(list)
  local out = {}
  for i, v in ipairs(list or {}) do out[i] = '"' .. tostring(v):gsub('[\\"]', "\\%0") .. '"' end
  return "{" .. table.concat(out, ",") .. "}"
end

local function new_err(kind, message, db, fields)
  local e = fields or {}
  e.db, e.source = db, "database " .. tostring(db or "?")
  if e.detail then e.detail = mask(clean(e.detail)) end
  return errors.new(kind, mask(clean(message)), e)
end
M.is_error = errors.is
M.error = new_err

--- "user@host/dbname" from a conninfo string or URI, for messages.
local function describe(conninfo)
  local s = tostring(conninfo)
  if s:match("^postgres") then
    local user, host, db = s:match("^postgres%w*://([^:@/]*)[^@/]*@([^/?]*)/?([^?]*)")
    if not user then host, db = s:match("^postgres%w*://([^/?]*)/?([^?]*)") end
    return ("%s@%s/%s"):format(user or "?", host ~= "" and host or "localhost", db ~= "" and db or "?")
  end
  local kv = {}
  for k, v in s:gmatch("(%w+)%s*=%s*'?([^%s']*)'?") do kv[k] = v end
  return ("%s@%s/%s"):format(kv.user or os.getenv("USER") or "?", kv.host or "localhost", kv.dbname or kv.user or "?")
end
M.describe = describe

-- ---- values ---------------------------------------------------------------------------

local int_box = ffi.new("int[1]")

local function to_number(p) return C.strtod(p, nil) end

local CONVERT = {
  [16] = function(p) return p[0] == 116 end, -- bool: 't'
  [20] = function(p, n)                      -- int8: exact below 2^53
    if n > 15 then
      local s = ffi.string(p, n)
      local v = tonumber(s)
      if v and math.abs(v) < 2 ^ 53 then return v end
      return s
    end
    return to_number(p)
  end,
  [21] = to_number, [23] = to_number, [26] = to_number, -- int2, int4, oid
  [700] = function(p) return tonumber(ffi.string(p)) end, -- float4/8 (NaN, Infinity spelled out)
  [701] = function(p) return tonumber(ffi.string(p)) end,
  [1082] = function(p, n) local v = C.vx_pg_timestamp_ms(p, int_box); return int_box[0] == 1 and v or ffi.string(p, n) end,
  [1114] = function(p, n) local v = C.vx_pg_timestamp_ms(p, int_box); return int_box[0] == 1 and v or ffi.string(p, n) end,
  [1184] = function(p, n) local v = C.vx_pg_timestamp_ms(p, int_box); return int_box[0] == 1 and v or ffi.string(p, n) end,
  [17] = function(p)                          -- bytea, hex output
    local len = ffi.new("size_t[1]")
    local raw = C.PQunescapeBytea(p, len)
    if raw == nil then return nil end
    local s = ffi.string(raw, len[0])
    C.PQfreemem(raw)
    return s
  end,
}

local function param_text(v, i)
  local t = type(v)
  if v == nil then return nil end
  if t == "string" then return v end
  if t == "boolean" then return v and "true" or "false" end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      return v ~= v and "NaN" or (v > 0 and "Infinity" or "-Infinity")
    end
    if v == math.floor(v) and math.abs(v) < 2 ^ 63 then return ("%d"):format(v) end
    return ("%.17g"):format(v)
  end
  error(("query parameter $%d: cannot send a %s (use nil, boolean, number or string)"):format(i, t), 4)
end

-- ---- connection ----------------------------------------------------------------------------

local Conn = {}
Conn.__index = Conn
Conn.__tostring = function(c) return ("<postgres %s%s>"):format(c.db, c.conn and "" or " (closed)") end

function Conn:_wait(what, soft)
  local fd = C.PQsocket(self.conn)
  if fd < 0 then return nil, new_err("lost", "the connection has no socket", self.db) end
  if not self.watch or self.watch:fd() ~= fd then
    if self.watch then self.watch:close() end
    local w, err = fdwait.new(fd)
    if not w then return nil, err end
    self.watch = w
  end
  return task.await(self.watch:wait(what, soft))
end

--- Connect: waits in the task. o.timeout_ms (10000).
function M.connect(conninfo, o)
  o = o or {}
  if type(conninfo) ~= "string" or conninfo == "" then
    return nil, new_err("invalid", "a connection string is required (\"host=… dbname=… user=…\" or postgresql://…)", "?")
  end
  local db = describe(conninfo)
  local pc = C.PQconnectStart(conninfo)
  if pc == nil then return nil, new_err("transport", "out of memory", db) end
  pc = ffi.gc(pc, C.PQfinish) -- a connection dropped without close() is still finished
  local self = setmetatable({ conn = pc, db = db, conninfo = conninfo }, Conn)
  if C.PQstatus(pc) == CONNECTION_BAD then
    local e = new_err("transport", "cannot connect: " .. ffi.string(C.PQerrorMessage(pc)), db)
    self:close()
    return nil, e
  end
  local ok, res, err = task.timeout(o.timeout_ms or 10000, function()
    while true do
      local st = C.PQconnectPoll(pc)
      if st == POLL_OK then return true end
      if st == POLL_FAILED then return nil, ffi.string(C.PQerrorMessage(pc)) end
      local _, werr = self:_wait(st == POLL_READING and "r" or "w")
      if werr then return nil, werr end
    end
  end)
  if not ok then
    local msg = res or err
    local timed_out = errors.is(res, "timeout")
    if timed_out then msg = ("no answer within %d ms"):format(o.timeout_ms or 10000) end
    self:close()
    return nil, new_err(timed_out and "timeout" or "transport", "cannot connect: " .. errors.message(msg), db)
  end
  C.PQsetnonblocking(pc, 1)
  -- times in UTC; notices (CREATE … IF NOT EXISTS) stay out of the terminal
  local init = "SET TIME ZONE 'UTC'; SET client_min_messages TO warning"
  if o.statement_timeout_ms then init = init .. ("; SET statement_timeout = %d"):format(o.statement_timeout_ms) end
  local _, serr = self:exec(init)
  if serr then
    self:close()
    return nil, serr
  end
  return self
end

--- Send everything queued; read meanwhile so the server never blocks on us.
function Conn:_flush()
  while true do
    local r = C.PQflush(self.conn)
    if r == 0 then return true end
    if r < 0 then return nil end
    local ev = self:_wait("rw")
    if not ev then return nil end
    if ev:find("r") and C.PQconsumeInput(self.conn) == 0 then return nil end
  end
end

function Conn:_lost(what)
  local msg = ffi.string(C.PQerrorMessage(self.conn))
  self.broken = true
  return nil, new_err("lost", ("connection lost during %s: %s"):format(what, msg ~= "" and msg or "no answer"), self.db)
end

local function result_error(res, db)
  local function field(code)
    local p = C.PQresultErrorField(res, code)
    return p ~= nil and ffi.string(p) or nil
  end
  return new_err("rejected", field(77) or ffi.string(C.PQresultErrorMessage(res)), db,
    { sqlstate = field(67), detail = field(68), hint = field(72), severity = field(86) })
end

--- Convert a TUPLES_OK / COMMAND_OK result into rows.
local function rows_of(res)
  local nf, nt = C.PQnfields(res), C.PQntuples(res)
  local names, convs = {}, {}
  for j = 0, nf - 1 do
    names[j] = ffi.string(C.PQfname(res, j))
    convs[j] = CONVERT[tonumber(C.PQftype(res, j))]
  end
  local rows = {}
  for i = 0, nt - 1 do
    local row = {}
    for j = 0, nf - 1 do
      if C.PQgetisnull(res, i, j) == 0 then
        local p, conv = C.PQgetvalue(res, i, j), convs[j]
        if conv then row[names[j]] = conv(p, C.PQgetlength(res, i, j))
        else row[names[j]] = ffi.string(p, C.PQgetlength(res, i, j)) end
      end
    end
    rows[i + 1] = row
  end
  local fields = {}
  for j = 0, nf - 1 do fields[j + 1] = names[j] end
  rows.fields = fields
  rows.count = tonumber(ffi.string(C.PQcmdTuples(res))) or nt
  rows.command = ffi.string(C.PQcmdStatus(res))
  return rows
end

--- Read results until the command is done. on_copy_in(res) handles COPY IN.
function Conn:_results(what, on_copy_in)
  local out, first_err
  while true do
    while C.PQisBusy(self.conn) == 0 do
      local res = C.PQgetResult(self.conn)
      if res ~= nil then self.answered = true end
      if res == nil then
        if first_err then return nil, first_err end
        return out or {}
      end
      local st = C.PQresultStatus(res)
      if st == RES.TUPLES_OK or st == RES.COMMAND_OK or st == RES.EMPTY then
        out = rows_of(res)
      elseif st == RES.COPY_IN then
        C.PQclear(res)
        res = nil
        local ok, err = on_copy_in()
        if not ok then return nil, err end
      elseif not first_err then
        first_err = result_error(res, self.db)
        -- the server ending the session (shutdown, terminate) or a broken link: not this statement's fault
        local st5 = first_err.sqlstate or ""
        if st5:match("^08") or st5:match("^57P0") then
          errors.rekind(first_err, "lost")
          self.broken = true
        end
      end
      if res ~= nil then C.PQclear(res) end
    end
    local ev = self:_wait("r")
    if not ev or C.PQconsumeInput(self.conn) == 0 then return self:_lost(what) end
  end
end

--- One command on this connection: send() hands it to libpq (1 = queued),
-- then it is flushed and its results read. Every kind of command ends here.
function Conn:_run(what, send, on_copy_in)
  if not self.conn then return nil, new_err("lost", "connection is closed", self.db) end
  if self.busy then error("db: one command at a time per connection (use a pool)", 3) end
  self.busy, self.answered = true, false
  local res, err
  if send(self.conn) == 0 or not self:_flush() then
    res, err = self:_lost(what)
  else
    res, err = self:_results(what, on_copy_in)
  end
  self.busy = false
  return res, err
end

--- Parameters as libpq wants them: count, array of C strings, and the Lua
-- strings the array points into (keep them referenced until sent).
local function param_array(...)
  local n = select("#", ...)
  local vals = ffi.new("const char *[?]", math.max(n, 1))
  local keep = {}
  for i = 1, n do
    local s = param_text((select(i, ...)), i)
    keep[i] = s
    vals[i - 1] = s
  end
  return n, vals, keep
end

--- Run one statement with parameters $1…$n: rows | nil, err.
function Conn:query(sql, ...)
  local n, vals, keep = param_array(...)
  local res, err = self:_run("query", function(conn) return C.PQsendQueryParams(conn, sql, n, nil, vals, nil, nil, 0) end)
  keep = nil -- referenced until here: libpq copied the values when it queued the command
  return res, err
end

-- Read a pipeline's results up to its sync: the last statement's rows, or
-- the first error with the (1-based) index of the statement that failed.
function Conn:_pipeline_results()
  local idx, out, first_err = 1, nil, nil
  while true do
    while C.PQisBusy(self.conn) == 0 do
      local res = C.PQgetResult(self.conn)
      if res == nil then
        idx = idx + 1 -- the end of one statement's results
      else
        self.answered = true
        local st = C.PQresultStatus(res)
        if st == RES.PIPELINE_SYNC then
          C.PQclear(res)
          if first_err then return nil, first_err end
          return out or {}
        elseif st == RES.TUPLES_OK or st == RES.COMMAND_OK or st == RES.EMPTY then
          out = rows_of(res)
        elseif st ~= RES.PIPELINE_ABORTED and not first_err then
          first_err = result_error(res, self.db)
          first_err.statement = idx
        end
        C.PQclear(res)
      end
    end
    local ev = self:_wait("r")
    if not ev or C.PQconsumeInput(self.conn) == 0 then return self:_lost("pipeline") end
  end
end

--- Run statements {{sql = …, params = {…}, n = …}, …} in one round trip
-- (libpq pipeline mode) as one implicit transaction: all or nothing.
-- Returns the last statement's rows | nil, err (err.statement: which one failed).
function Conn:pipeline(stmts)
  if not self.conn then return nil, new_err("lost", "connection is closed", self.db) end
  if self.busy then error("db: one command at a time per connection (use a pool)", 2) end
  if C.PQenterPipelineMode(self.conn) ~= 1 then return nil, new_err("rejected", "cannot enter pipeline mode", self.db) end
  self.busy, self.answered = true, false
  local keep = {}
  local res, err
  for _, st in ipairs(stmts) do
    local n, vals, k = param_array(unpack(st.params or {}, 1, st.n or #(st.params or {})))
    keep[#keep + 1] = k
    keep[#keep + 1] = vals
    if C.PQsendQueryParams(self.conn, st.sql, n, nil, vals, nil, nil, 0) == 0 then
      res, err = self:_lost("pipeline")
      break
    end
  end
  if not err then
    if C.PQpipelineSync(self.conn) == 0 or not self:_flush() then
      res, err = self:_lost("pipeline")
    else
      res, err = self:_pipeline_results()
    end
  end
  keep = nil
  if not self.broken then C.PQexitPipelineMode(self.conn) end
  self.busy = false
  return res, err
end

--- Prepare a named statement on this connection (parsed and planned once).
function Conn:prepare(name, sql)
  local res, err = self:_run("prepare", function(conn) return C.PQsendPrepare(conn, name, sql, 0, nil) end)
  if res then
    self.prepared = self.prepared or {}
    self.prepared[name] = sql
  end
  return res, err
end

--- Run a statement prepared on this connection: rows | nil, err.
function Conn:execute(name, ...)
  local n, vals, keep = param_array(...)
  local res, err = self:_run("query", function(conn) return C.PQsendQueryPrepared(conn, name, n, vals, nil, nil, 0) end)
  keep = nil
  return res, err
end

--- Run a script of several statements (no parameters: migrations, DDL)
-- with the simple query protocol; the last statement's rows | nil, err.
function Conn:exec(sql)
  return self:_run("exec", function(conn) return C.PQsendQuery(conn, sql) end)
end

--- COPY … FROM STDIN with `data`: a string, a list of strings, or a function
-- returning the next chunk (nil at the end). Rows are in COPY text format.
function Conn:copy(sql, data)
  if not self.conn then return nil, new_err("lost", "connection is closed", self.db) end
  local next_chunk
  if type(data) == "string" then
    local done = false
    next_chunk = function() if done then return nil end done = true return data end
  elseif type(data) == "table" then
    local i = 0
    next_chunk = function() i = i + 1 return data[i] end
  elseif type(data) == "function" then
    next_chunk = data
  else
    error("db copy: data must be a string, a list of strings or a function", 2)
  end
  local last_yield = task.hrtime()
  local function feed()
    while true do
      local chunk = next_chunk()
      if chunk == nil then break end
      while true do
        local r = C.PQputCopyData(self.conn, chunk, #chunk)
        if r == 1 then break end
        if r < 0 then return self:_lost("copy") end
        if not self:_wait("w") then return self:_lost("copy") end
      end
      -- push it out now: the producer and the server work side by side, and
      -- the task yields whenever the socket is full instead of hogging the loop
      if not self:_flush() then return self:_lost("copy") end
      -- a producer faster than the socket never waits: let the loop turn every 20 ms anyway
      local t = task.hrtime()
      if t - last_yield > 20e6 then
        task.yield()
        last_yield = task.hrtime()
      end
    end
    while true do
      local r = C.PQputCopyEnd(self.conn, nil)
      if r == 1 then break end
      if r < 0 then return self:_lost("copy") end
      if not self:_wait("w") then return self:_lost("copy") end
    end
    if not self:_flush() then return self:_lost("copy") end
    return true
  end
  return self:_run("copy", function(conn) return C.PQsendQuery(conn, sql) end, feed)
end

--- LISTEN on a channel (the name is quoted as an identifier).
function Conn:listen(channel)
  return self:query('LISTEN "' .. tostring(channel):gsub('"', '""') .. '"')
end

--- The next notification, waiting for it (soft: ends at shutdown):
-- {channel, payload, pid} | nil, err.
function Conn:notification()
  while true do
    local n = C.PQnotifies(self.conn)
    if n ~= nil then
      local out = { channel = ffi.string(n.relname), payload = ffi.string(n.extra), pid = n.be_pid }
      C.PQfreemem(n)
      return out
    end
    local ev = self:_wait("r", true)
    if not ev or C.PQconsumeInput(self.conn) == 0 then return self:_lost("listen") end
  end
end

--- "idle", "in_transaction", "in_error", "active" or "unknown" (connection bad).
function Conn:tx_status() return self.conn and TX[C.PQtransactionStatus(self.conn)] or "unknown" end

--- For a connection taken from a pool's idle list: read whatever the server
-- sent meanwhile (a restart sends a FATAL and closes) and say if it lives.
local pfd = ffi.new("struct pollfd[1]")
local POLLIN = 1

function Conn:alive()
  if not self:ok() then return false end
  -- with no command in flight, anything readable is a notice, a NOTIFY, or
  -- the server's FATAL followed by end of file: read until quiet
  pfd[0].fd = C.PQsocket(self.conn)
  for _ = 1, 4 do
    pfd[0].events, pfd[0].revents = POLLIN, 0
    if C.poll(pfd, 1, 0) <= 0 then break end
    if C.PQconsumeInput(self.conn) == 0 then
      self.broken = true
      return false
    end
  end
  return C.PQstatus(self.conn) == CONNECTION_OK
end

function Conn:ok() return self.conn ~= nil and not self.broken and C.PQstatus(self.conn) == CONNECTION_OK end

function Conn:close()
  if self.watch then self.watch:close() self.watch = nil end
  if self.conn then
    local pc = ffi.gc(self.conn, nil)
    self.conn = nil
    C.PQfinish(pc)
  end
end

return M
