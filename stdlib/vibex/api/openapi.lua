--- vibex.api.openapi — the OpenAPI 3.1 document of the API, made from the
-- route table the server dispatches on (vibex.api.routes.*) and the shared
-- schemas below: a route cannot exist without its schema.
local T = require "vibex.api.types"

local M = {}

local obj, str, int, num, bool, arr, dec, time, ref, enum =
  T.obj, T.str, T.int, T.num, T.bool, T.arr, T.dec, T.time, T.ref, T.enum

local SIDE = { "buy", "sell" }

--- The shared schemas (components.schemas).
function M.components()
  return {
    Error = obj({ error = obj({ kind = str { description = "invalid, auth, forbidden, not_found, refused, rate_limited, unavailable, internal" },
                                message = str(), fix = str(), rules = arr(str()) }, { "kind", "message" }) }, { "error" }),
    Health = obj({ status = enum { "ok" }, version = str(), time = time(), uptime_s = num() }, { "status", "version", "time" }),
    Check = obj({ name = str(), ok = bool(), detail = str(), state = str() }, { "name", "ok" }),
    Ready = obj({ ready = bool(), checks = arr(ref "Check") }, { "ready", "checks" }),
    Balance = obj({ asset = str(), wallet = dec(), available = dec(), unrealized_pnl = dec() }, { "asset" }),
    Account = obj({
      name = str(), status = str { description = "starting, running, failed, stopped" }, mode = enum { "paper", "live" },
      venue = str(), strategy = str(), symbols = arr(str()), paused = bool(), paused_by = str(),
      equity = dec(), wallet = dec(), available = dec(), unrealized_pnl = dec(), balances = arr(ref "Balance"),
      open_positions = int(), decisions = int(), last_decision_at = time(), config_version = int(),
      reason = str(), fix = str(), run_id = int(),
    }, { "name", "status" }),
    ExitPlan = obj({ stop_loss = num(), take_profit = num(), invalidation = str(), confidence = num(), opened = str() }, {},
      { additionalProperties = true }),
    Position = obj({ account = str(), symbol = str(), side = enum { "long", "short" }, quantity = dec(), entry_price = dec(),
                     mark_price = dec(), unrealized_pnl = dec(), leverage = num(), liquidation_price = dec(), notional = dec(),
                     exit_plan = ref "ExitPlan" }, { "account", "symbol", "side", "quantity" }),
    Order = obj({ order_id = int(), account = str(), client_order_id = str(), venue_order_id = str(), symbol = str(),
                  side = enum(SIDE), type = str(), status = str(), quantity = dec(), price = dec(), stop_price = dec(),
                  executed_quantity = dec(), average_price = dec(), reduce_only = bool(), close_position = bool(),
                  reject_reason = str(), cycle_key = str(), created_at = time(), updated_at = time(),
                  origin = enum { "agent", "manual", "recovery" }, kind = str(),
                  events = arr(ref "OrderEvent"), fills = arr(ref "Fill") }, { "order_id", "client_order_id", "symbol", "side", "status" }),
    OrderEvent = obj({ status = str(), executed_quantity = dec(), average_price = dec(), venue_time = time(), created_at = time() },
      { "status" }),
    Fill = obj({ fill_id = int(), account = str(), client_order_id = str(), trade_id = str(), symbol = str(), side = enum(SIDE),
                 price = dec(), quantity = dec(), fee = dec(), fee_asset = str(), realized_pnl = dec(), maker = bool(),
                 filled_at = time() }, { "fill_id", "trade_id", "symbol", "side", "price", "quantity" }),
    Decision = obj({ decision_id = int(), account = str(), cycle_key = str(), source = str(), provider = str(), model = str(),
                     valid = bool(), error = str(), decisions = arr(obj({}, {}, { additionalProperties = true })),
                     rationale = str(), tokens_in = int(), tokens_out = int(), latency_ms = num(), cost = dec(),
                     experiment = str(), variant = str(), equity = dec(), started_at = time() },
      { "decision_id", "account", "cycle_key" }),
    DecisionDetail = obj({ decision_id = int(), account = str(), cycle_key = str(), source = str(), provider = str(), model = str(),
                           valid = bool(), error = str(), prompt = {}, raw_answer = str(), parsed = {}, validation = {},
                           step_ms = {}, tokens_in = int(), tokens_out = int(), latency_ms = num(), cost = dec(),
                           experiment = str(), variant = str(), equity = dec(), prompt_version = str(), config_hash = str(),
                           started_at = time(), orders = arr(ref "Order") }, { "decision_id", "account", "cycle_key" }),
    DiaryEntry = obj({ diary_entry_id = int(), account = str(), author = enum { "agent", "user" }, body = str(),
                       tags = arr(str()), cycle_key = str(), edited_by = str(), created_at = time(), updated_at = time() },
      { "diary_entry_id", "author", "body" }),
    EquityPoint = obj({ time = time(), equity = dec(), wallet = dec(), unrealized_pnl = dec() }, { "time", "equity" }),
    Metrics = obj({ account = str(), strategy = str(), window = str(), equity = dec(), pnl = dec(), return_pct = dec(),
                    max_drawdown = dec(), sharpe = dec(), win_rate = dec(), trades = int(), fees = dec(), funding = dec(),
                    computed_at = time() }, { "account", "window" }),
    Candle = obj({ open_time = time(), open = num(), high = num(), low = num(), close = num(), volume = num(),
                   closed = bool() }, { "open_time", "open", "high", "low", "close" }),
    Ticker = obj({ symbol = str(), price = num(), mark_price = num(), funding_rate = num(), next_funding_at = time(),
                   time = time() }, { "symbol" }),
    Strategy = obj({ name = str(), description = str(), accounts = arr(str()), scripts = obj({}, {}, { additionalProperties = str() }),
                     versions = obj({}, {}, { additionalProperties = str() }), params = obj({}, {}, { additionalProperties = true }) },
      { "name", "accounts" }),
    ConfigVersion = obj({ version = int(), hash = str(), applied_at = time(), environment = str() }, { "version" }),
    Token = obj({ api_token_id = int(), name = str(), scope = enum { "read", "trade" }, prefix = str(), created_by = str(),
                  created_at = time(), expires_at = time(), last_used_at = time(), revoked_at = time(), token = str {
                    description = "only in the answer that creates it" } }, { "api_token_id", "name", "scope" }),
    AuditEntry = obj({ audit_log_id = int(), actor = str(), action = str(), table_name = str(), row_id = int(),
                       detail = {}, changed_at = time() }, { "audit_log_id", "action", "table_name" }),
    Run = obj({ run_id = int(), kind = str(), status = str(), accounts = arr(str()), started_at = time(), ended_at = time(),
                config_hash = str(), details = {} }, { "run_id", "kind", "status" }),
  }
end

local function params_of(route)
  local out = {}
  for name in route.path:gmatch("{([%w_]+)}") do
    out[#out + 1] = { name = name, ["in"] = "path", required = true, schema = str(),
                      description = route.path_doc and route.path_doc[name] or nil }
  end
  for _, p in ipairs(route.query or {}) do
    local s = {}
    for k, v in pairs(p.schema) do s[k] = v end
    out[#out + 1] = { name = p.name, ["in"] = "query", required = p.required or false, schema = s, description = p.doc }
  end
  return out
end

local function error_response(desc, kind, message)
  return { description = desc, content = { ["application/json"] = { schema = ref "Error",
    example = { error = { kind = kind, message = message } } } } }
end

local function operation(route)
  local op = {
    operationId = route.id, summary = route.summary, description = route.description, tags = { route.tag },
    parameters = params_of(route), responses = {},
  }
  if #op.parameters == 0 then op.parameters = nil end
  if route.scope == "public" then op.security = T.list {} end
  if route.body then
    op.requestBody = { required = true, content = { ["application/json"] = { schema = route.body, example = route.body_example } } }
  end
  for status, r in pairs(route.responses) do
    local content
    if route.raw then
      content = { [route.raw] = { schema = str() } }
    else
      content = { ["application/json"] = { schema = r.schema, example = r.example } }
    end
    op.responses[tostring(status)] = { description = r.description or "OK", content = content }
  end
  if route.scope ~= "public" then
    op.responses["401"] = error_response("no token, or a token that is unknown, revoked or expired", "auth", "no bearer token (send Authorization: Bearer TOKEN)")
    op.responses["429"] = error_response("too many failed attempts from this address", "rate_limited", "too many failed attempts from 127.0.0.1")
  end
  if route.scope == "trade" then
    op.responses["403"] = error_response("the token's scope is read; this route needs trade", "forbidden", "needs a token with scope trade")
  end
  if route.body or route.query then op.responses["400"] = error_response("a parameter or the body is not valid", "invalid", "body.symbol: required") end
  if route.path:find("{") then op.responses["404"] = op.responses["404"] or error_response("not found", "not_found", "no such item") end
  return op
end

--- The document, for a server URL.
function M.document(routes, url)
  local paths = {}
  local tags, seen = {}, {}
  for _, r in ipairs(routes) do
    paths[r.path] = paths[r.path] or {}
    paths[r.path][r.method:lower()] = operation(r)
    if not seen[r.tag] then
      seen[r.tag] = true
      tags[#tags + 1] = { name = r.tag }
    end
  end
  return {
    openapi = "3.1.0",
    info = { title = "vibex control plane", version = require("vibex.runtime").versions().vibex,
             description = "Accounts, positions, orders, fills, decisions, the diary, performance, market data, strategies, "
               .. "config, experiments, model statistics and backtests of a running `vibex run`. Money and quantities are "
               .. "decimal strings. Lists are paginated with ?limit= and ?cursor= (the answer's next_cursor). The event "
               .. "stream is the WebSocket /api/v1/stream (see the README). Prometheus metrics: GET /metrics." },
    servers = { { url = url } },
    tags = tags,
    paths = paths,
    components = {
      schemas = M.components(),
      securitySchemes = { bearer = { type = "http", scheme = "bearer",
        description = "api.token from the config, a token from `vibex token create`, or a session from a wallet sign-in" } },
    },
    security = { { bearer = T.list {} } },
  }
end

return M
