--- vibex.agent.perf — an account's performance, updated every cycle:
-- equity curve, PnL, drawdown, Sharpe, win rate, fees, funding.
--
--   local p = perf.new(); p:observe(now_ms, equity); p:fill(realized_pnl, fee); p:funding(amount)
--   p:summary() -> {equity, pnl, return_pct, max_drawdown (%), sharpe (annualised, per-cycle returns),
--                   win_rate, trades, wins, losses, realized, fees, funding, cycles}
local M = {}

local P = {}
P.__index = P

function M.new()
  return setmetatable({ n = 0, mean = 0, m2 = 0, max_dd = 0, realized = 0, fees = 0, funding_paid = 0,
                        wins = 0, losses = 0, curve = {}, keep = 2000 }, P)
end

--- One point of the equity curve (per cycle). Returns are per cycle
-- (Welford's running mean and variance: no drift over long runs).
function P:observe(t, equity)
  if type(equity) ~= "number" or equity ~= equity then return end
  if not self.start then self.start, self.peak, self.t_first = equity, equity, t end
  if self.last and self.last > 0 then
    local r = equity / self.last - 1
    self.n = self.n + 1
    local d = r - self.mean
    self.mean = self.mean + d / self.n
    self.m2 = self.m2 + d * (r - self.mean)
  end
  self.last, self.t_last = equity, t
  if equity > self.peak then self.peak = equity end
  local dd = self.peak > 0 and (self.peak - equity) / self.peak or 0
  if dd > self.max_dd then self.max_dd = dd end
  local c = self.curve
  c[#c + 1] = { t, equity }
  if #c > 2 * self.keep then -- keep the recent curve bounded
    local k = {}
    for i = #c - self.keep + 1, #c do k[#k + 1] = c[i] end
    self.curve = k
  end
end

--- A fill: its realized PnL and fee (a closing fill with PnL counts as a trade).
function P:fill(realized, fee)
  self.realized = self.realized + realized
  self.fees = self.fees + fee
  if realized > 0 then self.wins = self.wins + 1 elseif realized < 0 then self.losses = self.losses + 1 end
end

function P:funding(amount) self.funding_paid = self.funding_paid + amount end

local YEAR_MS = 365 * 86400000

function P:summary()
  local s = { equity = self.last, pnl = 0, return_pct = 0, max_drawdown = self.max_dd * 100, trades = self.wins + self.losses,
              wins = self.wins, losses = self.losses, realized = self.realized, fees = self.fees, funding = self.funding_paid,
              cycles = self.n + (self.start and 1 or 0) }
  if self.start and self.start > 0 then
    s.pnl = self.last - self.start
    s.return_pct = (self.last / self.start - 1) * 100
  end
  if self.n > 1 then
    local sd = math.sqrt(self.m2 / (self.n - 1))
    local period = (self.t_last - self.t_first) / self.n
    if sd > 0 and period > 0 then s.sharpe = self.mean / sd * math.sqrt(YEAR_MS / period) end
  end
  if s.trades > 0 then s.win_rate = self.wins / s.trades end
  return s
end

return M
