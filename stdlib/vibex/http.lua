--- vibex.http — asynchronous HTTP client (libcurl on the loop).
--
--   local res, err = http.request{method = "POST", url = "http://127.0.0.1:8080/x",
--                                 headers = {["Content-Type"] = "application/json"},
--                                 body = json.encode{a = 1}, timeout_ms = 5000}
--   -- res = {status = 200, headers = {["content-type"] = …}, body = "…",
--   --        http_version = 1|2, time_ms = 1.3}
--
-- Waits in the calling task; other tasks run meanwhile. Transport failures
-- return nil, err (a vibex.errors value) — they never raise: kind
-- "transport" (err.transport says "connect", "dns", "tls" or "transport"),
-- "timeout", "protocol" (the body passed max_body_bytes), "invalid" (a URL
-- libcurl cannot use), "shutdown" (not sent: the runtime is stopping).
-- A wrong argument (no url, a table body) is a programming mistake: it raises.
-- Connections are reused; HTTP/2 is used when a TLS server offers it.
-- Options: method, url, headers, body, timeout_ms (30000),
-- connect_timeout_ms (10000), max_body_bytes (64 MiB), cainfo, insecure,
-- http_version (0 auto, 1 HTTP/1.1 only, 2 h2 prior knowledge).
local core = require "vibex.core.http"
local task = require "vibex.task"
local json = require "vibex.json"
local errors = require "vibex.errors"

local await = task.await
local raw = core.request

local M = {}

-- the C client's failure words -> the error vocabulary
local KIND_OF = { connect = "transport", dns = "transport", tls = "transport", transport = "transport",
                  timeout = "timeout", too_large = "protocol", shutdown = "shutdown", invalid = "invalid" }

local function failed(url, message, ckind)
  local kind = KIND_OF[ckind] or (ckind == nil and "invalid") or "transport"
  return nil, errors.new(kind, message, { source = "http", transport = ckind, url = (tostring(url):gsub("%?.*", "")) })
end

--- Send a request and wait for the answer.
---@param opts table method, url, headers, body, timeout_ms, connect_timeout_ms, max_body_bytes, cainfo, insecure, http_version
---@return table|nil res {status, headers, body, http_version, time_ms}
---@return vibex.Error|nil err
function M.request(opts)
  if type(opts) ~= "table" then error("http.request{...}: expected an options table", 2) end
  local res, msg, ckind = await(raw(opts))
  if res then return res end
  return failed(opts.url, msg, ckind)
end

--- GET url: res | nil, err (see request).
---@param url string
---@param opts table|nil see request
---@return table|nil res
---@return vibex.Error|nil err
function M.get(url, opts)
  opts = opts or {}
  opts.url, opts.method = url, "GET"
  return M.request(opts)
end

--- POST body to url: res | nil, err (see request).
---@param url string
---@param body string
---@param opts table|nil see request
---@return table|nil res
---@return vibex.Error|nil err
function M.post(url, body, opts)
  opts = opts or {}
  opts.url, opts.method, opts.body = url, "POST", body
  return M.request(opts)
end

--- Request and decode a JSON answer: value, res | nil, err, res.
---@param opts table see request
---@return any|nil value the decoded body
---@return table|vibex.Error res_or_err
---@return table|nil res on a decoding error
function M.json(opts)
  local res, err = M.request(opts)
  if not res then return nil, err end
  local v, jerr = json.decode(res.body)
  if v == nil then
    return nil, errors.new("protocol", ("%s %s: %s"):format(opts.method or "GET", (opts.url:gsub("%?.*", "")), jerr),
      { source = "http", status = res.status }), res
  end
  return v, res
end

M.in_flight = core.in_flight

return M
