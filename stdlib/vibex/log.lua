--- vibex.log — structured logs.
--
--   log.info("order placed", {symbol = "BTCUSDT", qty = "0.010"})
--   local tlog = log.channel("trading"); tlog:warn("rejected", {code = -2019})
--
-- Lines are JSON objects in logs/<channel>.log (channels: app, trading,
-- market_data, llm, errors; error lines also go to errors.log), rotated by
-- size; on a terminal they are also printed as readable colored lines.
-- Values of fields named like secrets (api_key, secret, signature, token,
-- password, …) and any value registered with log.add_secret are replaced
-- by *** before anything is written.
local core = require "vibex.core.log"

local write = core.write
local M = {}

-- Listeners of every line (the API's log stream): called after the line is
-- written, never from inside another listener, and never allowed to fail it.
local taps, in_tap = {}, false

local function emit(level, channel, msg, fields)
  if type(msg) ~= "string" then msg = tostring(msg) end
  if fields ~= nil and type(fields) ~= "table" then fields = { value = tostring(fields) } end
  write(level, channel, msg, fields)
  if next(taps) and not in_tap and core.enabled(level) then
    in_tap = true
    for fn in pairs(taps) do pcall(fn, level, channel, msg, fields) end
    in_tap = false
  end
end

--- Call fn(level, channel, msg, fields) for every line logged from Lua at an
--- enabled level (fields unredacted: mask them before they leave). Returns
--- a function that removes it.
function M.tap(fn)
  taps[fn] = true
  return function() taps[fn] = nil end
end

for _, level in ipairs { "debug", "info", "warn", "error" } do
  M[level] = function(msg, fields) emit(level, "app", msg, fields) end
end

local Channel = {}
Channel.__index = Channel
for _, level in ipairs { "debug", "info", "warn", "error" } do
  Channel[level] = function(self, msg, fields) emit(level, self.name, msg, fields) end
end
function Channel:enabled(level) return core.enabled(level) end

local channels = {}
local known = { app = true, trading = true, market_data = true, llm = true, errors = true }
--- A logger bound to a channel: app, trading, market_data, llm or errors.
---@param name string app, trading, market_data, llm or errors
---@return table logger with debug/info/warn/error(msg, fields)
function M.channel(name)
  local c = channels[name]
  if not c then
    if not known[name] then
      error(("log.channel: unknown channel '%s' (use app, trading, market_data, llm, errors)"):format(tostring(name)), 2)
    end
    c = setmetatable({ name = name }, Channel)
    channels[name] = c
  end
  return c
end

M.write = write
M.enabled = core.enabled
--- log.configure{dir=, level=, console_level=, console="auto|text|json|none", color=, max_bytes=, keep=}
---@param opts table dir, level, console_level, console, color, max_bytes, keep
M.configure = core.configure
M.config = core.config
M.add_secret = core.add_secret
M.redact = core.redact
--- Registered secret values masked wherever they appear (for data: the
-- database, journals, state files), keeping the text's structure.
---@param ... string texts
---@return string ... the texts with registered secrets masked
M.mask_secrets = core.mask_secrets
M.is_secret_key = core.is_secret_key
M.flush = core.flush
M.counts = core.counts

return M
