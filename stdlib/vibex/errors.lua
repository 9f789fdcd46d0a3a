--- vibex.errors — the one error type of vibex.
--
-- The rule: a programming mistake (a wrong argument type, a missing option,
-- a call on a closed object) raises with error(); a failure of the outside
-- world (a refused connection, a venue rejecting an order, a model answering
-- nonsense, a lost database) returns `nil, err` where err is a value made
-- here. Every module that talks to the outside world — vibex.db, vibex.http,
-- vibex.ws, vibex.exchange, vibex.llm — follows it.
--
--   local r, err = venue:place(o)
--   if not r then
--     if err.retryable then … later … end
--     log.warn("order failed", { err = tostring(err), kind = err.kind })
--   end
--
-- An error has:
--   kind       one of KINDS below (what to do about it)
--   message    one readable line (secrets masked by whoever made it)
--   retryable  true when the same request may succeed later unchanged
--   source     who failed: "venue aster", "database vibex@/run", "llm openai", "http", "ws"
--   cause      the lower-level error this one wraps, if any
--   …          context fields of the source: code, name, status, request,
--              filter, symbol, sqlstate, detail, hint, retry_after_ms, …
-- tostring(err) gives one line; `..` concatenates it like a string.

---@class vibex.Error
---@field kind string           one of errors.KINDS
---@field message string        one readable line
---@field retryable boolean     the same request may succeed later
---@field source string|nil     who failed ("venue aster", "database …", "llm openai", "http", "ws")
---@field cause vibex.Error|nil the error this one wraps

local M = {}

--- kind -> { retryable by default, what it means }
M.KINDS = {
  invalid      = { false, "the request is malformed (refused before it was sent): fix the caller" },
  filter       = { false, "refused locally: an order breaks a symbol filter (tick, step, notional)" },
  rejected     = { false, "the other side refused the request; sending it unchanged fails again" },
  not_found    = { false, "what was asked for does not exist (order, symbol, row)" },
  auth         = { false, "credentials, signature or permissions: fix the configuration" },
  banned       = { false, "the venue bans this address for a while (until_ms)" },
  rate_limited = { true,  "too many requests: slow down (retry_after_ms when known)" },
  clock        = { true,  "timestamp or nonce outside the accepted window: resync the clock" },
  unavailable  = { true,  "the service is down, overloaded or restarting (5xx, 529, disconnect)" },
  timeout      = { true,  "no answer in time" },
  transport    = { true,  "the connection failed (refused, DNS, TLS, reset)" },
  lost         = { true,  "the connection broke during the call (a transaction in flight was rolled back)" },
  circuit_open = { true,  "a circuit breaker is open: the service failed too often lately" },
  unknown      = { false, "the outcome is unknown (an order may exist): look it up before acting" },
  protocol     = { false, "the answer was malformed (not JSON, missing fields, empty)" },
  closed       = { false, "the connection was closed" },
  shutdown     = { false, "not sent: the process is stopping" },
  storage      = { false, "a local file could not be written (disk full, read-only, permissions)" },
  config       = { false, "the configuration is wrong" },
  script       = { false, "a strategy script failed" },
}

local Error = {}
Error.__index = Error
M.Error = Error

local function describe(e)
  local parts = {}
  if e.source then parts[#parts + 1] = e.source end
  if e.code then parts[#parts + 1] = ("%s (%s)"):format(e.name or "ERROR", tostring(e.code))
  elseif e.status then parts[#parts + 1] = ("HTTP %s"):format(tostring(e.status)) end
  parts[#parts + 1] = (e.filter and (e.filter .. " ") or "") .. e.kind .. ":"
  parts[#parts + 1] = e.message or "?"
  local s = table.concat(parts, " ")
  if e.sqlstate then s = s .. (" (SQLSTATE %s)"):format(e.sqlstate) end
  if e.detail then s = s .. "; " .. e.detail end
  if e.hint then s = s .. "; hint: " .. e.hint end
  if e.request then s = s .. " [" .. e.request .. "]" end
  return s
end
Error.__tostring = describe
Error.__concat = function(a, b) return tostring(a) .. tostring(b) end

--- A new error. fields (optional) holds the context (source, cause, code, …);
--- a `retryable` there overrides the kind's default.
---@param kind string one of errors.KINDS
---@param message string one readable line
---@param fields table|nil context fields
---@return vibex.Error
function M.new(kind, message, fields)
  local def = M.KINDS[kind]
  if not def then error(("vibex.errors.new: unknown kind %q (see errors.KINDS)"):format(tostring(kind)), 2) end
  local e = fields or {}
  e.kind, e.message = kind, tostring(message or kind)
  if e.retryable == nil then e.retryable = def[1] end
  return setmetatable(e, Error)
end

--- Change an error's kind (and with it the default of retryable).
---@param e vibex.Error
---@param kind string
---@return vibex.Error
function M.rekind(e, kind)
  local def = M.KINDS[kind]
  if not def then error(("vibex.errors.rekind: unknown kind %q"):format(tostring(kind)), 2) end
  e.kind, e.retryable = kind, def[1]
  return e
end

--- A new error that wraps another one (its cause).
---@param cause any the lower-level error (an error value or a string)
---@param kind string|nil defaults to the cause's kind
---@param message string|nil defaults to the cause's message
---@param fields table|nil context fields
---@return vibex.Error
function M.wrap(cause, kind, message, fields)
  local c = M.is(cause) and cause or nil
  fields = fields or {}
  fields.cause = cause
  return M.new(kind or (c and c.kind) or "unknown", message or (c and c.message) or tostring(cause), fields)
end

--- Is v an error (of this kind, when kind is given)?
---@param v any
---@param kind string|nil
---@return boolean
function M.is(v, kind)
  return type(v) == "table" and getmetatable(v) == Error and (kind == nil or v.kind == kind)
end

--- True when retrying the same request later is safe and sensible.
---@param e any
---@return boolean
function M.retryable(e) return M.is(e) and e.retryable == true end

--- The message of an error or of anything else, for logs.
---@param e any
---@return string
function M.message(e)
  if M.is(e) then return e.message end
  return tostring(e)
end

return M
