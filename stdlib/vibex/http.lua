--- vibex.http — asynchronous HTTP client (libcurl on the loop).
--
--   local res, err = http.request{method = "POST", url = "http://127.0.0.1:8080/x",
--                                 headers = {["Content-Type"] = "application/json"},
--                                 body = json.encode{a = 1}, timeout_ms = 5000}
--   -- res = {status = 200, headers = {["content-type"] = …}, body = "…",
--   --        http_version = 1|2, time_ms = 1.3}
--
-- Waits in the calling task; other tasks run meanwhile. Transport failures
-- (refused, timeout, DNS, TLS) return nil, message, kind — they never raise.
-- Connections are reused; HTTP/2 is used when a TLS server offers it.
-- Options: method, url, headers, body, timeout_ms (30000),
-- connect_timeout_ms (10000), max_body_bytes (64 MiB), cainfo, insecure,
-- http_version (0 auto, 1 HTTP/1.1 only, 2 h2 prior knowledge).
local core = require "vibex.core.http"
local task = require "vibex.task"
local json = require "vibex.json"

local await = task.await
local raw = core.request

local M = {}

function M.request(opts)
  if type(opts) ~= "table" then error("http.request{...}: expected an options table", 2) end
  return await(raw(opts))
end

function M.get(url, opts)
  opts = opts or {}
  opts.url, opts.method = url, "GET"
  return M.request(opts)
end

function M.post(url, body, opts)
  opts = opts or {}
  opts.url, opts.method, opts.body = url, "POST", body
  return M.request(opts)
end

--- Request and decode a JSON answer: value, res | nil, err, res.
function M.json(opts)
  local res, err = M.request(opts)
  if not res then return nil, err end
  local v, jerr = json.decode(res.body)
  if v == nil then return nil, ("%s %s: %s"):format(opts.method or "GET", (opts.url:gsub("%?.*", "")), jerr), res end
  return v, res
end

M.in_flight = core.in_flight

return M
