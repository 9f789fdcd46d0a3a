--- vibex.exchange.aster — Aster perpetual futures over REST (and Binance
-- USDⓈ-M futures, which speaks the same protocol from another base URL).
--
--   local aster = exchange.aster{base_url = "https://fapi.asterdex.com",
--                                credentials = {user = …, signer = …, private_key = …}}
--   aster:klines("BTCUSDT", "1h", 100)
--   aster:place{symbol = "BTCUSDT", side = "BUY", type = "LIMIT", quantity = 0.01, price = 60000}
--
-- Every call waits in the calling task and returns result, or nil and a
-- vibex.exchange.errors value (err.kind says what to do). Nothing raises
-- for venue or network trouble.
--
-- Around every request: the server-time offset (resynced on -1021 and nonce
-- errors, then the request is re-signed and sent again), request-weight and
-- order-count pacing from the X-MBX-* headers and the published limits,
-- Retry-After on 429, a venue-wide stop until a 418 ban ends, and a circuit
-- breaker over transport errors and 5xx.
--
-- Orders are idempotent: each carries a client order id (derived from
-- account, decision and leg when not given). When placement ends with an
-- unknown outcome (timeout, 5xx, 503, malformed answer) the order is looked
-- up by that id and re-sent only if the venue says it does not exist.
local breaker = require "vibex.breaker"
local crypto = require "vibex.core.crypto"
local errors = require "vibex.exchange.errors"
local verrors = require "vibex.errors"
local filters = require "vibex.exchange.filters"
local orders = require "vibex.exchange.orders"
local http = require "vibex.http"
local json = require "vibex.json"
local log = require "vibex.log"
local metrics = require "vibex.metrics"
local runtime = require "vibex.core.runtime"
local signer = require "vibex.exchange.signer"
local task = require "vibex.task"

local tlog = log.channel("trading")
local wall_ms = runtime.wall_ms

local M = {}

local requests_total = metrics.counter("vibex_exchange_requests_total", "Venue REST requests by outcome",
  { "venue", "outcome" })
local weight_gauge = metrics.gauge("vibex_exchange_used_weight", "Request weight used in the current minute",
  { "venue" })
local latency_hist = metrics.histogram("vibex_exchange_request_seconds", "Venue REST round trip",
  { "venue" })

local INTERVAL_MS = require("vibex.time").INTERVAL_MS

local Client = {}
Client.__index = Client
Client.__tostring = function(c) return ("<exchange %s %s>"):format(c.venue, c.base_url) end

--- A client. o: venue ("aster"|"binance"), base_url, credentials
-- ({api_key, api_secret} or {user, signer, private_key}), chain_id,
-- recv_window_ms, timeout_ms, account (name, for client order ids),
-- weight_limit / order_limit (until exchange info tells), pace (fraction of
-- the limit to stay under, 0.9).
function M.new(o)
  o = o or {}
  local c = setmetatable({
    venue = o.venue or "aster",
    base_url = assert(o.base_url, "exchange: base_url is required"):gsub("/+$", ""),
    ws_url = o.ws_url and o.ws_url:gsub("/+$", ""),
    account = o.account or "default",
    timeout_ms = o.timeout_ms or 10000,
    order_timeout_ms = o.order_timeout_ms or 5000,
    offset_ms = 0, synced_at = nil,
    window_ms = o.window_ms or 60000, -- the venue's limits are per minute; tests shorten it
    weight_limit = o.weight_limit or 2400, order_limit = o.order_limit or 1200, pace = o.pace or 0.9,
    used_weight = 0, weight_minute = 0, order_count = 0,
    paused_until = 0, banned_until = 0,
    max_unknown_attempts = o.max_unknown_attempts or 3,
    lookup_delay_ms = o.lookup_delay_ms or 250, max_wait_ms = o.max_wait_ms or 65000,
    clock_margin_ms = o.clock_margin_ms or 1000,
  }, Client)
  local cr = o.credentials or {}
  if cr.private_key or cr.signer then
    c.signer = signer.v3 { user = cr.user, signer = cr.signer, private_key = cr.private_key, chain_id = o.chain_id,
                           nonce_window_ms = o.nonce_window_ms }
  elseif cr.api_key or cr.api_secret then
    c.signer = signer.v1 { api_key = cr.api_key, api_secret = cr.api_secret, recv_window_ms = o.recv_window_ms }
  end
  c.prefix = (c.signer and c.signer.kind == "v3") and "/fapi/v3" or "/fapi/v1"
  c.breaker = breaker.new { name = ("%s:%s"):format(c.venue, c.base_url), failure_threshold = o.breaker_failures or 5,
                            window_ms = 60000, cooldown_ms = o.breaker_cooldown_ms or 15000,
                            is_failure = function() return false end }
  return c
end

-- ---- time ---------------------------------------------------------------

--- The venue's clock estimate in epoch ms.
function Client:now() return wall_ms() + self.offset_ms end

--- Measure the offset to the venue's clock (half the round trip assumed).
function Client:sync_time()
  local t0 = wall_ms()
  local res, err = self:request("GET", "/time", nil, { no_clock_retry = true })
  if not res then return nil, err end
  local t1 = wall_ms()
  self.offset_ms = math.floor(res.serverTime - (t0 + t1) / 2)
  self.synced_at = t1
  -- nonces signed against the old offset must not hold the next ones
  -- outside the venue's window (V3)
  if self.signer and self.signer.rebase then self.signer.rebase(self:now()) end
  return self.offset_ms
end

-- ---- the request path -----------------------------------------------------

local function sorted_pairs(params)
  local keys = {}
  for k, v in pairs(params or {}) do
    if v ~= nil then keys[#keys + 1] = k end
  end
  table.sort(keys)
  local list = {}
  for i, k in ipairs(keys) do
    local v = params[k]
    if type(v) == "boolean" then v = tostring(v) end
    list[i] = { k, v }
  end
  return list
end

local function masked(s)
  return (s:gsub("signature=[^&]*", "signature=***"))
end

function Client:_roll_window()
  local minute = math.floor(self:now() / self.window_ms)
  if minute ~= self.weight_minute then
    self.weight_minute, self.used_weight, self.order_count = minute, 0, 0
  end
end

--- Wait until a request of this weight fits under the limits.
function Client:_pace(weight, is_order)
  while true do
    local now = wall_ms()
    if self.banned_until > now then
      return nil, errors.new("banned", ("requests to %s are stopped until %s (418 ban)")
        :format(self.venue, os.date("!%Y-%m-%d %H:%M:%SZ", math.floor(self.banned_until / 1000))),
        { venue = self.venue, until_ms = self.banned_until, retry_after_ms = self.banned_until - now })
    end
    if self.paused_until > now then
      task.sleep(self.paused_until - now)
    else
      self:_roll_window()
      local over_weight = self.used_weight + weight > self.weight_limit * self.pace
      local over_orders = is_order and self.order_count + 1 > self.order_limit * self.pace
      if not (over_weight or over_orders) then return true end
      local wait = self.window_ms - self:now() % self.window_ms + 5
      tlog:warn("pacing requests to stay under the venue's limits",
        { venue = self.venue, used_weight = self.used_weight, limit = self.weight_limit, wait_ms = wait })
      task.sleep(wait)
    end
  end
end

function Client:_note_headers(h)
  self:_roll_window()
  local w = tonumber(h["x-mbx-used-weight-1m"] or h["x-mbx-used-weight"])
  if w then self.used_weight = w end
  local oc = tonumber(h["x-mbx-order-count-1m"])
  if oc then self.order_count = oc end
  weight_gauge:labels(self.venue):set(self.used_weight)
end

local function retry_after_ms(h, default)
  local s = tonumber(h["retry-after"])
  return s and s * 1000 or default
end

-- The breaker guards ordinary calls; a lookup that must resolve an order's
-- unknown outcome passes it (opts.no_breaker): the failures that opened it
-- are exactly why the lookup is needed.
local function breaker_allow(self, opts)
  if opts.no_breaker then return true end
  return self.breaker:allow()
end

local function breaker_record(self, token, ok)
  if token ~= true then self.breaker:record(token, ok) end
end

local CLOCK_CODES = { [-1021] = true, [-4225] = true }

--- One request, no retries. Returns decoded body, or nil, err.
function Client:_send(method, path, params, opts)
  local is_order = opts.order
  local ok, perr = self:_pace(opts.weight or 1, is_order)
  if not ok then return nil, perr end
  local token, berr = breaker_allow(self, opts)
  if not token then
    return nil, errors.new("circuit_open", berr, { venue = self.venue, breaker = "open" })
  end
  local list = sorted_pairs(params)
  local query, nonce
  local headers = { "User-Agent: vibex" }
  if opts.signed then
    if not self.signer then
      breaker_record(self, token, true)
      return nil, errors.new("auth", "this call needs credentials (api_key/api_secret or user/signer/private_key)",
        { venue = self.venue })
    end
    query, nonce = self.signer.sign(list, self:now())
    for _, hd in ipairs(self.signer.headers) do headers[#headers + 1] = hd end
  else
    query = signer.join(list)
    if opts.api_key and self.signer then
      for _, hd in ipairs(self.signer.headers) do headers[#headers + 1] = hd end
    end
  end
  local prefix = opts.prefix or self.prefix
  local url = self.base_url .. prefix .. path
  local body
  if method == "GET" or method == "DELETE" then
    if query ~= "" then url = url .. "?" .. query end
  else
    body = query
    headers[#headers + 1] = "Content-Type: application/x-www-form-urlencoded"
  end
  -- the request as errors show it (signature masked): built only for an error
  local function what() return ("%s %s%s %s"):format(method, prefix, path, masked(query)) end
  if is_order then self.order_count = self.order_count + 1 end
  self.used_weight = self.used_weight + (opts.weight or 1)
  local t0 = task.hrtime()
  local res, terr = http.request { method = method, url = url, headers = headers, body = body,
                                          timeout_ms = opts.timeout_ms or self.timeout_ms }
  latency_hist:labels(self.venue):observe((task.hrtime() - t0) / 1e9)
  if not res then
    if terr.kind == "shutdown" then -- never sent: the loop is stopping
      breaker_record(self, token, true)
      return nil, errors.new("shutdown", terr.message, { venue = self.venue, request = what(), cause = terr })
    end
    breaker_record(self, token, false)
    requests_total:labels(self.venue, "transport"):inc()
    -- an order whose answer never came may exist; a read can simply be repeated
    return nil, errors.new(is_order and "unknown" or terr.kind, ("%s: %s"):format(terr.kind, terr.message),
      { venue = self.venue, transport = terr.kind, request = what(), cause = terr })
  end
  self:_note_headers(res.headers)
  if is_order then self.last_sent_ns = res.sent_ns end -- when the order's bytes left (monotonic ns)
  local status = res.status
  local decoded, jerr = json.decode(res.body)
  local code = type(decoded) == "table" and tonumber(decoded.code) or nil
  -- a nonce the venue took (anything but a clock refusal) is one it remembers
  if nonce and status < 500 and not (code and CLOCK_CODES[code]) and self.signer.accepted then
    self.signer.accepted(nonce)
  end
  if status == 200 then
    breaker_record(self, token, true)
    if decoded == nil then
      requests_total:labels(self.venue, "malformed"):inc()
      return nil, errors.new(is_order and "unknown" or "protocol", "malformed JSON from the venue: " .. jerr,
        { venue = self.venue, status = status, request = what() })
    end
    requests_total:labels(self.venue, "ok"):inc()
    return decoded
  end
  local msg = type(decoded) == "table" and decoded.msg or res.body:sub(1, 200)
  local fields = { venue = self.venue, status = status, request = what() }
  if status == 429 then
    breaker_record(self, token, true)
    local wait = retry_after_ms(res.headers, 1000)
    self.paused_until = math.max(self.paused_until, wall_ms() + wait)
    fields.retry_after_ms = wait
    requests_total:labels(self.venue, "429"):inc()
    tlog:warn("rate limited by the venue; backing off", { venue = self.venue, retry_after_ms = wait })
    local e = code and errors.from_code(code, msg, fields) or errors.new("rate_limited", msg, fields)
    return nil, verrors.rekind(e, "rate_limited")
  end
  if status == 418 then
    breaker_record(self, token, true)
    local wait = retry_after_ms(res.headers, 120000)
    self.banned_until = wall_ms() + wait
    requests_total:labels(self.venue, "418"):inc()
    tlog:error("ALERT: the venue banned this IP (418); all requests to it are stopped until the ban ends",
      { venue = self.venue, ban_ms = wait })
    fields.until_ms, fields.retry_after_ms = self.banned_until, wait
    local e = errors.new("banned", msg, fields)
    e.code, e.name = code, code and "TOO_MANY_REQUESTS" or nil
    return nil, e
  end
  if status >= 500 then
    breaker_record(self, token, false)
    requests_total:labels(self.venue, "5xx"):inc()
    local e = code and errors.from_code(code, msg, fields) or errors.new("unavailable", msg, fields)
    -- a failed order may still exist; a failed read can simply be repeated
    if is_order then verrors.rekind(e, "unknown")
    elseif status == 503 or e.kind == "unknown" then verrors.rekind(e, "unavailable") end
    return nil, e
  end
  breaker_record(self, token, true)
  requests_total:labels(self.venue, "error"):inc()
  if code then return nil, errors.from_code(code, msg, fields) end
  return nil, errors.new((status == 401 or status == 403) and "auth" or "rejected", msg, fields)
end

--- A request with the safe retries: clock errors resync and re-sign,
-- 429s wait as told, transient failures of reads back off. Orders are never
-- retried here (see place()).
function Client:request(method, path, params, opts)
  opts = opts or {}
  local attempt = 0
  while true do
    attempt = attempt + 1
    local res, err = self:_send(method, path, params, opts)
    if res ~= nil then return res end
    if attempt >= (opts.attempts or 3) then return nil, err end
    if err.kind == "clock" and not opts.no_clock_retry then
      tlog:warn("venue clock mismatch; resyncing", { venue = self.venue, code = err.code })
      local ok, serr = self:sync_time()
      if not ok then return nil, serr end
    elseif err.kind == "rate_limited" and (err.retry_after_ms or 0) <= self.max_wait_ms then
      -- _pace waits until paused_until
    elseif err.retryable and err.kind ~= "rate_limited" and not opts.order then
      task.sleep(math.min(2000, 100 * 2 ^ attempt))
    else
      return nil, err
    end
  end
end

-- ---- market data ------------------------------------------------------------

function Client:ping() return self:request("GET", "/ping") end
function Client:server_time()
  local r, err = self:request("GET", "/time")
  return r and r.serverTime, err
end

--- Exchange info; also loads each symbol's rules and the published limits.
function Client:exchange_info()
  local info, err = self:request("GET", "/exchangeInfo")
  if not info then return nil, err end
  self.rules = {}
  for _, s in ipairs(info.symbols or {}) do self.rules[s.symbol] = filters.from_symbol(s) end
  for _, l in ipairs(info.rateLimits or {}) do
    if l.interval == "MINUTE" and (l.intervalNum or 1) == 1 then
      if l.rateLimitType == "REQUEST_WEIGHT" then self.weight_limit = l.limit end
      if l.rateLimitType == "ORDERS" then self.order_limit = l.limit end
    end
  end
  return info
end

--- The rules of a symbol (loads exchange info once).
function Client:symbol_rules(symbol)
  if not self.rules then
    local _, err = self:exchange_info()
    if err then return nil, err end
  end
  local r = self.rules[symbol]
  if not r then return nil, errors.new("invalid", ("unknown symbol %q on %s"):format(tostring(symbol), self.venue)) end
  return r
end

local function kline_row(k)
  return { open_time = k[1], open = tonumber(k[2]), high = tonumber(k[3]), low = tonumber(k[4]),
           close = tonumber(k[5]), volume = tonumber(k[6]), close_time = k[7], quote_volume = tonumber(k[8]),
           trades = k[9] }
end

--- Klines, oldest first: klines(symbol, interval, limit) for the latest, or
-- klines(symbol, interval, {start_ms =, end_ms =}) for any range (paged
-- within the venue's 1500 per request). With on_page = fn(rows) in the
-- range table each page goes to fn as it arrives (it may return nil, err to
-- stop) and nothing is kept: a download writes page by page; mark = true
-- pages the mark price's klines (/markPriceKlines) instead.
function Client:klines(symbol, interval, arg)
  local iv = INTERVAL_MS[interval]
  if not iv then return nil, errors.new("invalid", ("unknown interval %q (use 1m, 5m, 15m, 1h, 4h, 1d, …)"):format(tostring(interval))) end
  if type(arg) ~= "table" then
    local limit = arg or 500
    local rows, err = self:request("GET", "/klines", { symbol = symbol, interval = interval, limit = math.min(limit, 1500) },
      { weight = limit <= 100 and 1 or limit <= 500 and 2 or limit <= 1000 and 5 or 10 })
    if not rows then return nil, err end
    local out = {}
    for i, k in ipairs(rows) do out[i] = kline_row(k) end
    return out
  end
  local out, cursor, stop = {}, arg.start_ms, arg.end_ms or self:now()
  local path = arg.mark and "/markPriceKlines" or "/klines"
  while cursor <= stop do
    local rows, err = self:request("GET", path, { symbol = symbol, interval = interval, startTime = ("%d"):format(cursor),
      endTime = ("%d"):format(stop), limit = 1500 }, { weight = 10 })
    if not rows then return nil, err end
    if arg.on_page then
      local page = {}
      for i, k in ipairs(rows) do page[i] = kline_row(k) end
      local ok, perr = arg.on_page(page)
      if not ok then return nil, perr end
    else
      for _, k in ipairs(rows) do out[#out + 1] = kline_row(k) end
    end
    if #rows < 1500 then break end
    cursor = rows[#rows][1] + iv
  end
  return out
end

function Client:ticker(symbol) return self:request("GET", "/ticker/price", { symbol = symbol }) end
function Client:ticker_24h(symbol) return self:request("GET", "/ticker/24hr", { symbol = symbol }) end
function Client:book_ticker(symbol) return self:request("GET", "/ticker/bookTicker", { symbol = symbol }) end
function Client:depth(symbol, limit)
  return self:request("GET", "/depth", { symbol = symbol, limit = limit or 20 }, { weight = (limit or 20) <= 50 and 2 or 10 })
end
function Client:premium_index(symbol) return self:request("GET", "/premiumIndex", { symbol = symbol }) end
Client.mark_price = Client.premium_index
function Client:funding_rates(symbol, o)
  o = o or {}
  return self:request("GET", "/fundingRate", { symbol = symbol, startTime = o.start_ms, endTime = o.end_ms, limit = o.limit })
end

--- Every funding settlement of [start_ms, end_ms], oldest first, paged
-- 1000 at a time: {time_ms, rate, mark} rows, or each page to on_page(rows)
-- as it arrives (as klines does).
function Client:funding_history(symbol, o)
  local out, cursor, stop = {}, o.start_ms, o.end_ms or self:now()
  while cursor <= stop do
    local rows, err = self:request("GET", "/fundingRate", { symbol = symbol, startTime = ("%d"):format(cursor),
      endTime = ("%d"):format(stop), limit = 1000 })
    if not rows then return nil, err end
    local page = {}
    for i, r in ipairs(rows) do
      page[i] = { time_ms = tonumber(r.fundingTime), rate = r.fundingRate, mark = r.markPrice }
    end
    if o.on_page then
      local ok, perr = o.on_page(page)
      if not ok then return nil, perr end
    else
      for _, r in ipairs(page) do out[#out + 1] = r end
    end
    if #rows < 1000 then break end
    cursor = page[#page].time_ms + 1
  end
  return out
end

-- ---- account -----------------------------------------------------------------

local function signed(self, method, path, params, weight, extra)
  local opts = { signed = true, weight = weight or 1 }
  for k, v in pairs(extra or {}) do opts[k] = v end
  -- V1 keys read account data from the v2 endpoints, as Binance does
  if opts.v2 and self.prefix == "/fapi/v1" then opts.prefix = "/fapi/v2" end
  return self:request(method, path, params, opts)
end

function Client:account_info() return signed(self, "GET", "/account", nil, 5, { v2 = true }) end
function Client:balances() return signed(self, "GET", "/balance", nil, 5, { v2 = true }) end
function Client:positions(symbol) return signed(self, "GET", "/positionRisk", { symbol = symbol }, 5, { v2 = true }) end
function Client:open_orders(symbol) return signed(self, "GET", "/openOrders", { symbol = symbol }, symbol and 1 or 40) end
function Client:all_orders(symbol, o)
  o = o or {}
  return signed(self, "GET", "/allOrders", { symbol = symbol, startTime = o.start_ms, endTime = o.end_ms, limit = o.limit }, 5)
end
function Client:user_trades(symbol, o)
  o = o or {}
  return signed(self, "GET", "/userTrades", { symbol = symbol, orderId = o.order_id, startTime = o.start_ms,
                                               endTime = o.end_ms, limit = o.limit }, 5, { no_breaker = o.no_breaker })
end
function Client:income(o)
  o = o or {}
  return signed(self, "GET", "/income", { symbol = o.symbol, incomeType = o.type, startTime = o.start_ms,
                                          endTime = o.end_ms, limit = o.limit }, 30)
end
function Client:set_leverage(symbol, leverage)
  return signed(self, "POST", "/leverage", { symbol = symbol, leverage = leverage })
end
--- "ISOLATED" or "CROSSED"; "already so" (-4046) counts as success.
function Client:set_margin_type(symbol, mt)
  local r, err = signed(self, "POST", "/marginType", { symbol = symbol, marginType = mt })
  if not r and err.code == -4046 then return { code = 200, msg = err.message, unchanged = true } end
  return r, err
end
--- true for hedge mode (LONG/SHORT), false for one-way; "already so" is success.
function Client:set_position_mode(hedge)
  local r, err = signed(self, "POST", "/positionSide/dual", { dualSidePosition = hedge and "true" or "false" })
  if not r and err.code == -4059 then return { code = 200, msg = err.message, unchanged = true } end
  return r, err
end
function Client:position_mode() return signed(self, "GET", "/positionSide/dual", nil, 30) end

-- ---- orders ------------------------------------------------------------------

--- A client order id from (account, cycle, leg): see vibex.exchange.orders.
M.client_order_id = orders.client_order_id

--- Venue parameters from an order table (domain or venue names, defaults).
function Client:order_params(order) return orders.params(order, { account = self.account }) end

--- Round and check an order against the symbol's filters and the venue's
-- rules for parameters; o.quote = {mark, bid, ask} for orders without a
-- price (MIN_NOTIONAL, PERCENT_PRICE).
function Client:prepare(order, o) return orders.prepare_on(self, order, o) end

--- Look an order up by client order id (or order id). nil, err with
-- err.code == -2013 when the venue does not have it.
function Client:get_order(symbol, o)
  return signed(self, "GET", "/order", { symbol = symbol, origClientOrderId = o.client_id, orderId = o.order_id }, 1,
    { no_breaker = o.no_breaker })
end

--- After an unknown outcome: the order as the venue has it, or nil when it
-- certainly does not exist, or nil, err when that cannot be known yet.
function Client:_resolve(p)
  local got, err = self:get_order(p.symbol, { client_id = p.newClientOrderId, no_breaker = true })
  if got then return got end
  if err.code == -2013 then return nil end
  return nil, err
end

--- Place an order. Returns the venue's order, or nil, err. A rejected order
-- is not retried; an unknown outcome is resolved by client order id and the
-- order re-sent only when the venue does not have it.
--
-- "Does not have it" is only final once the request can no longer arrive:
-- a request held up in the network may still reach the matching engine
-- after a lookup said -2013. The venue refuses any request older than its
-- acceptance window (recvWindow for V1, the nonce window for V3), so before
-- re-sending we wait until that window has passed since the request was
-- signed, and look once more.
function Client:place(order, o)
  local p, err = self:prepare(order, o)
  if not p then return nil, err end
  return self:send_order(p)
end

--- Send an order prepared by prepare(), exactly as it is (the executor
-- records these parameters before it sends them). The same unknown-outcome
-- handling as place(); a third result "lookup" says the answer was lost and
-- the order found by its client id.
function Client:send_order(p)
  if p.type == "MARKET" and not p.newOrderRespType then p.newOrderRespType = "RESULT" end
  local attempts = 0
  while true do
    attempts = attempts + 1
    local signed_at = self:now()
    local res, perr = self:request("POST", "/order", p, { signed = true, order = true, timeout_ms = self.order_timeout_ms })
    if res then return res end
    if perr.kind ~= "unknown" then return nil, perr end
    tlog:warn("order outcome unknown; looking it up before anything else",
      { venue = self.venue, client_id = p.newClientOrderId, error = tostring(perr) })
    for lookup = 1, 5 do
      task.sleep(self.lookup_delay_ms * lookup)
      local found, ferr = self:_resolve(p)
      if found then return found, nil, "lookup" end
      if not ferr then break end
      if lookup == 5 then return nil, perr end
    end
    local window = (self.signer and self.signer.acceptance_ms or 5000) + self.clock_margin_ms
    local wait = signed_at + window - self:now()
    if wait > 0 then
      tlog:info("order not at the venue yet; waiting out its acceptance window before deciding",
        { client_id = p.newClientOrderId, wait_ms = math.floor(wait) })
      task.sleep(wait)
      local found, ferr = self:_resolve(p)
      if found then return found, nil, "lookup" end
      if ferr then return nil, perr end
    end
    if attempts >= self.max_unknown_attempts then return nil, perr end
    tlog:info("order not at the venue; sending it again", { client_id = p.newClientOrderId })
  end
end

--- Modify a resting LIMIT order's price/quantity (order_id or client_id).
function Client:modify(o)
  local rules, err = self:symbol_rules(o.symbol)
  if not rules then return nil, err end
  local f, ferr = rules:format({ symbol = o.symbol, side = o.side, type = "LIMIT", price = o.price,
                                 quantity = o.quantity or o.qty, reduceOnly = true })
  if not f then return nil, ferr end
  return signed(self, "PUT", "/order", { symbol = o.symbol, orderId = o.order_id, origClientOrderId = o.client_id,
                                         side = o.side, quantity = f.quantity, price = f.price }, 1, { order = true })
end

function Client:cancel(o)
  return signed(self, "DELETE", "/order", { symbol = o.symbol, orderId = o.order_id, origClientOrderId = o.client_id })
end

-- ---- streams -------------------------------------------------------------------

-- V1 keys authenticate user-stream calls with the API key header only;
-- V3 signs them like everything else.
local function user_stream_call(self, method)
  if self.signer and self.signer.kind == "v3" then return signed(self, method, "/listenKey") end
  if not self.signer then
    return nil, errors.new("auth", "the user data stream needs credentials", { venue = self.venue })
  end
  return self:request(method, "/listenKey", nil, { api_key = true })
end

--- Create (or extend) the user-data stream's listen key: key | nil, err.
function Client:listen_key()
  local r, err = user_stream_call(self, "POST")
  if not r then return nil, err end
  return r.listenKey
end
function Client:keepalive_listen_key() return user_stream_call(self, "PUT") end
function Client:close_listen_key() return user_stream_call(self, "DELETE") end

local function stream_opts(self, o)
  local opts = {}
  for k, v in pairs(o or {}) do opts[k] = v end
  opts.url = opts.url or self.ws_url
  if not opts.url then error("exchange: no WebSocket URL for this venue (pass ws_url to the client)", 3) end
  opts.client, opts.venue = self, self.venue
  return opts
end

--- Market streams with reconnect, resubscribe and gap backfill (vibex.exchange.streams).
function Client:market_stream(o) return require("vibex.exchange.streams").market(stream_opts(self, o)) end
--- The user-data stream: orders, fills, balances, positions, margin calls.
function Client:user_stream(o) return require("vibex.exchange.streams").user(stream_opts(self, o)) end

function Client:cancel_all(symbol) return signed(self, "DELETE", "/allOpenOrders", { symbol = symbol }) end

--- Place several orders (5 per request, as the venue allows). Returns a list
-- with, per order, the venue's order or {error = err}. Unknown outcomes are
-- resolved per order by client order id, as in place().
function Client:place_batch(orders)
  local out, prepared = {}, {}
  for i, o in ipairs(orders) do
    local p, err = self:prepare(o)
    if p then prepared[#prepared + 1] = { i = i, p = p } else out[i] = { error = err } end
  end
  for first = 1, #prepared, 5 do
    local chunk, items = {}, {}
    for j = first, math.min(first + 4, #prepared) do
      items[#items + 1] = prepared[j]
      chunk[#chunk + 1] = prepared[j].p
    end
    local res, err = self:request("POST", "/batchOrders", { batchOrders = json.encode(chunk) },
      { signed = true, order = true, weight = 5, timeout_ms = self.order_timeout_ms })
    for k, it in ipairs(items) do
      local r = res and res[k]
      if r and r.code and r.code ~= 200 then
        out[it.i] = { error = errors.from_code(r.code, r.msg, { venue = self.venue }) }
      elseif r then
        out[it.i] = r
      elseif err.kind == "unknown" then
        task.sleep(self.lookup_delay_ms)
        local found, ferr = self:_resolve(it.p)
        if found then out[it.i] = found
        elseif ferr then out[it.i] = { error = err }
        else
          local again, aerr = self:place(it.p)
          out[it.i] = again or { error = aerr }
        end
      else
        out[it.i] = { error = err }
      end
    end
  end
  return out
end

M.Client = Client

return M
