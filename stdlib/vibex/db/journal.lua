--- vibex.db.journal — writes that survive a database outage.
--
--   local w = journal.writer{pool = pool, path = "data/journal/db.jsonl", on_outage = "continue"}
--   local res, err = w:write("insert into fills (…) values ($1, …)", …)
--   w:write_batch{{sql = …, params = {…}, n = …}, …}   -- one transaction, one journal entry
--   -- res: the rows, or {journaled = true} while the database is away
--   w:pending(), w:outage(), w:flush() (replay now), w:close()
--
-- Every write carries an id and runs in a transaction that also records
-- the id in journal_applied. When the database cannot be reached (connect
-- failure or a connection lost mid-write), the write is appended to the
-- journal file and fsynced before write() returns; from then on every write
-- goes to the journal, in order, until a background task has replayed it.
-- A replayed entry whose id is already recorded is skipped, so replays after
-- a crash, or of a write whose answer was lost but which did commit, apply
-- nothing twice. A write the database refuses (a constraint, bad SQL) is
-- returned as an error and never journaled; one refused during replay is
-- moved to <path>.rejected with the reason, and replay goes on.
--
-- on_outage ("continue" | "no_new_positions") is the config's choice of
-- trading behaviour while writes are being journaled; w:outage() returns it
-- (nil when the database is fine) and the change is logged both ways.
--
-- When the journal itself cannot be written (a full or read-only disk)
-- while the database is away, a write is not lost: it is held in memory,
-- in order, an ALERT says so with the disk's own error, and w:outage()
-- answers "no_new_positions" whatever the config says (what cannot be
-- recorded durably must not grow); the background task keeps trying the
-- journal and the database, and the ALERT is lifted once the held writes
-- are on disk or in the database. Only a kill while writes are held loses
-- them; the ALERT is there so a person can act before that.
local crypto = require "vibex.crypto"
local json = require "vibex.json"
local log = require "vibex.log"
local runtime = require "vibex.runtime"
local task = require "vibex.task"

local M = {}

local dlog = log.channel("app")

local W = {}
W.__index = W

local function count_lines(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local n = 0
  for _ in f:lines() do n = n + 1 end
  f:close()
  return n
end

local function read_lines(path)
  local f = io.open(path, "rb")
  if not f then return {} end
  local out = {}
  for line in f:lines() do out[#out + 1] = line end
  f:close()
  return out
end

function M.writer(o)
  assert(o and o.pool and o.path, "journal.writer{pool = …, path = …}")
  runtime.mkdir_p(runtime.dirname(o.path))
  local w = setmetatable({
    pool = o.pool, path = o.path, on_outage = o.on_outage or "continue", retry_ms = o.retry_ms or 1000,
    boot = (crypto.random_bytes(8):gsub(".", function(ch) return ("%02x"):format(ch:byte()) end)),
    seq = 0, n_pending = count_lines(o.path), held = {},
    stats = { direct = 0, journaled = 0, replayed = 0, skipped = 0, rejected = 0, held = 0 },
  }, W)
  if w.n_pending > 0 then
    dlog:warn("database journal has writes from before; replaying", { journal = w.path, pending = w.n_pending })
    w:_enter_outage()
  end
  return w
end

--- Apply one entry exactly once: true (applied or already there) | nil, err.
-- An entry is one statement (sql, params, n) or several (stmts), applied
-- in one transaction.
function W:_apply(e)
  if e.stmts then return self:_apply_batch(e) end
  return self.pool:tx(function(c)
    local mark, err = c:query("INSERT INTO journal_applied (journal_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1 AS fresh", e.id)
    if not mark then return nil, err end
    if #mark == 0 then return { skipped = true } end
    if not e.stmts then return c:query(e.sql, unpack(e.params, 1, e.n)) end
    local res
    for _, st in ipairs(e.stmts) do
      local qerr
      res, qerr = c:query(st.sql, unpack(st.params, 1, st.n))
      if not res then return nil, qerr end
    end
    return res
  end)
end

-- A batch goes in one round trip (a pipeline: one implicit transaction).
-- Its id is inserted first without ON CONFLICT, so an entry applied before
-- fails on the unique key and nothing of it is applied twice.
function W:_apply_batch(e)
  local list = { { sql = "INSERT INTO journal_applied (journal_id) VALUES ($1)", params = { e.id }, n = 1 } }
  for _, st in ipairs(e.stmts) do list[#list + 1] = st end
  local res, err = self.pool:pipeline(list)
  if not res and err and err.statement == 1 and err.sqlstate == "23505" then return { skipped = true } end
  return res, err
end

local function decode_params(params, n)
  local out = {}
  for i = 1, n or #(params or {}) do
    local v = params[i]
    if v == json.null then v = nil end
    out[i] = v
  end
  return out
end

local function decode_entry(line)
  local e = json.decode(line)
  if type(e) ~= "table" or type(e.id) ~= "string" then return nil end
  if type(e.stmts) == "table" then
    for _, st in ipairs(e.stmts) do
      if type(st) ~= "table" or type(st.sql) ~= "string" then return nil end
      st.params = decode_params(st.params, st.n)
    end
    return e
  end
  if type(e.sql) ~= "string" then return nil end
  e.params = decode_params(e.params, e.n)
  return e
end

local function unreachable(err) return err and (err.kind == "transport" or err.kind == "lost") end

function W:_enter_outage()
  if self.degraded then return end
  self.degraded = true
  dlog:error("database unreachable: writes go to the local journal until it is back",
    { journal = self.path, trading = self.on_outage == "continue" and "continues" or "opens no new positions" })
  if not self.replayer then
    self.replayer = task.spawn("db-journal-replay", function()
      while (self.degraded or #self.held > 0) and not self.closed do
        task.sleep(self.retry_ms)
        self:_store_held()
        if #self.held == 0 then self:flush() end
      end
      self.replayer = nil
    end)
  end
end

function W:write(sql, ...)
  return self:_write { sql = sql, params = { ... }, n = select("#", ...) }
end

--- Several writes as one: {{sql = …, params = {…}, n = #params}, …}, applied
-- in one transaction (and journaled as one entry during an outage).
function W:write_batch(stmts)
  if #stmts == 1 then return self:_write { sql = stmts[1].sql, params = stmts[1].params, n = stmts[1].n } end
  return self:_write { stmts = stmts }
end

local function nulls_to_json(params, n)
  for i = 1, n do -- NULLs must survive the JSON line
    if params[i] == nil then params[i] = json.null end
  end
end

function W:_write(e)
  self.seq = self.seq + 1
  e.id, e.at = self.boot .. "-" .. self.seq, runtime.wall_ms()
  if not self.degraded then
    local res, err = self:_apply(e)
    if res then
      self.stats.direct = self.stats.direct + 1
      return res
    end
    if not unreachable(err) then return nil, err end
  end
  if e.stmts then
    for _, st in ipairs(e.stmts) do nulls_to_json(st.params, st.n) end
  else
    nulls_to_json(e.params, e.n)
  end
  -- behind writes already held, so the journal keeps their order
  if #self.held > 0 or not self:_append(e) then
    self.held[#self.held + 1] = e
    self.stats.held = self.stats.held + 1
    self:_enter_outage()
    return { journaled = true, held = true }
  end
  self.n_pending = self.n_pending + 1
  self.stats.journaled = self.stats.journaled + 1
  self:_enter_outage()
  return { journaled = true }
end

-- Append one entry to the journal file (synced): true, or false after
-- raising the ALERT with the disk's own error.
function W:_append(e)
  local ok, jerr = runtime.append_sync(self.path, log.mask_secrets(json.encode(e)) .. "\n")
  if ok then return true end
  if self.journal_error ~= jerr then
    self.journal_error = jerr
    dlog:error("ALERT: the database is unreachable and its journal cannot be written: writes are held in memory "
      .. "and no new positions are opened until the journal or the database takes them", { alert = true,
        journal = self.path, error = tostring(jerr), held = #self.held + 1 })
  end
  return false
end

-- Move held writes to the journal (in order) once the disk takes them, or
-- straight to the database if it came back first.
function W:_store_held()
  while #self.held > 0 do
    local e = self.held[1]
    local stored = false
    if not self.degraded or self.n_pending == 0 then
      local res, err = self:_apply(decode_entry(json.encode(e))) -- JSON nulls back to nils
      if res then
        stored = true
      elseif not unreachable(err) then
        dlog:error("held write refused by the database; kept aside", { journal = self.path, id = e.id, error = tostring(err) })
        runtime.append_sync(self.path .. ".rejected", log.mask_secrets(json.encode { entry = e, error = tostring(err) }) .. "\n")
        stored = true
      end
    end
    if not stored then
      if not self:_append(e) then return false end
      self.n_pending = self.n_pending + 1
      self.stats.journaled = self.stats.journaled + 1
    end
    table.remove(self.held, 1)
  end
  if self.journal_error then
    dlog:info("journal writable again: the held writes are stored; new positions may open again",
      { journal = self.path, was = tostring(self.journal_error) })
    self.journal_error = nil
  end
  return true
end


--- Replay the journal now: true when it is empty afterwards.
function W:flush()
  if self.flushing then return false end
  self.flushing = true
  local done = 0
  local ok = true
  while true do
    local lines = read_lines(self.path)
    if #lines <= done then
      -- nothing new was appended while we replayed (no yield since the read): retire the file
      os.remove(self.path)
      self.n_pending = 0
      break
    end
    for i = done + 1, #lines do
      local e = decode_entry(lines[i])
      if not e then
        runtime.append_sync(self.path .. ".rejected", lines[i] .. "\n")
        self.stats.rejected = self.stats.rejected + 1
      else
        local res, err = self:_apply(e)
        if not res then
          if unreachable(err) then ok = false break end
          dlog:error("journaled write refused by the database; kept aside", { journal = self.path, id = e.id,
                                                                              error = tostring(err) })
          runtime.append_sync(self.path .. ".rejected", json.encode { entry = lines[i], error = tostring(err) } .. "\n")
          self.stats.rejected = self.stats.rejected + 1
        elseif res.skipped then
          self.stats.skipped = self.stats.skipped + 1
        else
          self.stats.replayed = self.stats.replayed + 1
        end
      end
      done = i
      self.n_pending = #lines - done
    end
    if not ok then break end
  end
  -- writes held in memory meanwhile (the disk broke again during the
  -- replay) go before anything new: the outage lasts until they are stored
  if ok and self.degraded and #self.held == 0 then
    self.degraded = false
    dlog:info("database back: journal replayed; writes go straight to the database again",
      { journal = self.path, replayed = self.stats.replayed, skipped = self.stats.skipped })
  elseif not ok and done > 0 then
    -- keep only what is left, so a restart does not re-read the applied part (ids would skip it anyway)
    local rest = read_lines(self.path)
    local keep = {}
    for i = done + 1, #rest do keep[#keep + 1] = rest[i] end
    runtime.write_file(self.path, #keep > 0 and table.concat(keep, "\n") .. "\n" or "")
  end
  self.flushing = false
  return ok
end

function W:pending() return self.n_pending end
function W:outage()
  -- writes held in memory: nothing new may open until they are stored
  if #self.held > 0 or self.journal_error then return "no_new_positions" end
  return self.degraded and self.on_outage or nil
end

--- Writes held in memory because the journal could not be written.
function W:held_count() return #self.held end

function W:close()
  self.closed = true
  if self.replayer then self.replayer:cancel() end
end

return M
