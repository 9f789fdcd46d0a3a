--- vibex.data — candles from where they live: files in freqtrade's JSON
-- layout (`[t, o, h, l, c, v]` rows, as in ../shared/data), and generated
-- series for demos and tests (deterministic: the same seed and symbol give
-- the same candles on every machine).
--
--   local rows = assert(data.read_ohlcv("XRP_USDT_USDT-5m-futures.json"))
--   local gen = data.generate("BTCUSDT", paper.spec("BTCUSDT"), 2000, 300000, time.date_ms("2026-01-01"), 7)
local errors = require "vibex.errors"
local json = require "vibex.json"
local paper = require "vibex.exchange.paper"
local time = require "vibex.time"

local M = {}

--- Candles from a JSON file of [open_time_ms, open, high, low, close, volume]
-- rows (the freqtrade/ccxt layout): a list of replay rows | nil, err.
-- Funding files of that layout carry the rate in the open column: pass
-- funding = true to get {time_ms, rate} entries instead.
---@param path string
---@param o table|nil funding = true: {time_ms, rate} entries
---@return table|nil rows
---@return vibex.Error|nil err
function M.read_ohlcv(path, o)
  local f, ferr = io.open(path, "rb")
  if not f then return nil, errors.new("storage", ferr, { source = "data" }) end
  local text = f:read("*a")
  f:close()
  local rows, err = json.decode(text)
  if type(rows) ~= "table" then return nil, errors.new("invalid", ("%s: %s"):format(path, err or "not a JSON array"), { source = "data" }) end
  local out = {}
  for i, r in ipairs(rows) do
    if type(r) ~= "table" or type(r[1]) ~= "number" then
      return nil, errors.new("invalid", ("%s: row %d is not [open_time_ms, open, high, low, close, volume]"):format(path, i), { source = "data" })
    end
    if o and o.funding then
      out[i] = { time_ms = r[1], rate = r[2] }
    else
      out[i] = { open_time = r[1], open = r[2], high = r[3], low = r[4], close = r[5], volume = r[6] }
    end
  end
  return out
end

--- Candles from a CSV file: a header naming the columns (open_time or
--- date or timestamp, open, high, low, close, volume; any order, other
--- columns ignored), times in epoch milliseconds or seconds or as ISO
--- "YYYY-MM-DD[ HH:MM[:SS]]" UTC. A list of rows | nil, err naming the line.
---@param path string
---@return table|nil rows
---@return vibex.Error|nil err
function M.read_csv(path)
  local f, ferr = io.open(path, "rb")
  if not f then return nil, errors.new("storage", ferr, { source = "data" }) end
  local text = f:read("*a")
  f:close()
  local out, cols, n = {}, nil, 0
  local function bad(line, why)
    return nil, errors.new("invalid", ("%s:%d: %s"):format(path, line, why), { source = "data" })
  end
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = line:gsub("\r$", "")
    if line:match("%S") then
      local fields = {}
      for v in (line .. ","):gmatch("%s*([^,]*),") do fields[#fields + 1] = (v:gsub("%s+$", ""):gsub('^"(.*)"$', "%1")) end
      if not cols then
        cols = {}
        for i, name in ipairs(fields) do cols[name:lower()] = i end
        cols.open_time = cols.open_time or cols.date or cols.timestamp or cols.time
        for _, need in ipairs { "open_time", "open", "high", "low", "close" } do
          if not cols[need] then return bad(n, ("the header has no %s column (want open_time|date, open, high, low, close, volume)"):format(need)) end
        end
      else
        local t = M.parse_time(fields[cols.open_time])
        if not t then return bad(n, ("%q is not a time (epoch ms or s, or YYYY-MM-DD HH:MM:SS)"):format(tostring(fields[cols.open_time]))) end
        local row = { open_time = t }
        for _, k in ipairs { "open", "high", "low", "close", "volume" } do
          local v = cols[k] and tonumber(fields[cols[k]])
          if cols[k] and not v then return bad(n, ("%s %q is not a number"):format(k, tostring(fields[cols[k]]))) end
          row[k] = v or 0
        end
        out[#out + 1] = row
      end
    end
  end
  if not cols then return bad(1, "empty file") end
  return out
end

--- A time as epoch milliseconds: epoch ms, epoch seconds (10 digits or
--- fewer), or "YYYY-MM-DD[ HH:MM[:SS]]" / "YYYY-MM-DDTHH:MM:SSZ" in UTC; nil otherwise.
---@param s string|number
---@return number|nil ms
function M.parse_time(s)
  if type(s) == "number" then return s < 1e11 and s * 1000 or s end
  s = tostring(s or "")
  if s:match("^%d+$") then
    local v = tonumber(s)
    return #s <= 10 and v * 1000 or v
  end
  local d, hh, mm, ss = s:match("^(%d%d%d%d%-%d%d%-%d%d)[T ]?(%d?%d?):?(%d?%d?):?(%d?%d?)")
  local day = d and time.date_ms(d)
  if not day then return nil end
  return day + (tonumber(hh) or 0) * 3600000 + (tonumber(mm) or 0) * 60000 + (tonumber(ss) or 0) * 1000
end

--- Candles from a file, by its extension: .json (freqtrade's layout) or .csv.
---@param path string
---@return table|nil rows
---@return vibex.Error|nil err
function M.read(path)
  if path:lower():match("%.csv$") then return M.read_csv(path) end
  return M.read_ohlcv(path)
end

--- The symbol and interval a freqtrade file name carries
--- ("XRP_USDT_USDT-5m-futures.json" -> "XRPUSDT", "5m"); nil when it has none.
---@param path string
---@return string|nil symbol
---@return string|nil interval
function M.name_of(path)
  local base = path:match("([^/]*)$"):gsub("%.%w+$", "")
  local pair, iv = base:match("^([%u%d]+_[%u%d]+)[_%u%d]*%-(%d+[mhdwM])")
  if not pair then return nil end
  return (pair:gsub("_", "")), iv
end

-- ---- generated candles ---------------------------------------------------------------------------

local BASE_PRICE = { BTCUSDT = 65000, ETHUSDT = 3200, XRPUSDT = 0.6, SOLUSDT = 150, BNBUSDT = 600, DOGEUSDT = 0.15 }

-- A small deterministic generator (xorshift32): the same seed and symbol
-- give the same candles on every machine.
local function rng(seed)
  local x = seed % 4294967296
  if x == 0 then x = 2463534242 end
  return function()
    x = bit.bxor(x, bit.lshift(x, 13)); x = bit.bxor(x, bit.rshift(x, 17)); x = bit.bxor(x, bit.lshift(x, 5))
    return (x % 4294967296) / 4294967296
  end
end

local function normal(r)
  local u1, u2 = r(), r()
  if u1 < 1e-12 then u1 = 1e-12 end
  return math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)
end

local function decimals(tick)
  local frac = tostring(tick):match("%.(%d+)$")
  return frac and #frac or 0
end

--- n candles of interval_ms for a symbol from a seed: a random walk with
-- trending regimes (so trend-followers have something to follow) at
-- roughly 0.25% volatility per 5 minutes. Prices are decimal strings on
-- the symbol's tick.
---@param symbol string
---@param spec table the symbol's venue spec (tick)
---@param n integer candles
---@param interval_ms number
---@param start_ms number
---@param seed integer
---@return table rows
function M.generate(symbol, spec, n, interval_ms, start_ms, seed, into)
  local h = seed
  for i = 1, #symbol do h = (h * 31 + symbol:byte(i)) % 2147483647 end
  local r = rng(h + 1)
  local d = decimals(spec.tick)
  local fmt = "%." .. d .. "f"
  local price = BASE_PRICE[symbol] or 100
  local vol = 0.0025 * math.sqrt(interval_ms / 300000)
  local drift, left = 0, 0
  local rows = {}
  for i = 1, n do
    if left <= 0 then
      left = 50 + math.floor(r() * 250)
      drift = (r() - 0.5) * vol * 0.6
    end
    left = left - 1
    local o = price
    local hi, lo = o, o
    local p = o
    for _ = 1, 4 do
      p = p * math.exp(drift / 4 + vol / 2 * normal(r))
      if p > hi then hi = p end
      if p < lo then lo = p end
    end
    price = p
    if into then -- compact columns (vibex.data.columns), no row tables
      into:push(start_ms + (i - 1) * interval_ms, fmt:format(o), fmt:format(hi), fmt:format(lo), fmt:format(p),
        ("%.3f"):format(100 + r() * 900))
    else
      rows[i] = { open_time = start_ms + (i - 1) * interval_ms, open = fmt:format(o), high = fmt:format(hi),
                  low = fmt:format(lo), close = fmt:format(p), volume = ("%.3f"):format(100 + r() * 900) }
    end
  end
  return into or rows
end

--- Candles per symbol: from replay.files, else generated, as compact
-- columns (vibex.data.columns). Returns {SYM = columns}, the interval | nil, err.
---@param rc table the replay section (interval, files, candles, start, seed)
---@param symbols string[]
---@return table|nil data {SYMBOL = rows}
---@return string|vibex.Error interval_or_err
function M.load(rc, symbols)
  local columns = require "vibex.data.columns"
  local iv = rc.interval or "5m"
  local ms = time.INTERVAL_MS[iv]
  local data = {}
  for _, sym in ipairs(symbols) do
    local file = rc.files and rc.files[sym]
    if file then
      local rows, err = M.read(file)
      if not rows then return nil, errors.wrap(err, nil, ("replay.files.%s: %s"):format(sym, errors.message(err))) end
      local ok, cols = pcall(columns.from_rows, rows)
      if not ok then return nil, errors.new("invalid", ("replay.files.%s: %s"):format(sym, tostring(cols)), { source = "data" }) end
      data[sym] = cols
    else
      local n = rc.candles or 2000
      data[sym] = M.generate(sym, paper.spec(sym), n, ms, time.date_ms(rc.start or "2026-01-01"), rc.seed or 7, columns.new(n))
    end
  end
  return data, iv
end

return M
