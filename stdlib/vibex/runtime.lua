--- vibex.runtime — the process: install location, shutdown, exit code,
--- small file-system helpers and library versions.
local core = require "vibex.core.runtime"

local M = {}
for k, v in pairs(core) do M[k] = v end

--- Read a whole file; nil, err when it cannot be read.
---@param path string
---@return string|nil data
---@return string|nil err
function M.read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

--- Replace path with data atomically and durably (temporary file, fsync,
-- close, rename, directory fsync, every result checked): a reader or a
-- crash sees the old version or the new one. true | nil, "what: why".
---@param path string
---@param data string
---@return boolean|nil ok
---@return string|nil err
M.write_file = core.write_file

--- The process's resident memory (RSS) now and its peak, in bytes.
---@return number|nil rss
---@return number|string peak, or the error
function M.memory() return core.memory() end

--- True when path exists (any kind of file).
---@param path string
---@return boolean
function M.exists(path) return core.stat(path) ~= nil end

--- The directory part of a path ("." when it has none).
---@param path string
---@return string
function M.dirname(path) return (path:match("^(.*)/[^/]*$")) or "." end
--- The last part of a path.
---@param path string
---@return string
function M.basename(path) return (path:match("([^/]*)$")) end

return M
