--- vibex.runtime — the process: install location, shutdown, exit code,
--- small file-system helpers and library versions.
local core = require "vibex.core.runtime"

local M = {}
for k, v in pairs(core) do M[k] = v end

--- Read a whole file; nil, err when it cannot be read.
function M.read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

--- Write a whole file atomically (write a temporary file, then rename).
function M.write_file(path, data)
  local tmp = path .. ".tmp." .. core.pid()
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(data)
  f:close()
  if not ok then os.remove(tmp); return nil, werr end
  local rok, rerr = os.rename(tmp, path)
  if not rok then os.remove(tmp); return nil, rerr end
  return true
end

function M.exists(path) return core.stat(path) ~= nil end

function M.dirname(path) return (path:match("^(.*)/[^/]*$")) or "." end
function M.basename(path) return (path:match("([^/]*)$")) end

return M
