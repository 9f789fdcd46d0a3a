--- vibex.data.download — `vibex data download`: a venue's public history
-- (klines; with funding, its funding settlements; with mark, its mark
-- price klines) paged from REST within the venue's rate limits into the
-- database and/or files, resuming after what is already stored, with the
-- holes reported. Pages are written as they arrive: a download killed half
-- way keeps what it got, and the same command carries on.
--
--   local code = download.run{symbols = {"BTCUSDT"}, interval = "5m", from_ms = …, to_ms = …,
--                             venue = "aster", base_url = nil, funding = true, mark = true,
--                             repo = candles_repo | nil, out = "dir" | nil}
local errors = require "vibex.errors"
local json = require "vibex.json"
local runtime = require "vibex.runtime"
local time = require "vibex.time"

local M = {}

local EIGHT_H = 8 * 3600000

local function tty() return require("vibex.cdef").C.isatty(1) == 1 end

--- freqtrade's file name of a symbol's data: BTCUSDT, "5m", "futures" ->
--- BTC_USDT_USDT-5m-futures.json.
function M.file_name(symbol, interval, kind)
  local base, quote = symbol:match("^(.-)(USDT)$")
  if not base then base, quote = symbol:match("^(.-)(USDC)$") end
  if not base then base, quote = symbol, "USDT" end
  return ("%s_%s_%s-%s-%s.json"):format(base, quote, quote, interval, kind)
end

-- A file of rows: what it holds (for resuming), and writing it whole.
local function read_rows(path)
  local f = io.open(path, "rb")
  if not f then return {} end
  local rows = json.decode(f:read("*a"))
  f:close()
  return type(rows) == "table" and rows or {}
end

local function write_rows(path, rows)
  local tmp = path .. ".part"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  local parts = {}
  for i, r in ipairs(rows) do parts[i] = json.encode(r) end
  f:write("[", table.concat(parts, ","), "]")
  f:close()
  return os.rename(tmp, path)
end

-- Progress: one line per symbol and kind, rewritten in place on a
-- terminal; a line per page otherwise.
local function progress(label, unit, from, to)
  local on_tty = tty()
  return function(got, last_ms, done)
    local frac = to > from and math.min(1, math.max(0, ((last_ms or from) - from) / (to - from))) or 1
    if on_tty then
      local w = 30
      io.stdout:write(("\r%s [%s%s] %3d%% %d %s stored, up to %s"):format(label, ("#"):rep(math.floor(frac * w)),
        ("."):rep(w - math.floor(frac * w)), math.floor(frac * 100), got, unit, last_ms and time.iso(last_ms) or "-"))
      if done then io.stdout:write("\n") end
    elseif not done then
      io.stdout:write(("%s: %d %s stored, up to %s\n"):format(label, got, unit, last_ms and time.iso(last_ms) or "-"))
    end
    io.stdout:flush()
  end
end

-- One symbol's klines (or mark klines) into the database and/or a file.
local function klines(o, client, sym, mark)
  local iv, step = o.interval, time.INTERVAL_MS[o.interval]
  local label = ("%s %s%s"):format(sym, iv, mark and " mark" or "")
  local path = o.out and (o.out .. "/" .. M.file_name(sym, iv, mark and "mark" or "futures"))
  local file_rows = path and read_rows(path)
  local have
  if o.repo then
    local err
    if mark then have, err = o.repo:mark_last_open(sym, iv, o.from_ms, o.to_ms)
    else have, err = o.repo:last_open(sym, iv, o.from_ms, o.to_ms) end
    if err then return nil, err end
  elseif file_rows and #file_rows > 0 then
    have = file_rows[#file_rows][1]
    if have < o.from_ms or have > o.to_ms then have = nil end
  end
  local start = have and (have + step) or o.from_ms
  if have then io.stdout:write(("%s: resuming after %s\n"):format(label, time.iso(have))) end
  local got, new = 0, 0
  local show = progress(label, "candles", o.from_ms, o.to_ms)
  if start <= o.to_ms then
    local ok, err = client:klines(sym, iv, { start_ms = start, end_ms = o.to_ms, mark = mark, on_page = function(rows)
      for _, r in ipairs(rows) do r.close_time = r.open_time + step - 1 end
      if o.repo then
        local n, cerr
        if mark then n, cerr = o.repo:mark_copy(sym, iv, rows) else n, cerr = o.repo:copy(sym, iv, rows) end
        if not n then return nil, cerr end
        new = new + n
      end
      if file_rows then
        for _, r in ipairs(rows) do
          file_rows[#file_rows + 1] = { r.open_time, r.open, r.high, r.low, r.close, r.volume or 0 }
        end
        local wok, werr = write_rows(path, file_rows)
        if not wok then return nil, errors.new("storage", ("%s: %s"):format(path, tostring(werr))) end
        if not o.repo then new = new + #rows end
      end
      got = got + #rows
      show(got, rows[#rows] and rows[#rows].open_time)
      return true
    end })
    if not ok then return nil, err end
  end
  show(got, o.to_ms, true)
  local holes_text = ""
  if o.repo and not mark then
    local holes = assert(o.repo:holes(sym, iv, step, 20))
    local missing = 0
    for _, g in ipairs(holes) do missing = missing + g.missing end
    holes_text = #holes == 0 and "; no holes" or ("; %d holes, %d candles missing (vibex data list)"):format(#holes, missing)
  end
  io.stdout:write(("%s: done, %d new candles from %s to %s%s%s\n"):format(label, new, time.iso(o.from_ms), time.iso(o.to_ms),
    holes_text, path and ("; file " .. path) or ""))
  return true
end

-- One symbol's funding settlements.
local function funding(o, client, sym)
  local label = sym .. " funding"
  local path = o.out and (o.out .. "/" .. M.file_name(sym, "8h", "funding_rate"))
  local file_rows = path and read_rows(path)
  local have
  if o.repo then
    local err
    have, err = o.repo:funding_last(sym, o.from_ms, o.to_ms)
    if err then return nil, err end
  elseif file_rows and #file_rows > 0 then
    have = file_rows[#file_rows][1]
  end
  local start = have and (have + 1) or o.from_ms
  if have then io.stdout:write(("%s: resuming after %s\n"):format(label, time.iso(have))) end
  local got, new = 0, 0
  local show = progress(label, "settlements", o.from_ms, o.to_ms)
  if start <= o.to_ms then
    local ok, err = client:funding_history(sym, { start_ms = start, end_ms = o.to_ms, on_page = function(rows)
      if o.repo then
        local n, cerr = o.repo:funding_copy(sym, rows)
        if not n then return nil, cerr end
        new = new + n
      end
      if file_rows then
        for _, r in ipairs(rows) do file_rows[#file_rows + 1] = { r.time_ms, tonumber(r.rate), 0, 0, 0, 0 } end
        local wok, werr = write_rows(path, file_rows)
        if not wok then return nil, errors.new("storage", ("%s: %s"):format(path, tostring(werr))) end
        if not o.repo then new = new + #rows end
      end
      got = got + #rows
      show(got, rows[#rows] and rows[#rows].time_ms)
      return true
    end })
    if not ok then return nil, err end
  end
  show(got, o.to_ms, true)
  -- settlements every 8 hours: a longer wait between two is a hole
  io.stdout:write(("%s: done, %d new settlements%s\n"):format(label, new, path and ("; file " .. path) or ""))
  return true
end

--- Run a download (o: see the module's comment). Returns 0, or 1 when a
--- symbol failed (what was stored stays).
function M.run(o)
  local exchange = require "vibex.exchange"
  local client = exchange[o.venue] { base_url = o.base_url }
  local step = time.INTERVAL_MS[o.interval]
  local to = math.min(o.to_ms or math.huge, client:now() - step) -- only closed candles
  o.to_ms = to - to % step
  if o.out then
    local ok, err = runtime.mkdir_p(o.out)
    if not ok then
      io.stderr:write(("vibex: data download: cannot create %s: %s\n"):format(o.out, tostring(err)))
      return 1
    end
  end
  local rc = 0
  for _, sym in ipairs(o.symbols) do
    local jobs = { { "klines", function() return klines(o, client, sym, false) end } }
    if o.mark then jobs[#jobs + 1] = { "mark klines", function() return klines(o, client, sym, true) end } end
    if o.funding then jobs[#jobs + 1] = { "funding", function() return funding(o, client, sym) end } end
    for _, job in ipairs(jobs) do
      local ok, err = job[2]()
      if not ok then
        io.stderr:write(("vibex: data download: %s %s %s: %s (what was stored stays; run the same command to resume)\n")
          :format(sym, o.interval, job[1], errors.message(err)))
        rc = 1
        break
      end
    end
  end
  return rc
end

M.EIGHT_H = EIGHT_H
return M
