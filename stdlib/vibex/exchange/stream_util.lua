--- vibex.exchange.stream_util — what the market and user streams share:
-- backoff, handler calls that never kill a stream, stream names, metrics.
local log = require "vibex.log"
local metrics = require "vibex.metrics"
local task = require "vibex.task"

local M = {}

M.messages_total = metrics.counter("vibex_stream_messages_total", "WebSocket stream messages by kind",
  { "venue", "kind" })
M.reconnects_total = metrics.counter("vibex_stream_reconnects_total", "WebSocket stream reconnects",
  { "venue", "stream" })
M.tlog = log.channel("market_data")
M.ulog = log.channel("trading")

--- Full-jitter exponential backoff: a random wait in [base·2^n / 2, base·2^n], capped.
function M.backoff_ms(attempt, min_ms, max_ms)
  local cap = math.min(max_ms, min_ms * 2 ^ math.min(attempt, 20))
  return cap / 2 + math.random() * cap / 2
end

--- Run a handler; an error in user code is logged, never kills the stream.
function M.call(channel, what, fn, ...)
  if not fn then return end
  local ok, err = xpcall(fn, debug.traceback, ...)
  if not ok then
    if task.is_cancelled(err) then error(err, 0) end
    channel:error("stream handler failed", { handler = what, error = tostring(err) })
  end
end

--- A message shortened for a log line.
function M.excerpt(s) return (#s > 120 and s:sub(1, 120) .. "…" or s):gsub("%c", " ") end

--- Stream names are lower-case symbol @ kind: "btcusdt@kline_1m".
function M.normalize(name)
  if type(name) ~= "string" then error("stream names are strings like \"btcusdt@kline_1m\"", 3) end
  local sym, rest = name:match("^([^@]+)@(.+)$")
  if not sym then error(("bad stream name %q (want <symbol>@<stream>, e.g. btcusdt@kline_1m)"):format(name), 3) end
  return sym:lower() .. "@" .. rest
end

return M
