--- vibex.status — `vibex status`: the state file of a `vibex run` as a
-- person reads it: one line per account, then why a failed account failed
-- and what fixes it, then the market data each venue keeps.
local M = {}

local function ago(ms, now)
  if not ms then return "-" end
  local s = math.floor((now - ms) / 1000)
  if s < 0 then return "now" end
  if s < 120 then return s .. "s ago" end
  if s < 7200 then return math.floor(s / 60) .. "m ago" end
  return math.floor(s / 3600) .. "h ago"
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t or {}) do out[#out + 1] = k end
  table.sort(out)
  return out
end

function M.render(st, file)
  local now = st.updated_at or 0
  local out = {}
  local function line(s) out[#out + 1] = s end
  line(("%s — pid %s, config version %s, updated %s"):format(file, tostring(st.pid or "?"),
    tostring(st.config and st.config.version or "?"), st.updated_at and os.date("!%Y-%m-%d %H:%M:%SZ", math.floor(st.updated_at / 1000)) or "?"))
  if st.api and st.api.url then line(("API and dashboard: %s/"):format(st.api.url)) end
  line("")
  line(("%-16s %-9s %-6s %-8s %9s  %-12s %-12s %s"):format("account", "status", "mode", "venue", "decisions", "last", "reconciled", "unknown orders"))
  local failed = {}
  for _, name in ipairs(sorted_keys(st.accounts)) do
    local a = st.accounts[name]
    line(("%-16s %-9s %-6s %-8s %9s  %-12s %-12s %s"):format(name, tostring(a.status), tostring(a.mode or "-"),
      tostring(a.venue or "-"), tostring(a.decisions or 0), ago(a.last_decision_at, now), ago(a.reconciled_at, now),
      tostring(a.unknown_orders or 0)))
    if a.status == "failed" then failed[#failed + 1] = { name, a } end
  end
  for _, f in ipairs(failed) do
    local name, a = f[1], f[2]
    line("")
    line(("%s failed: %s"):format(name, tostring(a.reason)))
    if a.fix then line("  fix: " .. a.fix) end
    if a.retry_at then line(("  next try %s (attempt %d)"):format(os.date("!%H:%M:%SZ", math.floor(a.retry_at / 1000)), (a.attempts or 0) + 1))
    else line("  not retried: fix the cause, then save the config or restart") end
  end
  for _, key in ipairs(sorted_keys(st.market)) do
    local m = st.market[key]
    line("")
    line(("market data %s: %s, %d reconnects, %d candles backfilled, %d frames (%d applied in C)"):format(key,
      m.connected and "connected" or "not connected", m.reconnects or 0, m.backfilled or 0, m.frames or 0, m.applied_in_c or 0))
    for _, sym in ipairs(sorted_keys(m.symbols)) do
      local s = m.symbols[sym]
      local parts = {}
      for _, iv in ipairs(sorted_keys(s)) do
        local c = s[iv]
        if type(c) == "table" then
          parts[#parts + 1] = ("%s %d candles%s"):format(iv, c.len or 0, (c.missing or 0) > 0 and (", " .. c.missing .. " missing") or "")
        end
      end
      line(("  %-10s mark %-12s funding %-10s %s"):format(sym, tostring(s.mark or "-"), tostring(s.funding or "-"),
        table.concat(parts, ", ")))
    end
  end
  return table.concat(out, "\n")
end

return M
