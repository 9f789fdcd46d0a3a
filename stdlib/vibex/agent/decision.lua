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
-- ("buy", "long", "sell", "exit", "wait", …). Everything else is rejected
-- with a reason. ctx: {symbols = {SYM = {price = n}}, positions = {SYM =
-- {side = "long" | "short", qty = n}}, free_margin = n, max_leverage = n}.
local json = require "vibex.json"

local M = {}

M.ACTIONS = { open_long = true, open_short = true, close = true, hold = true, adjust = true }

local SYNONYMS = {
  buy = "open_long", long = "open_long", go_long = "open_long", enter_long = "open_long", open_buy = "open_long",
  sell = "open_short", short = "open_short", go_short = "open_short", enter_short = "open_short", open_sell = "open_short",
  exit = "close", close_position = "close", close_long = "close", close_short = "close", flatten = "close",
  wait = "hold", none = "hold", no_action = "hold", nothing = "hold", keep = "hold",
  adjust_stop = "adjust", adjust_target = "adjust", adjust_exit = "adjust", update = "adjust", modify = "adjust",
}

local SIZE_KEYS = { "size_usd", "notional", "notional_usd", "size", "usd", "position_size_usd", "amount_usd" }
local QTY_KEYS = { "quantity", "qty" }
local MAX_TEXT = 2000

-- ---- finding the JSON in an answer ----------------------------------------------------------

-- The end of the balanced JSON value starting at i (strings respected), or nil.
local function balanced_end(s, i)
  local depth, in_str, esc = 0, false, false
  for j = i, #s do
    local c = s:sub(j, j)
    if in_str then
      if esc then esc = false elseif c == "\\" then esc = true elseif c == '"' then in_str = false end
    elseif c == '"' then in_str = true
    elseif c == "{" or c == "[" then depth = depth + 1
    elseif c == "}" or c == "]" then
      depth = depth - 1
      if depth == 0 then return j end
    end
  end
end

local function try_decode(s)
  local ok, v = pcall(json.decode, s)
  if ok and type(v) == "table" then return v end
end

--- The JSON value in a model's answer: the whole text, a ``` fence, or the
-- first balanced {…} / […] in prose. Returns value | nil, reason.
function M.extract(text)
  if type(text) ~= "string" or text:match("^%s*$") then return nil, "the answer is empty" end
  local v = try_decode(text)
  if v then return v end
  for body in text:gmatch("```[%w_-]*%s*\n?(.-)```") do
    v = try_decode(body)
    if v then return v end
  end
  local i = 1
  while true do
    local s = text:find("[%[{]", i)
    if not s then break end
    local e = balanced_end(text, s)
    if e then
      v = try_decode(text:sub(s, e))
      if v then return v end
    end
    i = s + 1
  end
  return nil, "no JSON object found in the answer"
end

-- ---- the shape: where the decisions are ------------------------------------------------------

local function is_list(t) return type(t) == "table" and (#t > 0 or next(t) == nil) end

local function looks_like_decision(t) return type(t) == "table" and (t.symbol ~= nil or t.action ~= nil) end

--- The list of raw decisions in a decoded answer | nil, reason.
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
  -- {"BTCUSDT": {...}, ...}
  local out = {}
  for k, x in pairs(v) do
    if type(k) ~= "string" or type(x) ~= "table" or not (symbols and symbols[k:upper()]) then
      return nil, "no \"decisions\" list in the answer"
    end
    local c = {}
    for kk, vv in pairs(x) do c[kk] = vv end
    c.symbol = c.symbol or k
    out[#out + 1] = c
  end
  if #out == 0 then return nil, "no \"decisions\" list in the answer" end
  table.sort(out, function(a, b) return tostring(a.symbol) < tostring(b.symbol) end)
  return out, "decisions keyed by symbol"
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
  local s = x:gsub("^%s+", ""):gsub("%s+$", ""):gsub("^%$", ""):gsub("(%d),(%d%d%d)", "%1%2")
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

local function check_open(d, raw, ctx, price, notes)
  local sk, qk = first_key(raw, SIZE_KEYS), first_key(raw, QTY_KEYS)
  if not sk and not qk then return "an open needs size_usd (or quantity)" end
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
  local bad = check_exits(d, d.action == "open_long" and "long" or "short", price)
  if bad then return bad end
  if ctx.free_margin and notional / d.leverage > ctx.free_margin then
    return ("size %.2f USD at %sx needs %.2f margin, above the free margin %.2f"):format(notional, d.leverage,
      notional / d.leverage, ctx.free_margin)
  end
end

local function normalise(raw, ctx, notes)
  if type(raw) ~= "table" then return nil, "a decision must be an object" end
  local symbol = raw.symbol or raw.coin or raw.asset
  if type(symbol) ~= "string" or symbol == "" then return nil, "missing symbol" end
  symbol = symbol:gsub("%s", ""):upper()
  local sym = ctx.symbols[symbol]
  if not sym then return nil, ("unknown symbol %q"):format(symbol:sub(1, 40)), symbol end
  local action = raw.action or raw.signal or raw.decision
  if type(action) ~= "string" then return nil, "missing action", symbol end
  local a = action:lower():gsub("[%s%-]+", "_")
  if SYNONYMS[a] then notes.synonyms = true; a = SYNONYMS[a] end
  if not M.ACTIONS[a] then return nil, ("unknown action %q"):format(action:sub(1, 40)), symbol end
  local d = { symbol = symbol, action = a, rationale = text_field(raw.rationale or raw.reasoning or raw.reason),
              invalidation = text_field(raw.invalidation or raw.invalidation_condition) }
  for _, f in ipairs { { "leverage" }, { "stop_loss", "stop", "sl" }, { "take_profit", "target", "tp", "profit_target" },
                       { "confidence" } } do
    local key = first_key(raw, f) or f[1]
    local ok, n = opt_number(raw, key, notes)
    if not ok then return nil, n, symbol end
    d[f[1]] = n
  end
  if d.confidence and (d.confidence < 0 or d.confidence > 1) then
    return nil, ("confidence %s is outside 0..1"):format(d.confidence), symbol
  end
  for _, k in ipairs { "stop_loss", "take_profit" } do
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
    local bad = price and check_exits(d, pos.side, price)
    if bad then return nil, bad, symbol end
  end
  return d
end

--- Validate raw decisions against ctx. Returns {decisions, rejected}.
function M.validate(list, ctx, notes)
  notes = notes or {}
  local out, rejected, seen = {}, {}, {}
  local max = 2 * math.max(1, ctx.nsymbols or 0) + 2
  for i, raw in ipairs(list) do
    local d, reason, symbol = normalise(raw, ctx, notes)
    if d and seen[d.symbol] then d, reason, symbol = nil, "a second decision for " .. d.symbol, d.symbol end
    if d and i > max then d, reason = nil, ("more than %d decisions"):format(max) end
    if d then
      seen[d.symbol] = true
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
  local list, how = M.shape(v, ctx.symbols)
  if not list then return { ok = false, reason = how, decisions = {}, rejected = {}, notes = {} } end
  local flags = {}
  local res = M.validate(list, ctx, flags)
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

--- The schema as text, for prompts and repair requests.
M.SCHEMA_TEXT = [[{"decisions": [{"symbol": "BTCUSDT", "action": "open_long|open_short|close|hold|adjust",
  "size_usd": 250, "leverage": 2, "stop_loss": 0, "take_profit": 0,
  "invalidation": "what would prove this wrong", "confidence": 0.0-1.0, "rationale": "one or two sentences"}]}]]

return M
