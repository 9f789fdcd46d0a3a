--- vibex.agent.decision — the decision schema, and turning what a model
-- really writes into decisions (or a reason why not).
--
--   local res = decision.read(text, ctx)
--   -- res.ok: the answer parsed; res.decisions: the valid ones, normalised;
--   -- res.rejected: {{decision = raw, symbol = …, reason = "…"}}; res.reason when not ok;
--   -- res.notes: what was accepted only after being repaired ("numbers as strings", …)
--
-- A decision, normalised:
--   {symbol = "BTCUSDT", action = "open_long" | "open_short" | "close" | "hold" | "adjust",
--    size_usd = 500 | quantity = 0.01 (opens), leverage = 3, stop_loss = 95000,
--    take_profit = 105000, invalidation = "…", confidence = 0.7, rationale = "…"}
--
-- Accepted forms: a JSON object {"decisions": [...]}, a bare list, a single
-- decision object, a map {SYMBOL: {...}}; inside prose or a ``` fence;
-- numbers as strings ("1,200", "$500", " 7 "); common action synonyms
-- ("buy", "long", "sell", "exit", "wait", …). The Alpha-Arena vocabulary is
-- an input format too: {"coin": "BTC", "signal": "buy_to_enter" |
-- "sell_to_enter" | "hold" | "close", "quantity": coin units, "leverage",
-- "profit_target", "stop_loss", "invalidation_condition", "confidence",
-- "risk_usd", "justification"}, in a list or keyed by coin (with or
-- without "trade_signal_args"). Everything else is rejected with a reason.
--
-- The reading only ever narrows: an answer whose JSON container is cut off
-- is never mined for the complete objects inside it (it gets the repair
-- round); two decisions naming one symbol void every decision for it; a
-- stop must lie between the price and the liquidation price at the
-- decision's leverage, within ctx.max_stop_distance_pct; a risk_usd must
-- cover the loss at the stop. Every scan is linear in the answer's length.
--
-- ctx: {symbols = {SYM = {price = n}}, positions = {SYM = {side = "long" |
-- "short", qty = n, liquidation_price = n}}, free_margin = n, max_leverage
-- = n, max_stop_distance_pct = n (default 15), maintenance_margin = n
-- (fraction, default 0.005)}.
local json = require "vibex.json"

local M = {}

M.ACTIONS = { open_long = true, open_short = true, close = true, hold = true, adjust = true }

local SYNONYMS = {
  buy = "open_long", long = "open_long", go_long = "open_long", enter_long = "open_long", open_buy = "open_long",
  sell = "open_short", short = "open_short", go_short = "open_short", enter_short = "open_short", open_sell = "open_short",
  exit = "close", close_position = "close", close_long = "close", close_short = "close", flatten = "close",
  buy_to_enter = "open_long", sell_to_enter = "open_short", -- Alpha Arena
  wait = "hold", none = "hold", no_action = "hold", nothing = "hold", keep = "hold",
  adjust_stop = "adjust", adjust_target = "adjust", adjust_exit = "adjust", update = "adjust", modify = "adjust",
}

local SIZE_KEYS = { "size_usd", "notional", "notional_usd", "size", "usd", "position_size_usd", "amount_usd" }
local QTY_KEYS = { "quantity", "qty" }
local MAX_TEXT = 2000

-- ---- finding the JSON in an answer ----------------------------------------------------------

local function is_space(b) return b == 32 or (b >= 9 and b <= 13) end

--- s without leading and trailing whitespace (linear, whatever s holds).
local function trim(s)
  local i, j = 1, #s
  while i <= j and is_space(s:byte(i)) do i = i + 1 end
  while j >= i and is_space(s:byte(j)) do j = j - 1 end
  if i == 1 and j == #s then return s end
  return s:sub(i, j)
end
M.trim = trim

-- The end of the balanced JSON value starting at i (strings and escapes
-- respected), or nil when it never closes. Jumps between the characters
-- that matter, so it is linear.
local function balanced_end(s, i)
  local depth, j = 0, i
  while true do
    local k = s:find('[{}%[%]"]', j)
    if not k then return nil end
    local c = s:byte(k)
    if c == 34 then
      local m = k + 1
      while true do
        local q = s:find('["\\]', m)
        if not q then return nil end
        if s:byte(q) == 92 then m = q + 2 else k = q; break end
      end
    elseif c == 123 or c == 91 then
      depth = depth + 1
    else
      depth = depth - 1
      if depth == 0 then return k end
    end
    j = k + 1
  end
end

local function try_decode(s)
  local ok, v = pcall(json.decode, s)
  if ok and type(v) == "table" then return v end
end

-- the bodies of ``` fences, paired in order (a language tag is dropped)
local function fences(text)
  local marks, p = {}, 1
  while true do
    local a = text:find("```", p, true)
    if not a then break end
    marks[#marks + 1] = a
    p = a + 3
  end
  local bodies = {}
  for i = 1, #marks - 1, 2 do
    local body = text:sub(marks[i] + 3, marks[i + 1] - 1)
    local tag_end = body:find("[^%w_%-]") or (#body + 1)
    bodies[#bodies + 1] = trim(body:sub(tag_end))
  end
  return bodies
end

M.INCOMPLETE = "the answer's JSON is incomplete (cut off?): a { or [ is never closed"

--- The JSON value in a model's answer: the whole text, a ``` fence, or the
-- first balanced {…} / […] in prose. A container anywhere in the text that
-- never closes ends the reading: what is inside or after it is not an
-- answer. Returns value | nil, reason.
function M.extract(text)
  if type(text) ~= "string" then return nil, "the answer is empty" end
  text = trim(text)
  if text == "" then return nil, "the answer is empty" end
  local v = try_decode(text)
  if v then return v end
  -- the top-level containers, in order (one linear pass)
  local spans, i = {}, 1
  while true do
    local s = text:find("[%[{]", i)
    if not s then break end
    local e = balanced_end(text, s)
    if not e then return nil, M.INCOMPLETE end
    spans[#spans + 1] = { s, e }
    i = e + 1
  end
  for _, body in ipairs(fences(text)) do
    v = try_decode(body)
    if v then return v end
  end
  for _, sp in ipairs(spans) do
    v = try_decode(text:sub(sp[1], sp[2]))
    if v then return v end
  end
  return nil, "no JSON object found in the answer"
end

-- ---- the shape: where the decisions are ------------------------------------------------------

local function is_list(t) return type(t) == "table" and (#t > 0 or next(t) == nil) end

local function looks_like_decision(t)
  return type(t) == "table" and (t.symbol ~= nil or t.action ~= nil or t.coin ~= nil or t.signal ~= nil)
end

-- SYMBOL for a name the answer used ("btcusdt", "BTC" when BTCUSDT is traded), or nil
local function resolve(name, symbols)
  if type(name) ~= "string" then return nil end
  local s = trim(name):gsub("%s", ""):upper()
  if symbols[s] then return s end
  if s ~= "" and symbols[s .. "USDT"] then return s .. "USDT" end
  return nil, s
end
M.resolve_symbol = resolve

--- The list of raw decisions in a decoded answer | nil, reason. A third
--- value maps each decision of a {SYMBOL: {...}} answer to its key.
function M.shape(v, symbols)
  if type(v) ~= "table" then return nil, "the answer is not a JSON object or list" end
  local d = v.decisions or v.decision or v.actions or v.trades
  if d ~= nil then
    if looks_like_decision(d) then return { d }, "a single decision object instead of a list" end
    if is_list(d) then return d end
    return nil, "\"decisions\" is neither a list nor a decision object"
  end
  if looks_like_decision(v) then return { v }, "a single decision object instead of a list" end
  if is_list(v) then return v end
  -- {"BTCUSDT": {...}, ...}, or Alpha Arena's {"BTC": {"trade_signal_args": {...}}}
  local out, keys = {}, {}
  for k, x in pairs(v) do
    if type(k) ~= "string" or type(x) ~= "table" or not (symbols and resolve(k, symbols)) then
      return nil, "no \"decisions\" list in the answer"
    end
    if type(x.trade_signal_args) == "table" then x = x.trade_signal_args end
    local c = {}
    for kk, vv in pairs(x) do c[kk] = vv end
    if c.symbol == nil and c.coin == nil then c.symbol = k end
    keys[c] = k
    out[#out + 1] = c
  end
  if #out == 0 then return nil, "no \"decisions\" list in the answer" end
  table.sort(out, function(a, b) return tostring(keys[a]) < tostring(keys[b]) end)
  return out, "decisions keyed by symbol", keys
end

-- ---- fields -----------------------------------------------------------------------------------

local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end

--- A number from a number or a numeric string ("1,200.5", "$500", " 7 ").
-- Returns n, was_string | nil.
function M.number(x)
  if type(x) == "number" then
    if finite(x) then return x end
    return nil
  end
  if type(x) ~= "string" then return nil end
  local s = trim(x):gsub("^%$", ""):gsub("(%d),(%d%d%d)", "%1%2")
  if not s:match("^[-+]?%d*%.?%d+$") and not s:match("^[-+]?%d+%.?%d*[eE][-+]?%d+$") and not s:match("^[-+]?%d+%.$") then
    return nil
  end
  local n = tonumber(s)
  if n and finite(n) then return n, true end
end

local function text_field(x)
  if x == nil or x == json.null then return nil end
  if type(x) ~= "string" then x = tostring(x) end
  if #x > MAX_TEXT then x = x:sub(1, MAX_TEXT) .. "…" end
  return x
end

local function opt_number(raw, key, notes)
  local x = raw[key]
  if x == nil or x == json.null then return true, nil end
  local n, was_string = M.number(x)
  if not n then return false, ("%s is not a finite number (%s)"):format(key, type(x) == "string" and ("%q"):format(x:sub(1, 40)) or type(x)) end
  if was_string then notes.strings = true end
  return true, n
end

local function first_key(raw, keys)
  for _, k in ipairs(keys) do
    if raw[k] ~= nil and raw[k] ~= json.null then return k end
  end
end

-- ---- one decision ---------------------------------------------------------------------------------

local function check_exits(d, side, price)
  if side == "long" then
    if d.stop_loss and d.stop_loss >= price then
      return ("stop_loss %s is not below the price %s for a long"):format(d.stop_loss, price)
    end
    if d.take_profit and d.take_profit <= price then
      return ("take_profit %s is not above the price %s for a long"):format(d.take_profit, price)
    end
  else
    if d.stop_loss and d.stop_loss <= price then
      return ("stop_loss %s is not above the price %s for a short"):format(d.stop_loss, price)
    end
    if d.take_profit and d.take_profit >= price then
      return ("take_profit %s is not below the price %s for a short"):format(d.take_profit, price)
    end
  end
end

M.DEFAULT_MAX_STOP_PCT = 15
M.DEFAULT_MAINTENANCE_MARGIN = 0.005

-- A stop is a stop only between the price and the liquidation price, and
-- within the account's max distance. liq: a known liquidation price (an
-- open position), else the one a new position at `leverage` would have.
local function check_stop_distance(d, side, price, leverage, ctx, liq)
  if not d.stop_loss then return nil end
  local dist = math.abs(price - d.stop_loss) / price
  local max_pct = ctx.max_stop_distance_pct or M.DEFAULT_MAX_STOP_PCT
  if dist * 100 > max_pct then
    return ("stop_loss %s is %.2f%% from the price %s, beyond the allowed %s%% (risk.max_stop_distance_pct)")
      :format(d.stop_loss, dist * 100, price, max_pct)
  end
  if not liq and leverage then
    local room = 1 / leverage - (ctx.maintenance_margin or M.DEFAULT_MAINTENANCE_MARGIN)
    liq = side == "long" and price * (1 - room) or price * (1 + room)
  end
  if liq and ((side == "long" and d.stop_loss <= liq) or (side == "short" and d.stop_loss >= liq)) then
    return ("stop_loss %s lies beyond the liquidation price (about %.6g at %sx): it would never trigger")
      :format(d.stop_loss, liq, leverage or "the position's ")
  end
end

local function check_open(d, raw, ctx, price, notes)
  local sk, qk = first_key(raw, SIZE_KEYS), first_key(raw, QTY_KEYS)
  if not sk and not qk then return "an open needs size_usd (or quantity)" end
  if sk and qk then return ("both %s and %s are given: one size, please"):format(sk, qk) end
  local ok, n = opt_number(raw, sk or qk, notes)
  if not ok then return n end
  if n <= 0 then return ("%s must be positive, found %s"):format(sk or qk, n) end
  if sk then d.size_usd = n else d.quantity = n end
  local notional = d.size_usd or n * price
  if d.leverage == nil then d.leverage = 1 end
  if d.leverage < 1 or d.leverage > (ctx.max_leverage or 125) then
    return ("leverage %s is outside 1..%s"):format(d.leverage, ctx.max_leverage or 125)
  end
  if d.stop_loss == nil then return "an open needs a stop_loss" end
  if d.confidence == nil then return "an open needs a confidence between 0 and 1" end
  if ctx.free_margin and notional / d.leverage > ctx.free_margin then
    return ("size %.2f USD at %sx needs %.2f margin, above the free margin %.2f"):format(notional, d.leverage,
      notional / d.leverage, ctx.free_margin)
  end
  local side = d.action == "open_long" and "long" or "short"
  local bad = check_exits(d, side, price) or check_stop_distance(d, side, price, d.leverage, ctx)
  if bad then return bad end
  if d.risk_usd then
    local loss = notional / price * math.abs(price - d.stop_loss)
    if loss > d.risk_usd * 1.1 + 0.01 then
      return ("risk_usd %s understates the loss at the stop (%.2f USD)"):format(d.risk_usd, loss)
    end
  end
end

local NUMBER_FIELDS = { { "leverage" }, { "stop_loss", "stop", "sl" }, { "take_profit", "target", "tp", "profit_target" },
                        { "confidence" }, { "risk_usd" } }

local function normalise(raw, ctx, notes, symbol)
  local action = raw.action or raw.signal or raw.decision
  if type(action) ~= "string" then return nil, "missing action", symbol end
  local a = trim(action):lower():gsub("[%s%-]+", "_")
  if SYNONYMS[a] then notes.synonyms = true; a = SYNONYMS[a] end
  if not M.ACTIONS[a] then return nil, ("unknown action %q"):format(action:sub(1, 40)), symbol end
  local sym = ctx.symbols[symbol]
  local d = { symbol = symbol, action = a,
              rationale = text_field(raw.rationale or raw.reasoning or raw.reason or raw.justification),
              invalidation = text_field(raw.invalidation or raw.invalidation_condition) }
  for _, f in ipairs(NUMBER_FIELDS) do
    local key = first_key(raw, f) or f[1]
    local ok, n = opt_number(raw, key, notes)
    if not ok then return nil, n, symbol end
    d[f[1]] = n
  end
  if d.confidence and (d.confidence < 0 or d.confidence > 1) then
    return nil, ("confidence %s is outside 0..1"):format(d.confidence), symbol
  end
  for _, k in ipairs { "stop_loss", "take_profit", "risk_usd" } do
    if d[k] and d[k] <= 0 then return nil, ("%s must be positive, found %s"):format(k, d[k]), symbol end
  end
  local price = sym.price
  local pos = ctx.positions and ctx.positions[symbol]
  if a == "open_long" or a == "open_short" then
    if not price or price <= 0 then return nil, "no price for " .. symbol, symbol end
    local bad = check_open(d, raw, ctx, price, notes)
    if bad then return nil, bad, symbol end
  elseif a == "close" then
    if not pos then return nil, "close: no open position in " .. symbol, symbol end
  elseif a == "adjust" then
    if not pos then return nil, "adjust: no open position in " .. symbol, symbol end
    if not d.stop_loss and not d.take_profit then return nil, "adjust needs a stop_loss or a take_profit", symbol end
    local liq = tonumber(pos.liquidation_price)
    local bad = price and (check_exits(d, pos.side, price) or
      check_stop_distance(d, pos.side, price, tonumber(pos.leverage), ctx, liq and liq > 0 and liq or nil))
    if bad then return nil, bad, symbol end
  end
  return d
end

--- Validate raw decisions against ctx. Returns {decisions, rejected}.
--- keys: for an answer keyed by symbol, raw decision -> the key it came under.
function M.validate(list, ctx, notes, keys)
  notes = notes or {}
  local out, rejected = {}, {}
  local max = 2 * math.max(1, ctx.nsymbols or 0) + 2
  -- which symbol each decision names, first: a symbol named twice voids every decision for it
  local named, count = {}, {}
  for i, raw in ipairs(list) do
    if type(raw) == "table" then
      local name = raw.symbol or raw.coin or raw.asset
      local sym, shown = resolve(name, ctx.symbols)
      local key = keys and keys[raw]
      if key and sym and resolve(key, ctx.symbols) ~= sym then
        named[i] = { err = ("keyed by %q but names %s"):format(key:sub(1, 40), sym), sym = sym }
      elseif type(name) ~= "string" or (shown or sym) == "" then
        named[i] = { err = "missing symbol" }
      elseif not sym then
        named[i] = { err = ("unknown symbol %q"):format(shown:sub(1, 40)), sym = shown }
      else
        named[i] = { sym = sym }
      end
      local k = named[i].sym
      if k then count[k] = (count[k] or 0) + 1 end
    else
      named[i] = { err = "a decision must be an object" }
    end
  end
  for i, raw in ipairs(list) do
    local n = named[i]
    local d, reason, symbol
    if n.err then
      reason, symbol = n.err, n.sym
    elseif count[n.sym] > 1 then
      reason, symbol = ("%d decisions for %s: all of them are void"):format(count[n.sym], n.sym), n.sym
    elseif i > max then
      reason, symbol = ("more than %d decisions"):format(max), n.sym
    else
      d, reason, symbol = normalise(raw, ctx, notes, n.sym)
    end
    if d then
      out[#out + 1] = d
    else
      rejected[#rejected + 1] = { index = i, symbol = symbol, reason = reason }
    end
  end
  return { decisions = out, rejected = rejected }
end

--- Read a model's answer: extract, shape and validate. Returns a table:
-- ok (parsed into a decision list), decisions, rejected, notes (list of
-- forms accepted after repair), reason (why nothing could be used).
function M.read(text, ctx)
  local v, err = M.extract(text)
  if not v then return { ok = false, reason = err, decisions = {}, rejected = {}, notes = {} } end
  local list, how, keys = M.shape(v, ctx.symbols)
  if not list then return { ok = false, reason = how, decisions = {}, rejected = {}, notes = {} } end
  local flags = {}
  local res = M.validate(list, ctx, flags, keys)
  local notes = {}
  if how then notes[#notes + 1] = how end
  if flags.strings then notes[#notes + 1] = "numbers as strings" end
  if flags.synonyms then notes[#notes + 1] = "action synonyms" end
  res.notes, res.ok = notes, true
  if #res.decisions == 0 and #res.rejected > 0 then
    res.reason = "no valid decision: " .. res.rejected[1].reason
  end
  return res
end

M.RAW_CAP = 256 * 1024

--- What is stored of a raw answer: all of it up to RAW_CAP bytes; past
--- that the first RAW_CAP bytes and a line with the full length and its
--- SHA-256. Returns text, {bytes, sha256} (the second only when cut).
function M.cap_raw(text)
  if type(text) ~= "string" or #text <= M.RAW_CAP then return text end
  local digest = require("vibex.crypto").sha256(text)
  return text:sub(1, M.RAW_CAP) .. ("\n[answer cut at %d of %d bytes; sha256 %s]"):format(M.RAW_CAP, #text, digest),
    { bytes = #text, sha256 = digest }
end

--- The schema as text, for prompts and repair requests.
M.SCHEMA_TEXT = [[{"decisions": [{"symbol": "BTCUSDT", "action": "open_long|open_short|close|hold|adjust",
  "size_usd": 250, "leverage": 2, "stop_loss": 0, "take_profit": 0,
  "invalidation": "what would prove this wrong", "confidence": 0.0-1.0, "rationale": "one or two sentences"}]}]]

return M
