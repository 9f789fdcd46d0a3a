--- vibex.ws — WebSocket client connections on the loop (libwebsockets).
--
--   local c, err = ws.connect{url = "wss://fstream.asterdex.com/stream?streams=btcusdt@kline_1m"}
--   while true do
--     local msg, err = c:recv()   -- waits; nil, err (kind "closed", err.code) when it ends
--     if not msg then break end
--   end
--   c:send('{"method":"LIST_SUBSCRIPTIONS","id":1}')
--   c:close()
--
-- Options: url, headers {Name = value}, ping_s (ping after this long quiet,
-- 30), hangup_s (close when nothing valid arrived for this long, ping_s+30),
-- max_message (16 MiB), max_queue (bytes queued before the socket stops
-- being read, 8 MiB), insecure (skip TLS checks; tests only).
-- connect waits in the calling task until the handshake is done and returns
-- the connection or nil, err (a vibex.errors value: kind "transport" when
-- the handshake failed, "invalid" for a bad URL, "shutdown").
-- An open connection keeps the runtime alive until it is closed.
local core = require "vibex.core.ws"
local task = require "vibex.task"
local errors = require "vibex.errors"

local await = task.await
local methods = core.methods
local raw_connect, raw_recv, raw_send = core.connect, methods.recv, methods.send

local M = {}

local KIND_OF = { connect = "transport", closed = "closed", invalid = "invalid", shutdown = "shutdown" }

local function failed(message, ckind, code)
  return nil, errors.new(KIND_OF[ckind] or "transport", message, { source = "ws", code = code })
end

--- Wait for the next message: msg | nil, err (kind "closed"; err.code is the close code).
---@return string|nil msg
---@return vibex.Error|nil err
function methods.recv(c)
  local msg, why, ckind, code = await(raw_recv(c))
  if msg then return msg end
  return failed(why, ckind, code)
end

--- Queue a message (binary when the third argument is true): true | nil, err.
---@return boolean|nil ok
---@return vibex.Error|nil err
function methods.send(c, data, binary)
  local ok, why = raw_send(c, data, binary)
  if ok then return ok end
  return nil, errors.new("closed", why, { source = "ws" })
end

--- Open a connection (waits for the handshake).
---@param opts table url, headers, ping_s, hangup_s, max_message, max_queue, insecure
---@return userdata|nil conn
---@return vibex.Error|nil err
function M.connect(opts)
  if type(opts) ~= "table" then error("ws.connect{url = …}: expected an options table", 2) end
  local c, why, ckind = await(raw_connect(opts))
  if c then return c end
  return failed(why, ckind)
end

--- Connections opened and not yet closed, across the runtime.
---@return integer n
M.open_count = core.open_count

return M
