--- vibex.db.migrate — ordered SQL migrations in migrations/NNNN_name.sql.
--
--   migrate.status(pool, dir)        -> list of {version, name, file, state, applied_at}
--                                       state: "applied" | "pending" | "changed" | "missing"
--   migrate.up(pool, dir, {dry_run}) -> list of applied (or would-be) {version, name} | nil, err
--   migrate.check(pool, dir)         -> true | nil, message naming the command that fixes it
--
-- Each file runs in its own transaction together with its row in
-- schema_migrations (version, name, sha256 checksum, applied_at), under an
-- advisory lock so two runtimes never migrate at once. A file changed after
-- it was applied is refused: migrations are history; write a new one.
local crypto = require "vibex.crypto"
local errors = require "vibex.errors"
local runtime = require "vibex.runtime"

local M = {}

local LOCK_KEY = 7402041 -- pg_advisory_xact_lock key for "vibex migrations"

local TABLE = [[
CREATE TABLE IF NOT EXISTS schema_migrations (
  version     integer PRIMARY KEY,
  name        text NOT NULL,
  checksum    text NOT NULL,
  applied_at  timestamptz NOT NULL DEFAULT now(),
  duration_ms numeric NOT NULL DEFAULT 0
)]]

local SRC_NAME = "database migrations"
local function src() return { source = SRC_NAME } end

--- The migrations directory of this install.
function M.default_dir() return runtime.home() .. "/migrations" end

--- Files in dir, ordered: {version, name, file, sql, checksum} | nil, err.
function M.files(dir)
  dir = dir or M.default_dir()
  local names, err = runtime.listdir(dir)
  if not names then return nil, errors.new("storage", ("cannot read migrations directory %s: %s"):format(dir, tostring(err)), src()) end
  local out, seen = {}, {}
  for _, n in ipairs(names) do
    local v, name = n:match("^(%d%d%d%d)_([%w_%-]+)%.sql$")
    if v then
      local version = tonumber(v)
      if seen[version] then
        return nil, errors.new("config", ("two migrations share version %s: %s and %s (renumber one)"):format(v, seen[version], n), src())
      end
      seen[version] = n
      local sql = assert(runtime.read_file(dir .. "/" .. n))
      out[#out + 1] = { version = version, name = name, file = n, sql = sql, checksum = crypto.sha256(sql) }
    elseif n:match("%.sql$") then
      return nil, errors.new("config", ("%s/%s: migration files are named NNNN_name.sql (e.g. 0002_add_index.sql)"):format(dir, n), src())
    end
  end
  table.sort(out, function(a, b) return a.version < b.version end)
  return out
end

local function applied(pool)
  local ok, err = pool:query(TABLE)
  if not ok then return nil, err end
  local rows, qerr = pool:query("SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")
  if not rows then return nil, qerr end
  local by = {}
  for _, r in ipairs(rows) do by[r.version] = r end
  return by
end

function M.status(pool, dir)
  local files, err = M.files(dir)
  if not files then return nil, err end
  local done, aerr = applied(pool)
  if not done then return nil, aerr end
  local out, known = {}, {}
  for _, f in ipairs(files) do
    known[f.version] = true
    local a = done[f.version]
    local state = not a and "pending" or (a.checksum ~= f.checksum and "changed" or "applied")
    out[#out + 1] = { version = f.version, name = f.name, file = f.file, state = state,
                      applied_at = a and a.applied_at, checksum = f.checksum, applied_checksum = a and a.checksum }
  end
  for v, a in pairs(done) do
    if not known[v] then
      out[#out + 1] = { version = v, name = a.name, file = ("%04d_%s.sql"):format(v, a.name), state = "missing",
                        applied_at = a.applied_at }
    end
  end
  table.sort(out, function(a, b) return a.version < b.version end)
  return out
end

local function changed_message(s)
  return ("migration %s was changed after it was applied (checksum %s… in the database, %s… on disk): "
    .. "restore the file as it was and put the change in a new migration"):format(s.file,
    s.applied_checksum:sub(1, 12), s.checksum:sub(1, 12))
end

--- Apply every pending migration in order; o.dry_run lists them only.
function M.up(pool, dir, o)
  o = o or {}
  local st, err = M.status(pool, dir)
  if not st then return nil, err end
  for _, s in ipairs(st) do
    if s.state == "changed" then return nil, errors.new("config", changed_message(s), { source = "database" }) end
  end
  local files = assert(M.files(dir))
  local by = {}
  for _, f in ipairs(files) do by[f.version] = f end
  local done = {}
  for _, s in ipairs(st) do
    if s.state == "pending" then
      local f = by[s.version]
      if not o.dry_run then
        local t0 = runtime.wall_ms()
        local ok, terr = pool:tx(function(c)
          local _, lerr = c:query("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
          if lerr then return nil, lerr end
          local again = c:query("SELECT 1 AS x FROM schema_migrations WHERE version = $1", f.version)
          if again and #again > 0 then return true end -- another runtime applied it meanwhile
          local _, xerr = c:exec(f.sql)
          if xerr then return nil, xerr end
          return c:query("INSERT INTO schema_migrations (version, name, checksum, duration_ms) VALUES ($1, $2, $3, $4)",
            f.version, f.name, f.checksum, runtime.wall_ms() - t0)
        end)
        if not ok then
          return nil, errors.wrap(terr, nil, ("migration %s failed, nothing of it was applied: %s"):format(f.file, errors.message(terr)), { source = "database" })
        end
      end
      done[#done + 1] = { version = f.version, name = f.name, file = f.file }
    end
  end
  return done
end

--- true when the database has every migration; otherwise what to run.
function M.check(pool, dir, command)
  local st, err = M.status(pool, dir)
  if not st then return nil, err end
  local pending = {}
  for _, s in ipairs(st) do
    if s.state == "changed" then return nil, errors.new("config", changed_message(s), { source = "database" }) end
    if s.state == "pending" then pending[#pending + 1] = s.file end
  end
  if #pending > 0 then
    return nil, errors.new("config", ("the database is behind: %d migration%s not applied (%s); run `%s` first"):format(
      #pending, #pending == 1 and "" or "s", table.concat(pending, ", "), command or "vibex migrate up"), { source = "database" })
  end
  return true
end

return M
