--- vibex.exchange.paper — simulated venues for paper accounts: the symbol
-- specs (tick, step, filters; fees from the account's paper.fee_rate) and
-- the venue itself (vibex.exchange.sim) with the account's starting balance.
local sim = require "vibex.exchange.sim"

local M = {}

--- The symbol's venue spec for a paper account (fees from paper.fee_rate).
function M.spec(symbol, acc)
  local base = sim.DEFAULT_SYMBOLS[symbol] or { tick = "0.0001", step = "0.01", min_qty = "0.01", max_qty = "10000000",
                                                min_notional = "5" }
  local s = {}
  for k, v in pairs(base) do s[k] = v end
  local fee = acc and acc.paper and acc.paper.fee_rate
  if fee then
    s.taker_fee = ("%.8f"):format(fee)
    s.maker_fee = ("%.8f"):format(fee / 2)
  end
  return s
end

--- A simulated venue for a paper account.
function M.venue(acc)
  local specs = {}
  for _, sym in ipairs(acc.symbols) do specs[sym] = M.spec(sym, acc) end
  return sim.new { balance = ("%.8f"):format(acc.paper.starting_balance), symbols = specs, account = acc.name }
end

return M
