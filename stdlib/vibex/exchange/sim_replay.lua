--- vibex.exchange.sim_replay — stored candles replayed through a simulated
-- venue (vibex.exchange.sim), in time order across symbols, with recorded
-- funding settled at its times: sim:replay(data, o) runs it.
local task = require "vibex.task"
local time = require "vibex.time"

local M = {}

--- Replay stored candles: data = {SYMBOL = {rows}} (rows as from REST
-- klines or db.candles:range: open_time, open, high, low, close), merged in
-- time order across symbols. o.interval ("1m"), o.speed ("max", or a
-- multiple of real time: 1 = as it happened, 60 = an hour a minute),
-- o.on_candle(symbol, k) after each candle is applied (the strategy's hook;
-- it may place orders, which execute from the next candle on), o.funding =
-- {SYMBOL = {{time_ms, rate}, …}} (recorded rates, settled at their times
-- at the last price before the candle that passes them).
-- Returns the number of candles replayed.
function M.run(self, data, o)
  o = o or {}
  local iv = type(o.interval) == "number" and o.interval or time.INTERVAL_MS[o.interval or "1m"]
  local items = {}
  for symbol, rows in pairs(data) do
    assert(self.index[symbol], "sim.replay: unknown symbol " .. tostring(symbol))
    for _, k in ipairs(rows) do items[#items + 1] = { symbol, k } end
  end
  table.sort(items, function(a, b)
    if a[2].open_time ~= b[2].open_time then return a[2].open_time < b[2].open_time end
    return a[1] < b[1]
  end)
  local speed, started, first = o.speed or "max", task.now(), items[1] and items[1][2].open_time
  local funding, next_f = o.funding or {}, {}
  for symbol, list in pairs(funding) do
    table.sort(list, function(a, b) return a.time_ms < b.time_ms end)
    next_f[symbol] = 1
  end
  for n, it in ipairs(items) do
    local symbol, k = it[1], it[2]
    local list = funding[symbol]
    while list and list[next_f[symbol]] and list[next_f[symbol]].time_ms <= k.open_time do
      local f = list[next_f[symbol]]
      local last = self:ticker(symbol).price
      if last ~= "0" then self:funding(symbol, f.rate, last, f.time_ms) end
      next_f[symbol] = next_f[symbol] + 1
    end
    if speed ~= "max" then
      local due = started + (k.open_time + iv - first) / speed
      if due > task.now() then task.sleep(due - task.now()) end
    elseif n % 10000 == 0 then
      task.yield() -- as fast as possible, but the loop still turns
    end
    self:candle(symbol, k, iv)
    if o.on_candle then o.on_candle(symbol, k) end
  end
  return #items
end

return M
