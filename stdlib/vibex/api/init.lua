--- vibex.api — the control plane `vibex run` serves when api.enabled:
-- REST under /api/v1 (routes in vibex.api.routes.*), the WebSocket stream
-- /api/v1/stream (vibex.api.stream), /metrics for Prometheus, the OpenAPI
-- document at /api/v1/openapi.json (made from the same route table the
-- server dispatches on), and the web dashboard (stdlib/vibex/web) at /.
--
-- Each request runs in a task of its own on the trading loop: handlers
-- read memory or wait on the database, never block. Bodies are limited
-- (api.max_body_bytes), slow clients dropped (api.timeout_s), connections
-- capped (api.max_connections); a WebSocket client that does not read is
-- disconnected before its queue grows past 4 MiB.
local server = require "vibex.core.server"
local json = require "vibex.json"
local log = require "vibex.log"
local metrics = require "vibex.metrics"
local runtime = require "vibex.runtime"
local task = require "vibex.task"
local types = require "vibex.api.types"
local auth = require "vibex.api.auth"
local stream = require "vibex.api.stream"
local openapi = require "vibex.api.openapi"

local M = {}

local alog = log.channel("app")
local requests_total = metrics.counter("vibex_api_requests_total", "API requests by route and status", { "route", "status" })
local request_seconds = metrics.histogram("vibex_api_request_seconds", "API request time", { "route" })

local TOPIC = { decision = "decisions", order = "orders", fill = "fills", position = "positions", equity = "equity",
                diary = "diary", account = "accounts", margin_call = "accounts" }

local Api = {}
Api.__index = Api

--- The route table: every module's routes, in order.
function M.routes()
  local all = {}
  for _, name in ipairs { "vibex.api.routes.system", "vibex.api.routes.trading", "vibex.api.routes.records",
                          "vibex.api.routes.admin" } do
    for _, r in ipairs(require(name)) do all[#all + 1] = r end
  end
  return all
end

-- "/api/v1/orders/{client_order_id}" -> matcher
local function compile(route)
  local segs, names = {}, {}
  for seg in route.path:gmatch("[^/]+") do
    local name = seg:match("^{([%w_]+)}$")
    if name then segs[#segs + 1] = false else segs[#segs + 1] = seg end
    names[#segs] = name
  end
  route.segs, route.names = segs, names
  route.key = route.method .. " " .. route.path
  return route
end

local function split(path)
  local out = {}
  for seg in path:gmatch("[^/]+") do out[#out + 1] = seg end
  return out
end

local function unescape(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_query(q)
  local out = {}
  for pair in (q or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    if k and k ~= "" then out[unescape(k)] = unescape(v) end
  end
  return out
end

--- o: app (vibex.app), config (the api section).
function M.start(app, cfg)
  local self = setmetatable({ app = app, cfg = cfg, routes = {}, components = openapi.components() }, Api)
  for _, r in ipairs(M.routes()) do self.routes[#self.routes + 1] = compile(r) end
  self.auth = auth.new { config = cfg, pool = app.db and app.db.pool, host = ("%s:%d"):format(cfg.bind, cfg.port) }
  self.hub = stream.new { capacity = cfg.stream_buffer, auth = self.auth }
  local web = runtime.home() .. "/stdlib/vibex/web"
  local srv, err = server.listen {
    -- the server takes addresses, not names
    bind = cfg.bind == "localhost" and "127.0.0.1" or cfg.bind, port = cfg.port,
    static_dir = cfg.dashboard and runtime.exists(web) and web or nil,
    prefixes = { "/api", "/metrics" }, ws_path = "/api/v1/stream",
    max_body = cfg.max_body_bytes, timeout_s = cfg.timeout_s, max_conns = cfg.max_connections,
    tls_cert = cfg.tls_cert, tls_key = cfg.tls_key,
    on_request = function(req) self:handle(req) end,
    on_ws = function(ev, c, text)
      if ev == "open" then self.hub:open(c)
      elseif ev == "message" then self.hub:message(c, text)
      else self.hub:close(c) end
    end,
  }
  if not srv then return nil, tostring(err) end
  self.server = srv
  self.port = srv:port()
  local scheme = cfg.tls_cert and "https" or "http"
  self.url = ("%s://%s:%d"):format(scheme, cfg.bind, self.port)
  if cfg.insecure and not cfg.tls_cert and cfg.bind ~= "127.0.0.1" and cfg.bind ~= "localhost" and cfg.bind ~= "::1" then
    alog:warn(("the API listens on %s without TLS (api.insecure = true): tokens and orders cross the network in clear text")
      :format(cfg.bind), { bind = cfg.bind, port = self.port })
  end
  alog:info("API listening", { url = self.url, dashboard = cfg.dashboard and (self.url .. "/") or nil })
  return self
end

--- What the agent observed goes to the stream (and from there to clients).
-- Lists in the agent's events that must stay JSON arrays when empty.
local LISTS = { decisions = true, orders = true, refusals = true, tags = true }

function Api:observe(kind, data)
  local topic = TOPIC[kind]
  if not topic then return end
  local out = {}
  for k, v in pairs(data) do out[k] = (LISTS[k] and type(v) == "table") and types.list(v) or v end
  self.hub:publish(topic, out)
end

function Api:close()
  if self.server then self.server:close() end
  self.server = nil
end

function Api:match(method, path)
  local segs = split(path)
  local allowed
  for _, r in ipairs(self.routes) do
    if #r.segs == #segs then
      local params, ok = {}, true
      for i, s in ipairs(r.segs) do
        if s then
          if s ~= segs[i] then ok = false break end
        else
          params[r.names[i]] = unescape(segs[i])
        end
      end
      if ok then
        if r.method == method then return r, params end
        allowed = allowed or {}
        allowed[#allowed + 1] = r.method
      end
    end
  end
  return nil, allowed
end

local function error_body(kind, message, fix)
  return { error = { kind = kind, message = message, fix = fix } }
end
M.error_body = error_body

local STATUS_KIND = { [400] = "invalid", [401] = "auth", [403] = "forbidden", [404] = "not_found", [405] = "invalid",
                      [409] = "conflict", [422] = "refused", [429] = "rate_limited", [500] = "internal", [503] = "unavailable" }

function Api:reply(req, status, body, headers, ctype)
  local text
  if type(body) == "string" then text = body else
    local err
    text, err = types.encode(body)
    if not text then
      status, text = 500, types.encode(error_body("internal", "the answer could not be encoded: " .. tostring(err)))
    end
  end
  headers = headers or {}
  headers["Cache-Control"] = headers["Cache-Control"] or "no-store"
  headers["X-Content-Type-Options"] = "nosniff"
  req:respond(status, ctype or "application/json", text, headers)
  return status
end

-- Query values: typed and checked against the route's parameters.
local function read_query(route, raw)
  local q = {}
  for _, p in ipairs(route.query or {}) do
    local v = raw[p.name]
    if v ~= nil and v ~= "" then
      local s = p.schema
      if s.type == "integer" then
        local n = tonumber(v)
        if not n or n ~= math.floor(n) then return nil, ("query %s: %q is not an integer"):format(p.name, v) end
        v = n
      elseif s.format == "date-time" then
        local ms = types.parse_time(v)
        if not ms then return nil, ("query %s: %q is not a time (2026-12-07, 2026-12-07T10:00:00Z or epoch ms)"):format(p.name, v) end
        v = ms
      end
      if s.format ~= "date-time" then
        local ok, err = types.validate(s, v, "query " .. p.name)
        if not ok then return nil, err end
      end
      q[p.name] = v
    elseif p.required then
      return nil, ("query %s: required"):format(p.name)
    end
  end
  return q
end

function Api:authorize(req, route)
  if route.scope == "public" then return { name = "anonymous", scope = "public" } end
  local peer = req:peer()
  local wait = self.auth:limited(peer)
  if wait then return nil, 429, error_body("rate_limited", ("too many failed attempts from %s"):format(peer), ("wait %d s"):format(wait)), wait end
  local who, why = self.auth:identify(req:header("authorization"))
  if not who then
    if req:header("authorization") then self.auth:failed(peer, "bad token", { route = route.key }) end
    return nil, 401, error_body("auth", why, "create a token with `vibex token create`, or sign in with a wallet (POST /api/v1/auth/nonce)")
  end
  if route.scope == "trade" and who.scope ~= "trade" then
    return nil, 403, error_body("forbidden", ("%s needs a token with scope trade; this one has scope %s"):format(route.key, who.scope))
  end
  return who
end

-- Every mutation leaves an audit row: who, what, with which body, and the outcome.
function Api:audit(route, who, req, params, body, status)
  local pool = self.app.db and self.app.db.pool
  if not pool then return end
  local detail = { method = route.method, path = req:path(), params = params, body = body, status = status, peer = req:peer() }
  local text = log.mask_secrets(json.encode(detail) or "{}")
  local ok, err = pool:query([[INSERT INTO audit_log (table_name, row_id, action, new_row, actor)
    VALUES ($1, 0, 'API', $2::jsonb, $3)]], route.key, text, ("%s:%s"):format(who.kind or "token", who.name))
  if not ok then alog:warn("API mutation not written to the audit log", { route = route.key, error = tostring(err) }) end
end

function Api:dispatch(req)
  local method, path = req:method(), req:path()
  if path == "/metrics" then return self:metrics(req), "/metrics" end
  if method == "HEAD" then method = "GET" end
  local route, params = self:match(method, path)
  if not route then
    if params then
      return self:reply(req, 405, error_body("invalid", ("%s is not allowed on %s"):format(method, path), "use " .. table.concat(params, ", ")),
        { Allow = table.concat(params, ", ") }), "unmatched"
    end
    return self:reply(req, 404, error_body("not_found", ("no route %s %s"):format(method, path), "see /api/v1/openapi.json")), "unmatched"
  end
  local who, status, body, wait = self:authorize(req, route)
  if not who then return self:reply(req, status, body, wait and { ["Retry-After"] = tostring(wait) } or nil), route.key end
  local q, qerr = read_query(route, parse_query(req:query()))
  if not q then return self:reply(req, 400, error_body("invalid", qerr, "see the route's parameters in /api/v1/openapi.json")), route.key end
  local input
  if route.body then
    local text = req:body()
    if text == "" then text = "{}" end
    local berr
    input, berr = json.decode(text)
    if type(input) ~= "table" then
      return self:reply(req, 400, error_body("invalid", "the body is not a JSON object: " .. tostring(berr))), route.key
    end
    local ok, verr = types.validate(route.body, input, "body", self.components)
    if not ok then return self:reply(req, 400, error_body("invalid", verr, "see the route's requestBody in /api/v1/openapi.json")), route.key end
  end
  local c = { app = self.app, api = self, who = who, params = params, query = q, body = input, peer = req:peer(), req = req }
  local ok, st, out, headers = xpcall(route.handler, debug.traceback, c)
  if not ok then
    if task.is_cancelled(st) then error(st, 0) end
    alog:error("API handler failed", { route = route.key, error = tostring(st) })
    st, out = 500, error_body("internal", "the request failed inside vibex (logged with its traceback)")
  end
  if type(out) == "table" and out.error and not out.error.kind then out.error.kind = STATUS_KIND[st] or "error" end
  if route.method ~= "GET" and route.audit ~= false then self:audit(route, who, req, params, input, st) end
  if route.raw then return self:reply(req, st, out, headers, route.raw), route.key end
  return self:reply(req, st, out, headers), route.key
end

function Api:handle(req)
  local t0 = task.hrtime()
  local ok, status, key = pcall(self.dispatch, self, req)
  if not ok then
    if task.is_cancelled(status) then return end
    alog:error("API request failed", { path = req:path(), error = tostring(status) })
    pcall(self.reply, self, req, 500, error_body("internal", "the request failed inside vibex"))
    status, key = 500, "error"
  end
  requests_total:labels(key or "unmatched", tostring(status)):inc()
  request_seconds:labels(key or "unmatched"):observe((task.hrtime() - t0) / 1e9)
end

--- /metrics: the registry, in the Prometheus text format.
function Api:metrics(req)
  if not self.cfg.public_metrics then
    local who, status, body = self:authorize(req, { scope = "read", key = "GET /metrics" })
    if not who then return self:reply(req, status, body) end
  end
  self.app:update_gauges()
  return self:reply(req, 200, metrics.render(), nil, "text/plain; version=0.0.4; charset=utf-8")
end

return M
