--- vibex.db.cluster — a private PostgreSQL server in a directory: created
-- with initdb on first use, listening only on a Unix socket inside that
-- directory (no TCP port), started and stopped with pg_ctl.
--
--   local c, err = cluster.start{dir = "data/pg"}   -- waits until it accepts connections
--   c.conninfo       -- "host=/abs/data/pg port=5432 dbname=vibex user=vibex"
--   c:stop()
--
-- PostgreSQL refuses to run as root; when we are root (CI), initdb and the
-- server run as the `postgres` account the Debian package creates, and the
-- directory is handed to it. The server binaries are found in
-- /usr/lib/postgresql/<newest>/bin (they are not on PATH on Debian).
local process = require "vibex.process"
local errors = require "vibex.errors"
local runtime = require "vibex.runtime"

local M = {}

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- The directory holding initdb, pg_ctl and postgres, or nil, err.
function M.bindir()
  local out = process.run("sh", { "-c", "ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1" })
  local dir = out and out:match("^%s*(.-)%s*$")
  if dir and dir ~= "" then return dir end
  local cfg = process.run("pg_config", { "--bindir" }, { stderr = "ignore" })
  dir = cfg and cfg:match("^%s*(.-)%s*$")
  if dir and dir ~= "" then return dir end
  return nil, errors.new("config", "PostgreSQL server binaries not found (run `make deps`, which installs the postgresql package)", { source = "database" })
end

local function is_root() return runtime.uid() == 0 end

--- The shell line that runs a server tool, as `postgres` when we are root.
local function tool_line(bin, name, args, as_postgres)
  local cmd = { sh_quote(bin .. "/" .. name) }
  for _, a in ipairs(args) do cmd[#cmd + 1] = sh_quote(a) end
  local line = table.concat(cmd, " ") .. " 2>&1"
  if as_postgres then line = "runuser -u postgres -- sh -c " .. sh_quote(line) end
  return line
end

--- Run a server tool and wait: stdout+stderr, ok.
local function tool(bin, name, args, as_postgres)
  local out, code = process.run("sh", { "-c", tool_line(bin, name, args, as_postgres) })
  return out or "", code == 0
end

-- As root the server runs as `postgres`, which must be able to pass
-- through every directory above the cluster. vibex creates its directories
-- private (0700); such an ancestor gets the search bit for others (o+x:
-- enter, not list), and nothing more.
function M.let_postgres_through(dir)
  local p = dir:match("^(.*)/[^/]+$")
  while p and p ~= "" do
    local st = runtime.stat(p)
    if st and st.mode and bit.band(st.mode, 1) == 0 then process.run("chmod", { "o+x", p }) end
    p = p:match("^(.*)/[^/]+$")
  end
end

--- Start (creating if needed) the cluster in o.dir. o.user (vibex),
-- o.dbname (vibex), o.fast (no fsync: tests only), o.timeout_s (60).
function M.start(o)
  local bin, err = M.bindir()
  if not bin then return nil, err end
  local dir = assert(o and o.dir, "cluster.start{dir = …}: a directory is required")
  runtime.mkdir_p(dir)
  dir = runtime.realpath(dir) or dir
  local root = is_root()
  local user, dbname = o.user or "vibex", o.dbname or "vibex"
  if #dir > 90 then
    return nil, errors.new("config", ("cluster directory %s is too long for a Unix socket path (keep it under 90 characters)"):format(dir), { source = "database" })
  end
  if root then
    process.run("chown", { "-R", "postgres:postgres", dir })
    M.let_postgres_through(dir)
  end
  local fresh = not io.open(dir .. "/PG_VERSION")
  if fresh then
    local args = { "-D", dir, "-U", user, "--auth-local=trust", "--auth-host=reject", "-E", "UTF8", "--locale=C" }
    if o.fast then args[#args + 1] = "--no-sync" end
    local out, ok = tool(bin, "initdb", args, root)
    if not ok then return nil, errors.new("storage", "initdb failed in " .. dir .. ": " .. out, { source = "database" }) end
  end
  local opts = ("-c listen_addresses='' -c unix_socket_directories='%s' -c max_connections=50"):format(dir)
  -- fast (tests): no fsync, but commits still wait for the WAL write, so a
  -- killed server (pg_ctl stop -m immediate) loses nothing acknowledged
  if o.fast then opts = opts .. " -c fsync=off -c full_page_writes=off" end
  local out, ok = tool(bin, "pg_ctl", { "-D", dir, "-l", dir .. "/server.log", "-w", "-t", tostring(o.timeout_s or 60),
                                        "-o", opts, "start" }, root)
  if not ok and not out:find("another server might be running", 1, true) then
    return nil, errors.new("unavailable", "could not start PostgreSQL in " .. dir .. ": " .. out, { source = "database" })
  end
  local c = setmetatable({ dir = dir, bin = bin, root = root, user = user, dbname = dbname,
                           conninfo = ("host=%s port=5432 dbname=postgres user=%s"):format(dir, user) }, {
    __index = M, __tostring = function(self) return "<postgres cluster " .. self.dir .. ">" end })
  if fresh and dbname ~= "postgres" then
    local cout, cok = tool(bin, "createdb", { "-h", dir, "-U", user, dbname }, root)
    if not cok then return nil, errors.new("rejected", "createdb " .. dbname .. " failed: " .. cout, { source = "database" }) end
  end
  c.conninfo = ("host=%s port=5432 dbname=%s user=%s"):format(dir, dbname, user)
  return c
end

--- Stop the server and wait until it is down: mode "fast" (default; ends
-- sessions cleanly) or "immediate" (like a crash: the tests use it).
function M:stop(mode)
  local out, ok = tool(self.bin, "pg_ctl", { "-D", self.dir, "-m", mode or "fast", "-w", "stop" }, self.root)
  if not ok then return nil, errors.new("unavailable", out, { source = "database" }) end
  return true
end

--- Start a stopped cluster again (same directory and options).
function M:restart(o)
  local c, err = M.start { dir = self.dir, user = self.user, dbname = self.dbname, fast = o and o.fast }
  if not c then return nil, err end
  return true
end

return M
