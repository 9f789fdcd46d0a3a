--- vibex.backtest.collector — what a backtest's agent leaves behind, kept
-- compactly instead of written to PostgreSQL cycle by cycle: the agent's
-- sink (vibex.agent: `sink`) and each account's order recorder.
--
--   local col = collector.new{dir = spool_dir}
--   agent.new{…, sink = col}                 -- the agent calls col:recorder(name), col:event(…), col:cycle(…)
--   col:close()                              -- the spool files are complete
--
-- What grows with the run is streamed to files in the output directory,
-- which vibex.backtest.store loads in bulk at the end: decisions and diary
-- entries (COPY text with a header: decisions.tsv, diary.tsv), orders once
-- they are final and every fill (CSV: orders.csv, fills.csv). In memory:
-- the open orders, the closed trades (for the report) and the equity curve
-- (number arrays). A digest chained over the order stream (every order as
-- sent, every fill, every liquidation, the final equities) tells two runs
-- apart at a glance.
local ffi = require "ffi"
local diary = require "vibex.agent.diary"
local state_fields = require("vibex.agent.recorder").state_fields
local json = require "vibex.json"
local crypto = require "vibex.crypto"
local time = require "vibex.time"
local runtime = require "vibex.runtime"

local M = {}
local trade_book   -- below: the compact closed-trade book

local concat, fmt, tostring, type = table.concat, string.format, tostring, type

--- A value as COPY text (NULL as \N; tables as JSON).
local function copy_text(v)
  if v == nil then return "\\N" end
  local t = type(v)
  if t == "table" then v = json.encode_sorted(v)
  elseif t == "boolean" then return v and "t" or "f"
  elseif t == "number" then
    if v ~= v then return "\\N" end
    return fmt("%.17g", v)
  else v = tostring(v) end
  if v:find("[\\\t\n\r]") then v = v:gsub("\\", "\\\\"):gsub("\t", "\\t"):gsub("\n", "\\n"):gsub("\r", "\\r") end
  return v
end
M.copy_text = copy_text

M.DECISION_COLUMNS = { "account", "cycle_key", "started_ms", "strategy", "source", "provider", "model", "prompt_version",
                       "prompt", "raw_answer", "parsed", "valid", "validation", "tokens_in", "tokens_out", "latency_ms",
                       "cost", "experiment", "variant", "config_hash", "step_ms", "error", "equity" }
M.DIARY_COLUMNS = { "account", "cycle_key", "body", "tags" }

local function csv_text(v)
  if v == nil then return "" end
  local t = type(v)
  if t == "boolean" then return v and "true" or "false" end
  if t == "number" then
    if v ~= v then return "" end
    return fmt("%.17g", v)
  end
  v = tostring(v)
  if v:find('[,"\n\r]') then v = '"' .. v:gsub('"', '""') .. '"' end
  return v
end
M.csv_text = csv_text

M.ORDER_COLUMNS = { "account", "client_order_id", "symbol", "side", "type", "kind", "quantity", "price", "stop_price",
                    "position_side", "time_in_force", "reduce_only", "close_position", "working_type", "cycle_key", "leg",
                    "status", "parent_client_order_id", "executed_quantity", "average_price", "venue_order_id",
                    "updated_ms", "reject_reason" }
M.FILL_COLUMNS = { "account", "time", "symbol", "side", "price", "quantity", "fee", "fee_asset", "realized_pnl", "maker",
                   "kind", "type", "client_order_id", "trade_id", "time_ms" }

local Spool = {}
Spool.__index = Spool

local function spool(path, columns, csv)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  f:setvbuf("full", 65536)
  f:write(concat(columns, csv and "," or "\t"), "\n")
  return setmetatable({ f = f, path = path, rows = 0, sep = csv and "," or "\t", text = csv and csv_text or copy_text }, Spool)
end

function Spool:row(values, n)
  local parts, text = {}, self.text
  for i = 1, n do parts[i] = text(values[i]) end
  self.f:write(concat(parts, self.sep, 1, n), "\n")
  self.rows = self.rows + 1
end

function Spool:close()
  if self.f then self.f:close(); self.f = nil end
end

-- ---- an account's order recorder (the interface of vibex.agent.recorder) -------------------------

local FINAL = { filled = true, canceled = true, expired = true, rejected = true }

local Rec = {}
Rec.__index = Rec

--- An order before it is sent: kept with what was sent.
function Rec:insert(row)
  local acc = self.acc
  acc.order_count = acc.order_count + 1
  local o = { row = row, status = row.status or "pending", executed = "0", avg = nil }
  acc.orders[row.client_order_id] = o
  self.col:digest_line(fmt("O|%s|%s|%s|%s|%s|%s|%s", acc.name, row.symbol, row.side, row.type, tostring(row.quantity),
    tostring(row.price), tostring(row.stop_price)))
  return true
end

function Rec:update(cid, fields)
  local o = self.acc.orders[cid]
  if not o then return true end
  if fields.status then o.status = fields.status end
  if fields.executed_quantity then o.executed = fields.executed_quantity end
  if fields.average_price then o.avg = fields.average_price end
  if fields.reject_reason then o.reject_reason = fields.reject_reason end
  if fields.venue_order_id then o.venue_order_id = tostring(fields.venue_order_id) end
  if fields.venue_time_ms then o.updated_ms = fields.venue_time_ms end
  if FINAL[o.status] then o.final = true end
  -- an answer that ended it (rejected, or filled at once) and no event to come: out of memory now,
  -- unless a fill event is still on its way (it carries the order's kind)
  if o.final and (o.status == "rejected" or o.status == "expired" or o.status == "canceled") then
    self.col:retire(self.acc, cid)
  end
  return true
end

function Rec:state(cid, order, extra, time_ms)
  return self:update(cid, state_fields(order, extra, time_ms))
end

function Rec:fill() return true end    -- fills come with the venue's events (Collector:event)
function Rec:decision() return true end -- the decision row is written when the cycle ends
function Rec:enqueue(fn) return fn() end
function Rec:flush() return true end
function Rec:replay() return true end
function Rec:close() return true end

-- ---- the collector -------------------------------------------------------------------------------

local Col = {}
Col.__index = Col

--- o: dir (where the spool files go), diary (false: no diary entries).
function M.new(o)
  local self = setmetatable({ dir = o.dir, accounts = {}, names = {}, chain = "", with_diary = o.diary ~= false,
                              cycles = 0, step_ms = {}, fill_row = {}, memory = { samples = {} } }, Col)
  local err
  self.decisions, err = spool(o.dir .. "/decisions.tsv", M.DECISION_COLUMNS)
  if not self.decisions then return nil, err end
  if self.with_diary then
    self.diary, err = spool(o.dir .. "/diary.tsv", M.DIARY_COLUMNS)
    if not self.diary then return nil, err end
  end
  self.orders_out, err = spool(o.dir .. "/orders.csv", M.ORDER_COLUMNS, true)
  if not self.orders_out then return nil, err end
  self.fills_out, err = spool(o.dir .. "/fills.csv", M.FILL_COLUMNS, true)
  if not self.fills_out then return nil, err end
  return self
end

local orow = {}

-- An order's row into orders.csv (when it is final, or at the end).
function Col:write_order(a, cid, o)
  local r = o.row
  orow[1], orow[2], orow[3], orow[4], orow[5], orow[6] = a.name, cid, r.symbol, r.side, r.type, r.kind
  orow[7], orow[8], orow[9], orow[10], orow[11] = r.quantity, r.price, r.stop_price, r.position_side, r.time_in_force
  orow[12], orow[13], orow[14], orow[15], orow[16] = r.reduce_only, r.close_position, r.working_type, r.cycle_key, r.leg
  orow[17], orow[18], orow[19], orow[20], orow[21] = o.status, r.parent_client_order_id, o.executed, o.avg, o.venue_order_id
  orow[22], orow[23] = o.updated_ms, o.reject_reason
  self.orders_out:row(orow, #M.ORDER_COLUMNS)
end

-- Orders that reached a final state leave memory for orders.csv.
function Col:retire(a, cid)
  local o = a.orders[cid]
  if o and o.final then
    self:write_order(a, cid, o)
    a.orders[cid] = nil
  end
end

-- The digest is a chain: each line of the order stream is hashed with the
-- digest so far (nothing of the stream is kept).
function Col:digest_line(s)
  self.chain = crypto.sha256(self.chain .. "\n" .. s)
end

--- The sha256 of the order stream so far (every order as sent, every
-- fill, every liquidation) and each account's final equity.
function Col:digest()
  local parts = { self.chain }
  for _, name in ipairs(self.names) do
    local a = self.accounts[name]
    parts[#parts + 1] = fmt("E|%s|%.8f", name, a.equity[#a.equity] or 0)
  end
  return crypto.sha256(concat(parts, "\n"))
end

--- The account's state, made on first use.
function Col:account(name)
  local a = self.accounts[name]
  if a then return a end
  a = { name = name, orders = {}, order_count = 0, fill_count = 0, trades = trade_book(), open = {}, pos = {}, t = {}, equity = {},
        wallet_at = {},
        exposed = 0, cycles = 0, by_source = {}, taken = 0, held = 0, rejected = 0, refused = 0, refusal_rules = {},
        rejection_reasons = {}, invalid = 0, errors = 0, llm_calls = 0, tokens_in = 0, tokens_out = 0, cost = 0,
        fees = 0, funding = 0, liquidations = 0, wallet = nil }
  self.accounts[name] = a
  self.names[#self.names + 1] = name
  return a
end

--- The order recorder the agent gives this account (instead of the
-- database's).
function Col:recorder(name)
  local a = self:account(name)
  a.recorder = a.recorder or setmetatable({ col = self, acc = a }, Rec)
  return a.recorder
end

-- ---- trades: round trips built from fills --------------------------------------------------------

-- The closed trades, compactly: TRADE_STRIDE doubles a trade in one C
-- array grown by doubling (a year of trades is not thousands of tables);
-- :list() makes the tables the report wants, once, at the end.
local TRADE_FIELDS = { "opened_ms", "closed_ms", "entry_qty", "entry_price", "exit_price", "pnl", "fees", "funding", "net",
                       "qty", "max_qty", "fills", "symbol", "side", "reason" }
local TRADE_STRIDE = #TRADE_FIELDS
local SIDES, REASONS = { "long", "short" }, { "signal", "stop", "target", "liquidation" }
local Book = {}
Book.__index = Book

local function index_of(list, v)
  for i, x in ipairs(list) do if x == v then return i end end
  list[#list + 1] = v
  return #list
end

trade_book = function()
  return setmetatable({ n = 0, cap = 0, data = nil, symbols = {}, sides = { unpack(SIDES) },
                        reasons = { unpack(REASONS) } }, Book)
end

function Book:add(tr)
  if self.n == self.cap then
    local cap = math.max(64, self.cap * 2)
    local data = ffi.new("double[?]", cap * TRADE_STRIDE)
    if self.data then ffi.copy(data, self.data, self.n * TRADE_STRIDE * 8) end
    self.data, self.cap = data, cap
  end
  local d, base = self.data, self.n * TRADE_STRIDE
  for k = 1, 12 do
    local v = tr[TRADE_FIELDS[k]]
    d[base + k - 1] = v == nil and 0 / 0 or v
  end
  d[base + 12] = index_of(self.symbols, tr.symbol)
  d[base + 13] = index_of(self.sides, tr.side)
  d[base + 14] = index_of(self.reasons, tr.reason)
  self.n = self.n + 1
end

function Book:count() return self.n end

--- The trades as tables, oldest first.
function Book:list()
  local out, d = {}, self.data
  for i = 0, self.n - 1 do
    local base, tr = i * TRADE_STRIDE, {}
    for k = 1, 12 do
      local v = d[base + k - 1]
      if v == v then tr[TRADE_FIELDS[k]] = v end
    end
    tr.symbol, tr.side = self.symbols[d[base + 12]], self.sides[d[base + 13]]
    tr.reason = self.reasons[d[base + 14]]
    out[i + 1] = tr
  end
  return out
end

local REASON = { exit = "signal", stop = "stop", take_profit = "target", entry = "signal" }

local function open_trade(a, sym, side, f, qty, price, fee_share, t)
  local tr = { symbol = sym, side = side, opened_ms = t, qty = qty, entry_cost = qty * price, entry_qty = qty,
               exit_value = 0, exit_qty = 0, pnl = 0, fees = fee_share, funding = 0, fills = 1, max_qty = qty,
               entry_order = f and f.client_order_id }
  a.open[sym] = tr
  return tr
end

local function close_trade(a, sym, t, reason)
  local tr = a.open[sym]
  a.open[sym] = nil
  tr.closed_ms, tr.reason = t, reason
  tr.entry_price = tr.entry_cost / tr.entry_qty
  tr.exit_price = tr.exit_qty > 0 and tr.exit_value / tr.exit_qty or nil
  tr.net = tr.pnl - tr.fees + tr.funding
  tr.entry_cost = nil
  a.trades:add(tr)
end

function Col:on_fill(a, f, order)
  local sym, qty, price = f.symbol, tonumber(f.quantity) or 0, tonumber(f.price) or 0
  local fee, rp, t = tonumber(f.fee) or 0, tonumber(f.realized_pnl) or 0, f.time_ms
  local signed = f.side == "buy" and qty or -qty
  a.fill_count = a.fill_count + 1
  local fr = self.fill_row
  fr[1], fr[2], fr[3], fr[4], fr[5], fr[6] = a.name, time.iso(t), sym, f.side, f.price, f.quantity
  fr[7], fr[8], fr[9], fr[10] = f.fee or "0", f.fee_asset, f.realized_pnl or "0", f.maker or false
  fr[11], fr[12], fr[13], fr[14], fr[15] = order and order.row.kind, order and order.row.type, f.client_order_id,
    tostring(f.trade_id), t
  self.fills_out:row(fr, #M.FILL_COLUMNS)
  a.fees = a.fees + fee
  self:digest_line(fmt("F|%s|%s|%s|%s|%s|%s|%s|%s", a.name, tostring(t), sym, f.side, f.price, f.quantity,
    tostring(f.fee), tostring(f.realized_pnl)))
  local before = a.pos[sym] or 0
  local after = before + signed
  if math.abs(after) < 1e-12 then after = 0 end
  a.pos[sym] = after
  local tr = a.open[sym]
  local kind = order and order.row and order.row.kind
  if before == 0 or not tr then
    open_trade(a, sym, signed > 0 and "long" or "short", f, qty, price, fee, t)
    return
  end
  if (before > 0) == (signed > 0) then -- adding to the position
    tr.qty, tr.entry_cost, tr.entry_qty = tr.qty + qty, tr.entry_cost + qty * price, tr.entry_qty + qty
    tr.max_qty = math.max(tr.max_qty, math.abs(after))
    tr.fees, tr.fills = tr.fees + fee, tr.fills + 1
    return
  end
  -- reducing: part of the fill closes, the rest (a flip) opens the other way
  local closing = math.min(qty, math.abs(before))
  local share = closing / qty
  tr.exit_value, tr.exit_qty = tr.exit_value + closing * price, tr.exit_qty + closing
  tr.pnl, tr.fees, tr.fills = tr.pnl + rp, tr.fees + fee * share, tr.fills + 1
  if after == 0 or (before > 0) ~= (after > 0) then
    close_trade(a, sym, t, REASON[kind] or "signal")
    if after ~= 0 then open_trade(a, sym, after > 0 and "long" or "short", f, math.abs(after), price, fee * (1 - share), t) end
  end
end

--- A venue event of an account (the agent's user stream).
function Col:event(_, name, ev)
  local a = self:account(name)
  if ev.kind == "order" then
    local o = ev.order
    local cur = a.orders[o.client_order_id]
    if cur then self:recorder(name):state(o.client_order_id, o, nil, ev.time_ms) end
    if ev.fill then self:on_fill(a, ev.fill, cur) end
    if cur then self:retire(a, o.client_order_id) end
  elseif ev.kind == "account" then
    local b = ev.balances and ev.balances[1]
    local wallet = b and tonumber(b.wallet)
    if ev.reason == "funding_fee" and b then
      local amount = tonumber(b.change) or 0
      a.funding = a.funding + amount
      for _, p in ipairs(ev.positions or {}) do
        local tr = a.open[p.symbol]
        if tr then tr.funding = tr.funding + amount end
      end
    elseif ev.reason == "liquidation" then
      for _, p in ipairs(ev.positions or {}) do
        local tr = a.open[p.symbol]
        if tr and (tonumber(p.quantity) or 0) == 0 then
          a.liquidations = a.liquidations + 1
          local loss = (wallet or 0) - (a.wallet or 0)
          tr.pnl = tr.pnl + loss
          tr.exit_qty = tr.qty
          a.pos[p.symbol] = 0
          close_trade(a, p.symbol, ev.time_ms, "liquidation")
          self:digest_line(fmt("L|%s|%s|%s|%.8f", name, tostring(ev.time_ms), p.symbol, loss))
        end
      end
    end
    if wallet then a.wallet = wallet end
  end
end

-- ---- the cycle -------------------------------------------------------------------------------------

local drow = {}

-- the cycle counts at which the process's memory is sampled (and the end):
-- what a long run keeps shows as growth between them
local MEMORY_AT = { [1000] = true, [10000] = true }

--- The resident memory now, kept as a sample at this cycle count.
function Col:sample_memory()
  collectgarbage()   -- what is kept, not the garbage of the last cycles
  local rss, peak = runtime.memory()
  if not rss then return end
  local m = self.memory
  m.samples[#m.samples + 1] = { cycles = self.cycles, rss = rss }
  m.rss, m.peak = rss, math.max(peak, rss)   -- ru_maxrss can lag the current RSS
end

--- The end of a cycle (vibex.agent finish): the counters, the equity
-- point, the decision row and the diary entry.
function Col:cycle(agent_acc, acc, rec, view)
  local a = self:account(acc.name)
  self.cycles = self.cycles + 1
  if MEMORY_AT[self.cycles] then self:sample_memory() end
  a.cycles = a.cycles + 1
  a.by_source[rec.source] = (a.by_source[rec.source] or 0) + 1
  local st = self.step_ms
  for k, v in pairs(rec.step_ms) do st[k] = (st[k] or 0) + v end
  if view then
    local n = #a.t + 1
    a.t[n], a.equity[n], a.wallet_at[n] = rec.started_ms, view.equity, view.wallet
    if #view.list > 0 then a.exposed = a.exposed + 1 end
  end
  local v = rec.validation
  local acted = false
  for _, d in ipairs(rec.decisions or {}) do
    if d.action ~= "hold" then acted = true end
  end
  if acted then a.taken = a.taken + 1 else a.held = a.held + 1 end
  if rec.valid == false then a.invalid = a.invalid + 1 end
  if rec.error then
    a.errors = a.errors + 1
    a.first_error = a.first_error or { cycle = rec.cycle_key, error = tostring(rec.error):sub(1, 300) }
  end
  for _, x in ipairs(v.rejected) do
    a.rejected = a.rejected + 1
    local why = tostring(x.reason or x.message or x.error or "invalid")
    a.rejection_reasons[why] = (a.rejection_reasons[why] or 0) + 1
  end
  for _, r in ipairs(v.refusals) do
    a.refused = a.refused + 1
    a.refusal_rules[r.rule] = (a.refusal_rules[r.rule] or 0) + 1
  end
  local tin, tout, lat, cost = nil, nil, nil, nil
  for _, c in ipairs(rec.llm_calls or {}) do
    a.llm_calls = a.llm_calls + 1
    tin, tout = (tin or 0) + (c.tokens_in or 0), (tout or 0) + (c.tokens_out or 0)
    lat, cost = (lat or 0) + (c.latency_ms or 0), (cost or 0) + (c.cost or 0)
  end
  if tin then a.tokens_in, a.tokens_out, a.cost = a.tokens_in + tin, a.tokens_out + tout, a.cost + cost end
  drow[1], drow[2], drow[3], drow[4], drow[5] = acc.name, rec.cycle_key, rec.started_ms, rec.strategy, rec.source
  drow[6], drow[7], drow[8], drow[9] = rec.provider, rec.model, rec.script_versions.prompt, rec.prompt
  drow[10] = rec.raw_answer
  drow[11] = rec.decisions and { source = rec.source, decisions = rec.decisions, intents = rec.intents } or nil
  drow[12], drow[13], drow[14], drow[15] = rec.valid, v, tin, tout
  drow[16], drow[17], drow[18], drow[19] = lat, cost, rec.experiment, rec.variant
  drow[20], drow[21], drow[22], drow[23] = rec.config_hash, nil, rec.error, rec.equity_start
  self.decisions:row(drow, #M.DECISION_COLUMNS)
  if self.diary then
    local body, tags = diary.entry(agent_acc, acc, rec, view)
    local t = {}
    for i, x in ipairs(tags or {}) do t[i] = '"' .. tostring(x):gsub('["\\]', "\\%0") .. '"' end
    self.diary:row({ acc.name, rec.cycle_key, body, "{" .. concat(t, ",") .. "}" }, 4)
  end
end

--- Close the spool files; positions still open stay open in the report.
function Col:close()
  self:sample_memory()   -- the end of the run, before the report's own tables
  for _, name in ipairs(self.names) do
    local a = self.accounts[name]
    local cids = {}
    for cid in pairs(a.orders) do cids[#cids + 1] = cid end
    table.sort(cids)
    for _, cid in ipairs(cids) do self:write_order(a, cid, a.orders[cid]) end
    a.orders = {}
  end
  self.decisions:close()
  if self.diary then self.diary:close() end
  self.orders_out:close()
  self.fills_out:close()
end

return M
