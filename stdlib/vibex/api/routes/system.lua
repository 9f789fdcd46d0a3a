--- vibex.api.routes.system — health and readiness, the OpenAPI document,
-- market data from the runtime's buffers, strategies and scripts, the
-- effective config (secrets masked) and its versions.
local T = require "vibex.api.types"
local C = require "vibex.api.routes.common"
local runtime = require "vibex.runtime"
local breaker = require "vibex.breaker"
local log = require "vibex.log"

local obj, str, arr, int, ref = T.obj, T.str, T.arr, T.int, T.ref
local started_ms = runtime.wall_ms()

-- A market-data service that has the symbol: an account's, or the replay's.
local function market_for(app, symbol)
  for _, a in pairs(app.agent and app.agent.accounts or {}) do
    local md = a.market
    if md and md.series then
      for _, iv in ipairs(a.intervals or {}) do
        if md:series(symbol, iv) then return md, a end
      end
    end
  end
end

-- The config as data with every secret shown by name only.
local function masked(v, depth)
  depth = depth or 0
  if depth > 20 then return nil end
  if type(v) == "table" then
    if v.reveal then return tostring(v) end -- a vibex.secret: <secret NAME>
    local out = {}
    for k, x in pairs(v) do
      if type(k) == "string" and log.is_secret_key(k) and type(x) ~= "table" then out[k] = "***"
      else out[k] = masked(x, depth + 1) end
    end
    return out
  end
  if type(v) == "function" then return nil end
  if type(v) == "string" then return log.mask_secrets(v) end
  return v
end

local OPEN = obj({}, {}, { additionalProperties = true })

return {
  { method = "GET", path = "/api/v1/health", id = "health", tag = "system", scope = "public",
    summary = "Is vibex up (no token needed)",
    responses = { [200] = { schema = ref "Health", example = { status = "ok", version = "0.1.0", time = "2026-12-07T10:00:00.000Z", uptime_s = 42 } } },
    handler = function()
      local now = runtime.wall_ms()
      return 200, { status = "ok", version = runtime.versions().vibex, time = T.iso(now), uptime_s = (now - started_ms) / 1000 }
    end },
  { method = "GET", path = "/api/v1/ready", id = "ready", tag = "system", scope = "read",
    summary = "Readiness: the database, each account's venue, the model providers' and other circuit breakers",
    responses = { [200] = { schema = ref "Ready" }, [503] = { description = "something is not ready", schema = ref "Ready" } },
    handler = function(c)
      local checks, ready = {}, true
      local pool = C.pool(c)
      local rows, err = pool and pool:query("SELECT 1 AS ok")
      checks[#checks + 1] = { name = "database", ok = rows ~= nil, detail = rows and "answers" or tostring(err or "no database") }
      local writer = c.app.writer
      if writer and writer.outage and writer:outage() then
        checks[#checks + 1] = { name = "journal", ok = false, detail = "database writes are journaled locally (outage)" }
      end
      local names = {}
      for n in pairs(c.app.runners) do names[#names + 1] = n end
      table.sort(names)
      for _, n in ipairs(names) do
        local r = c.app.runners[n]
        checks[#checks + 1] = { name = "account:" .. n, ok = r.status == "running", state = r.status, detail = r.reason or r.venue }
      end
      for _, b in ipairs(breaker.all()) do
        local st = b.state
        checks[#checks + 1] = { name = "breaker:" .. b.name, ok = st ~= "open", state = st }
      end
      for _, ch in ipairs(checks) do if not ch.ok then ready = false end end
      return ready and 200 or 503, { ready = ready, checks = T.list(checks) }
    end },
  { method = "GET", path = "/api/v1/openapi.json", id = "openapi", tag = "system", scope = "public",
    summary = "This API's OpenAPI 3.1 document", responses = { [200] = { schema = OPEN } },
    handler = function(c)
      return 200, require("vibex.api.openapi").document(c.api.routes, c.api.url)
    end },
  { method = "GET", path = "/api/v1/market/candles", id = "candles", tag = "market", scope = "read",
    summary = "Candles of a symbol and interval from the runtime's buffers (the forming one last, closed = false)",
    query = { { name = "symbol", schema = str { pattern = T.SYMBOL }, required = true }, { name = "interval", schema = str(), doc = "5m, 1h, … (default: the first tracked)" },
              { name = "limit", schema = int { minimum = 1, maximum = 1000 }, doc = "the newest N (default 200)" } },
    responses = { [200] = { schema = obj({ symbol = str(), interval = str(), items = arr(ref "Candle") }, { "symbol", "interval", "items" }) } },
    handler = function(c)
      local md, a = market_for(c.app, c.query.symbol)
      if not md then return 404, C.err("not_found", ("no account tracks %s"):format(c.query.symbol), "GET /api/v1/accounts shows the symbols") end
      local iv = c.query.interval or a.intervals[1]
      local series = md:series(c.query.symbol, iv)
      if not series then return 404, C.err("not_found", ("%s is not tracked at %s (tracked: %s)"):format(c.query.symbol, iv, table.concat(a.intervals, ", "))) end
      local items = {}
      for i, k in ipairs(series:last(c.query.limit or 200)) do
        items[i] = { open_time = T.iso(k.t), open = k.o, high = k.h, low = k.l, close = k.c, volume = k.v, closed = k.closed }
      end
      return 200, { symbol = c.query.symbol, interval = iv, items = T.list(items) }
    end },
  { method = "GET", path = "/api/v1/market/ticker", id = "ticker", tag = "market", scope = "read",
    summary = "Last price, mark price and funding rate of each tracked symbol", query = { C.SYMBOL },
    responses = { [200] = { schema = obj({ items = arr(ref "Ticker") }, { "items" }) } },
    handler = function(c)
      local seen, items = {}, {}
      for _, a in pairs(c.app.agent and c.app.agent.accounts or {}) do
        local md = a.market
        for _, sym in ipairs(a.mview and a.mview.symbols or {}) do
          if not seen[sym] and (not c.query.symbol or c.query.symbol == sym) then
            seen[sym] = true
            local f = md:funding(sym)
            local rate = type(f) == "table" and tonumber(f.rate) or tonumber(f)
            items[#items + 1] = { symbol = sym, price = md:price(sym), mark_price = tonumber(md:mark(sym)), funding_rate = rate,
                                  next_funding_at = type(f) == "table" and T.iso(f.next_ms) or nil, time = T.iso(md:now()) }
          end
        end
      end
      table.sort(items, function(x, y) return x.symbol < y.symbol end)
      return 200, { items = T.list(items) }
    end },
  { method = "GET", path = "/api/v1/strategies", id = "strategies", tag = "strategies", scope = "read",
    summary = "Strategies, the accounts that run them, their scripts and the scripts' versions (content hashes)",
    responses = { [200] = { schema = obj({ items = arr(ref "Strategy") }, { "items" }) } },
    handler = function(c)
      local by = {}
      local cfg = c.app.store:get() or {}
      for _, acc in ipairs(cfg.accounts or {}) do
        local ok, strat = pcall(c.app.agent.strategy, c.app.agent, acc)
        if ok then
          local s = by[strat.name]
          if not s then
            local hashes = select(2, pcall(c.app.agent.script_hashes, c.app.agent, strat))
            local scripts = {}
            for _, role in ipairs { "context", "prompt", "policy", "rules" } do
              if type(strat[role]) == "string" then scripts[role] = strat[role] end
            end
            s = { name = strat.name, description = strat.description, accounts = {}, scripts = scripts,
                  versions = type(hashes) == "table" and hashes or {}, params = strat.params or {} }
            by[strat.name] = s
          end
          s.accounts[#s.accounts + 1] = acc.name
        end
      end
      local items = {}
      for _, s in pairs(by) do items[#items + 1] = s end
      table.sort(items, function(x, y) return x.name < y.name end)
      return 200, { items = T.list(items) }
    end },
  { method = "GET", path = "/api/v1/config", id = "config", tag = "config", scope = "read",
    summary = "The effective config (secrets shown by name only), its version and hash",
    responses = { [200] = { schema = obj({ version = int(), hash = str(), environment = str(), path = str(), config = OPEN },
      { "version", "config" }) } },
    handler = function(c)
      local snap = c.app.store:snapshot()
      return 200, { version = snap.version, hash = snap.hash, environment = snap.environment, path = c.app.path, config = masked(snap.config) }
    end },
  { method = "GET", path = "/api/v1/config/versions", id = "configVersions", tag = "config", scope = "read",
    summary = "The config versions applied since start",
    responses = { [200] = { schema = obj({ items = arr(ref "ConfigVersion") }, { "items" }) } },
    handler = function(c)
      local items = {}
      for i, v in ipairs(c.app.store:list_versions()) do
        items[i] = { version = v.version, hash = v.hash, applied_at = T.iso(v.applied_at), environment = v.environment }
      end
      return 200, { items = T.list(items) }
    end },
}
