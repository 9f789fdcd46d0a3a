--- vibex.agent.replay — paper accounts on stored or generated candles: the
-- paper demo (`make run`), backtests, and the arena later.
--
--   local r = replay.new{agent = ag, config = cfg.replay, accounts = {acc, …}}
--   local summary = r:run()
--
-- Candles of the base interval are pushed, in time order across symbols,
-- into every account's simulated venue and market data; after each candle
-- close that ends an account's decision interval (aligned to candle
-- closes, at least one base candle) that account runs a cycle, and the
-- replay waits for all cycles due at that close before going on. The
-- replay clock is the venue clock: cycles, orders and fills carry replay
-- time, and the same data and config give the same decisions.
local task = require "vibex.task"
local log = require "vibex.log"
local time = require "vibex.time"
local datasets = require "vibex.data"
local columns = require "vibex.data.columns"
local sim_units = require("vibex.exchange.sim").units

local M = {}

local alog = log.channel("app")

-- vibex.agent requires this module's users, not this module: looked up when first needed
local agent_cached
local function agent_mod()
  agent_cached = agent_cached or require "vibex.agent"
  return agent_cached
end

-- ---- the run ----------------------------------------------------------------------------------------

local Run = {}
Run.__index = Run

--- o: agent, config (the replay section), accounts (paper account configs,
-- already added to the agent with sim venues), on_leaderboard(board).
function M.new(o)
  local symbols, seen = {}, {}
  for _, acc in ipairs(o.accounts) do
    for _, s in ipairs(acc.symbols) do
      if not seen[s] then seen[s] = true; symbols[#symbols + 1] = s end
    end
  end
  table.sort(symbols)
  local data, iv = o.data, o.config.interval or "5m"
  if not data then
    data, iv = datasets.load(o.config, symbols)
    if not data then return nil, iv end
  end
  -- compact columns whatever came in (rows from a caller are converted once)
  local cols = {}
  for sym, d in pairs(data) do cols[sym] = columns.is(d) and d or columns.from_rows(d) end
  -- the data range and size: part of the run's identity
  local from, to, n = math.huge, -math.huge, 0
  for _, c in pairs(cols) do
    if c.n > 0 then
      from, to, n = math.min(from, c.t[0]), math.max(to, c.t[c.n - 1]), n + c.n
    end
  end
  return setmetatable({ agent = o.agent, rc = o.config, accounts = o.accounts, data = cols, interval = iv,
                        on_leaderboard = o.on_leaderboard, recorded = o.recorded or {}, caught_up = 0,
                        from_ms = n > 0 and from or nil, to_ms = n > 0 and (to + time.INTERVAL_MS[iv]) or nil, n_candles = n,
                        interval_ms = time.INTERVAL_MS[iv], symbols = symbols, cycles = 0, candles = 0 }, Run)
end

-- The symbols in order, and how many distinct candle times there are (a
-- merge over the symbols' sorted columns; nothing is built per candle).
function Run:time_span()
  local syms, cur = {}, {}
  for sym in pairs(self.data) do syms[#syms + 1] = sym; cur[sym] = 0 end
  table.sort(syms)
  local count = 0
  while true do
    local t = self:next_time(syms, cur)
    if not t then break end
    count = count + 1
    for _, sym in ipairs(syms) do
      local c, i = self.data[sym], cur[sym]
      if i < c.n and c.t[i] == t then cur[sym] = i + 1 end
    end
  end
  return count, syms
end

-- The earliest candle time at the cursors (nil at the end).
function Run:next_time(syms, cur)
  local t
  for _, sym in ipairs(syms) do
    local c, i = self.data[sym], cur[sym]
    if i < c.n and (not t or c.t[i] < t) then t = c.t[i] end
  end
  return t
end

local function funding_schedule(rc, symbol, first, last)
  if rc.funding_rows and rc.funding_rows[symbol] then return rc.funding_rows[symbol] end -- from the database
  local file = rc.funding_files and rc.funding_files[symbol]
  if file then
    local rows = datasets.read_ohlcv(file, { funding = true }) or {}
    return rows
  end
  if not rc.funding_rate or rc.funding_rate == 0 then return {} end
  local out, eight = {}, 28800000
  for t = math.ceil(first / eight) * eight, last, eight do out[#out + 1] = { time_ms = t, rate = rc.funding_rate } end
  return out
end

--- Replay everything; returns a summary {candles, cycles, accounts = {name = {cycles, …}}}.
function Run:run()
  local total, syms = self:time_span()
  if total == 0 then return nil, "replay: no candles" end
  local ag, iv = self.agent, self.interval_ms
  local by_symbol, every, markets = {}, {}, {}
  for _, acc in ipairs(self.accounts) do
    every[acc.name] = math.max(iv, math.ceil(acc.decision_interval_s * 1000 / iv) * iv)
    for _, s in ipairs(acc.symbols) do
      local a = ag.accounts[acc.name]
      by_symbol[s] = by_symbol[s] or {}
      table.insert(by_symbol[s], a)
      -- accounts share their market-data service: a candle goes into it once
      markets[s] = markets[s] or {}
      local seen = false
      for _, m in ipairs(markets[s]) do if m == a.market then seen = true end end
      if not seen then table.insert(markets[s], a.market) end
    end
  end
  self.markets = markets
  local cur = {}
  for _, sym in ipairs(syms) do cur[sym] = 0 end
  local first = self:next_time(syms, cur)
  local last_t = -math.huge
  for _, c in pairs(self.data) do if c.n > 0 and c.t[c.n - 1] > last_t then last_t = c.t[c.n - 1] end end
  local funding, next_f = {}, {}
  for _, s in ipairs(self.symbols) do
    funding[s] = funding_schedule(self.rc, s, first, last_t + iv)
    next_f[s] = 1
  end
  local warmup, speed = self.rc.warmup or 100, self.rc.speed or "max"
  local started = task.now()
  alog:info("replay started", { candles = total, symbols = table.concat(self.symbols, ","), interval = self.interval,
                                accounts = #self.accounts, speed = tostring(speed) })
  local bar, scale = {}, columns.SCALE -- one bar table, refilled: the market data copies what it needs
  local n, last_yield = 0, task.hrtime()
  while true do
    local t = self:next_time(syms, cur)
    if not t then break end
    n = n + 1
    -- the warm-up candles go at once; the pace starts with the first decision
    if speed ~= "max" and n > warmup then
      if not self.paced_from then self.paced_from, started = t, task.now() end
      local due = started + (t - self.paced_from) / speed
      if due > task.now() then task.sleep(due - task.now()) end
    end
    for _, sym in ipairs(syms) do
      local c, j = self.data[sym], cur[sym]
      if j < c.n and c.t[j] == t then
        cur[sym] = j + 1
        self:candle(sym, c, j, t, iv, funding, next_f, by_symbol[sym], markets[sym], bar, scale)
      end
    end
    if n > warmup then
      self:decide_at(t + iv, every)
      if self.stop_when and self.stop_when() then return nil, self.stop_when() end
    end
    -- the loop gets a turn every 20 ms of replay work (timers, signals, the
    -- watchdog), and the progress line every 500 candle times
    if n % 16 == 0 and task.hrtime() - last_yield > 20e6 then
      task.yield()
      last_yield = task.hrtime()
    end
    if n % 500 == 0 and self.on_progress then self.on_progress(self, n, total, self:equity()) end
  end
  if self.on_progress then self.on_progress(self, total, total, self:equity()) end
  for _, acc in ipairs(self.accounts) do
    local a = ag.accounts[acc.name]
    if ag.repos and a.sim then ag.repos.ledger:paper_save(acc.name, a.sim:snapshot()) end
  end
  self:leaderboard()
  return { candles = self.candles, cycles = self.cycles, from_ms = first, to_ms = last_t + iv,
           bad_candles = self.bad_candles }
end

-- One candle j of a symbol's columns: funding due by then, every account's
-- simulated venue (the candle, then the mark), the market data.
function Run:candle(sym, c, j, t, iv, funding, next_f, accounts, markets, bar, scale)
  self:settle_funding(sym, funding[sym], next_f, t, accounts)
  -- the mark follows the mark candles' closes when they were stored
  -- (data download --mark), else the traded closes: protective orders,
  -- which trigger on the mark, fire at the first close beyond them
  local marks = self.rc.mark_closes and self.rc.mark_closes[sym]
  local mark = marks and marks[t]
  mark = mark and sim_units(mark, "mark") or c.c[j]
  for _, a in ipairs(accounts) do
    local i = a.sim.index[sym]
    a.sim:candle_units_v(i, t, c.o[j], c.h[j], c.l[j], c.c[j], c.v[j], iv)
    a.sim:mark_units(i, mark, t + iv - 1)
  end
  bar.open_time, bar.open, bar.high = t, tonumber(c.o[j]) / scale, tonumber(c.h[j]) / scale
  bar.low, bar.close, bar.volume = tonumber(c.l[j]) / scale, tonumber(c.c[j]) / scale, tonumber(c.v[j]) / scale
  for _, m in ipairs(markets) do
    local ok, perr = m:push(sym, bar)
    if not ok then self:bad_candle(sym, t, perr) end
  end
  self.candles = self.candles + 1
end

-- A candle the market data refused (inconsistent prices, out of order):
-- counted, and the first few said, so a backtest on broken data is not
-- silently a backtest on other data.
function Run:bad_candle(sym, t, err)
  self.bad_candles = (self.bad_candles or 0) + 1
  if self.bad_candles <= 3 then
    alog:warn("candle refused by the market data: " .. tostring(err), { symbol = sym, open_time = t,
      hint = "fix the data file or the candles table; the simulated venue still trades on it" })
  end
end

-- The first account's equity now (for progress lines).
function Run:equity()
  local acc = self.accounts[1]
  local a = acc and self.agent.accounts[acc.name]
  return a and a.perf.last
end

function Run:settle_funding(sym, list, next_f, t, accounts)
  while list[next_f[sym]] and list[next_f[sym]].time_ms <= t do
    local f = list[next_f[sym]]
    for _, a in ipairs(accounts) do
      local last = a.sim:ticker(sym).price
      if last ~= "0" then a.sim:funding(sym, f.rate, last, f.time_ms) end
    end
    for _, m in ipairs(self.markets[sym]) do m:set_funding(sym, tonumber(f.rate)) end
    next_f[sym] = next_f[sym] + 1
  end
end

-- One cycle of an account, and its record: a replay feeds the next candle
-- only once the database has the cycle (the record is written behind a
-- live cycle), so its writes come in the same order in every run of it and
-- a resumed run's record equals an uninterrupted one's.
function Run:cycle(name, key, recorded)
  local rec, why = self.agent:cycle(name, { cycle_key = key, recorded = recorded })
  local a = self.agent.accounts[name]
  if a then self.agent:wait_record(a) end
  return rec, why
end

-- Run every account whose interval ends at close_ms, concurrently, and
-- wait for all of them.
function Run:decide_at(close_ms, every)
  local due = {}
  for _, acc in ipairs(self.accounts) do
    if close_ms % every[acc.name] == 0 then due[#due + 1] = acc end
  end
  if #due == 0 then return end
  if #due == 1 then -- one account: no task to spawn and join
    local acc = due[1]
    local key = agent_mod().cycle_key(close_ms, every[acc.name] / 1000)
    local recorded = self.recorded[acc.name] and self.recorded[acc.name][key]
    if recorded and recorded.completed then self.caught_up = self.caught_up + 1 end
    self:cycle(acc.name, key, recorded)
    self.cycles = self.cycles + 1
    self.rounds = (self.rounds or 0) + 1
    if self.rounds % (self.leaderboard_every or 50) == 0 then self:leaderboard() end
    return
  end
  local tasks = {}
  for _, acc in ipairs(due) do
    local key = agent_mod().cycle_key(close_ms, every[acc.name] / 1000)
    -- a resumed run: what this cycle decided before comes from the record
    local recorded = self.recorded[acc.name] and self.recorded[acc.name][key]
    if recorded and recorded.completed then self.caught_up = self.caught_up + 1 end
    tasks[#tasks + 1] = task.spawn("cycle:" .. acc.name, function() return self:cycle(acc.name, key, recorded) end)
  end
  task.join_all(tasks)
  self.cycles = self.cycles + #due
  self.rounds = (self.rounds or 0) + 1
  if self.rounds % (self.leaderboard_every or 50) == 0 then self:leaderboard() end
end

--- The accounts ranked by equity now (the arena's live leaderboard), logged
-- and kept in run.board.
function Run:leaderboard()
  local board = {}
  for _, acc in ipairs(self.accounts) do
    local a = self.agent.accounts[acc.name]
    local s = a and a.perf:summary()
    if s and s.equity then
      board[#board + 1] = { account = acc.name, variant = a.last and a.last.variant, equity = s.equity,
                            return_pct = s.return_pct, trades = s.trades }
    end
  end
  table.sort(board, function(x, y) return x.equity > y.equity end)
  local parts = {}
  for i, b in ipairs(board) do
    parts[i] = ("%d. %s%s %.2f (%+.2f%%)"):format(i, b.account, b.variant and ("[" .. b.variant .. "]") or "", b.equity, b.return_pct)
  end
  self.board = board
  alog:info("leaderboard: " .. table.concat(parts, "  "), { cycles = self.cycles })
  if self.on_leaderboard then self.on_leaderboard(board) end
  return board
end

return M
