--- vibex.ws — WebSocket client connections on the loop (libwebsockets).
--
--   local c, err = ws.connect{url = "wss://fstream.asterdex.com/stream?streams=btcusdt@kline_1m"}
--   while true do
--     local msg, why, kind, code = c:recv()   -- waits; nil when the connection ends
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
-- the connection or nil, message, kind ("connect", "invalid", "shutdown").
-- An open connection keeps the runtime alive until it is closed.
local core = require "vibex.core.ws"
local task = require "vibex.task"

local await = task.await
local methods = core.methods
local raw_connect, raw_recv = core.connect, methods.recv

local M = {}

--- Wait for the next message: msg | nil, reason, "closed", close_code.
function methods.recv(c) return await(raw_recv(c)) end

function M.connect(opts)
  if type(opts) ~= "table" then error("ws.connect{url = …}: expected an options table", 2) end
  return await(raw_connect(opts))
end

--- Connections opened and not yet closed, across the runtime.
M.open_count = core.open_count

return M
