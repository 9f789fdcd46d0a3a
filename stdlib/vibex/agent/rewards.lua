--- vibex.agent.rewards — what an A/B experiment learns from a cycle
-- (vibex.ab: Thompson sampling over the variants). Methods of the agent.
local Agent = {}

-- Thompson sampling learns from outcomes: "valid" is known now (an answer
-- that could be used); "return" at the account's next cycle (did the
-- equity rise?). Cycles decided without the model teach nothing.
function Agent:queue_reward(a, ab, rec)
  if rec.source == "fallback" or rec.valid == nil then return end
  if ab.experiment.outcome == "valid" then
    self.lab:reward(ab, rec.valid and 1 or 0)
  else
    a.pending_reward = { ab = ab, equity = rec.equity_start }
  end
end

function Agent:settle_reward(a, equity)
  local p = a.pending_reward
  if not p or not equity or not p.equity then return end
  a.pending_reward = nil
  self.lab:reward(p.ab, equity > p.equity and 1 or 0)
end

return Agent
