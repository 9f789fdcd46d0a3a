--- vibex.ab — experiments: which variant (model, prompt, context, policy,
-- params) each unit gets, persisted so it survives restarts and reloads.
--
--   local lab = ab.new{pool = pool, config = function() return cfg end}
--   local a = lab:variant_for(acc, cycle_key, now_ms)
--   -- a = {experiment = e, version = 3, variant = v, unit = "trend/2026-…"} or nil
--   lab:reward(a, 1)                       -- the outcome Thompson sampling learns from
--
-- Assignment is deterministic from (experiment, version, unit):
--   fixed     a uniform number from SHA-256(experiment, version, unit) picks
--             by weight;
--   thompson  after min_trials outcomes per variant, a Beta(1 + successes,
--             1 + failures) draw per variant from a generator seeded with the
--             same hash, highest draw wins (traffic moves to what works, the
--             choice is still reproducible);
--   arena     the i-th account of the experiment gets the i-th variant.
-- The first assignment of a unit is stored (experiment_assignments) and
-- read back afterwards, so a restart, a reload or a second runtime gives
-- the same answer. The version is the experiment's definition hashed:
-- changing its variants, split or unit starts a new version (and new
-- assignments) instead of reshuffling the old one.
local config = require "vibex.config"
local crypto = require "vibex.crypto"
local json = require "vibex.json"
local log = require "vibex.log"
local vtime = require "vibex.time"

local M = {}

local alog = log.channel("app")

--- The part of an experiment that decides assignment (what the version hashes).
function M.definition(e)
  local vs = {}
  for i, v in ipairs(e.variants) do
    vs[i] = { name = v.name, llm = v.llm, model = v.model, context = v.context, prompt = v.prompt, policy = v.policy,
              params = v.params, weight = v.weight }
  end
  return { unit = e.unit, split = e.split, outcome = e.outcome, accounts = e.accounts, min_trials = e.min_trials, variants = vs }
end

function M.hash(e) return config.hash(M.definition(e)) end

--- A uniform number in [0, 1) from strings (SHA-256, 52 bits).
function M.uniform(...)
  local h = crypto.sha256(table.concat({ ... }, "\0"))
  return tonumber(h:sub(1, 13), 16) / 2 ^ 52
end

-- A seeded generator of uniforms in (0, 1): xorshift128 on 32-bit words
-- (LuaJIT's bit ops), its state from SHA-256 of the seed. Fast enough for
-- bootstrap resampling, and the same numbers on every machine.
local function stream(seed)
  local h = crypto.sha256(tostring(seed))
  local x, y, z, w = tonumber(h:sub(1, 8), 16), tonumber(h:sub(9, 16), 16), tonumber(h:sub(17, 24), 16),
                     tonumber(h:sub(25, 32), 16)
  if x + y + z + w == 0 then x = 1 end
  x, y, z, w = bit.tobit(x), bit.tobit(y), bit.tobit(z), bit.tobit(w)
  return function()
    local t = bit.bxor(x, bit.lshift(x, 11))
    x, y, z = y, z, w
    w = bit.bxor(bit.bxor(w, bit.rshift(w, 19)), bit.bxor(t, bit.rshift(t, 8)))
    local u = (w % 4294967296 + 0.5) / 4294967296
    return u
  end
end

local function normal(r) return math.sqrt(-2 * math.log(r())) * math.cos(2 * math.pi * r()) end

-- Gamma(k, 1) for k >= 1 (Marsaglia and Tsang).
local function gamma(r, k)
  local d = k - 1 / 3
  local c = 1 / math.sqrt(9 * d)
  while true do
    local x, v
    repeat
      x = normal(r)
      v = 1 + c * x
    until v > 0
    v = v * v * v
    local u = r()
    if u < 1 - 0.0331 * x ^ 4 or math.log(u) < 0.5 * x * x + d * (1 - v + math.log(v)) then return d * v end
  end
end

--- A Beta(a, b) draw (a, b >= 1) from the generator r.
function M.beta(r, a, b)
  local x, y = gamma(r, a), gamma(r, b)
  return x / (x + y)
end
M.stream = stream

-- ---- choosing ----------------------------------------------------------------------------------

local function pick_weighted(e, u)
  local total = 0
  for _, v in ipairs(e.variants) do total = total + v.weight end
  local x, acc = u * total, 0
  for _, v in ipairs(e.variants) do
    acc = acc + v.weight
    if x < acc and v.weight > 0 then return v end
  end
  for i = #e.variants, 1, -1 do if e.variants[i].weight > 0 then return e.variants[i] end end
end

local function pick_thompson(e, version, unit, stats)
  -- every variant first gets min_trials outcomes (the least tried goes next)
  local least, least_n
  for _, v in ipairs(e.variants) do
    local s = stats[v.name] or { ok = 0, bad = 0 }
    local n = s.ok + s.bad
    if v.weight > 0 and n < (e.min_trials or 0) and (not least_n or n < least_n) then least, least_n = v, n end
  end
  if least then return least end
  local r = stream(table.concat({ e.name, tostring(version), unit }, "\0"))
  local best, best_draw
  for _, v in ipairs(e.variants) do
    if v.weight > 0 then
      local s = stats[v.name] or { ok = 0, bad = 0 }
      local draw = M.beta(r, 1 + s.ok, 1 + s.bad)
      if not best_draw or draw > best_draw then best, best_draw = v, draw end
    end
  end
  return best
end

--- The variant a unit gets, without persistence (for tests and dry runs).
function M.choose(e, version, unit, stats)
  if e.split == "arena" then
    local account = unit:match("^([^/]+)")
    for i, name in ipairs(e.accounts) do if name == account then return e.variants[i] end end
    return nil
  end
  if e.split == "thompson" then return pick_thompson(e, version, unit, stats or {}) end
  return pick_weighted(e, M.uniform(e.name, tostring(version), unit))
end

-- ---- the lab ---------------------------------------------------------------------------------------

local Lab = {}
Lab.__index = Lab

--- o: pool (vibex.db pool; without one, versions and assignments live in
-- memory), config (a function returning the current config, or the table).
function M.new(o)
  return setmetatable({ pool = o.pool, get_config = type(o.config) == "function" and o.config or function() return o.config end,
                        versions = {}, assigned = {}, stats = {} }, Lab)
end

local function time_ms(s, end_of_day)
  if not s then return nil end
  local y, mo, d, hh, mm, ss = s:match("^(%d+)%-(%d+)%-(%d+)T?(%d*):?(%d*):?(%d*)")
  local days = vtime.date_ms(("%s-%s-%s"):format(y, mo, d))
  if hh == "" then return days + (end_of_day and 86400000 or 0) end
  return days + ((tonumber(hh) * 60 + (tonumber(mm) or 0)) * 60 + (tonumber(ss) or 0)) * 1000
end

--- The experiment an account is in now (enabled, started, not stopped), or nil.
function Lab:experiment_for(account, now_ms)
  local cfg = self.get_config()
  for _, e in ipairs(cfg.experiments or {}) do
    if e.enabled then
      for _, name in ipairs(e.accounts) do
        if name == account then
          local from, to = time_ms(e.start), time_ms(e.stop, true)
          if (not from or now_ms >= from) and (not to or now_ms < to) then return e end
        end
      end
    end
  end
end

--- The stored version of an experiment's current definition (created on first use).
function Lab:version(e)
  local hash = M.hash(e)
  local key = e.name .. "\0" .. hash
  local v = self.versions[key]
  if v then return v end
  if not self.pool then
    local n = 0
    for k in pairs(self.versions) do if k:sub(1, #e.name + 1) == e.name .. "\0" then n = n + 1 end end
    v = { id = nil, version = n + 1, hash = hash }
  else
    local rows, err = self.pool:query([[
      WITH ins AS (
        INSERT INTO experiments (name, version, hash, definition)
        SELECT $1, COALESCE((SELECT max(version) FROM experiments WHERE name = $1), 0) + 1, $2, $3::jsonb
        WHERE NOT EXISTS (SELECT 1 FROM experiments WHERE name = $1 AND hash = $2)
        ON CONFLICT DO NOTHING
        RETURNING experiment_id, version)
      SELECT experiment_id, version FROM ins
      UNION ALL SELECT experiment_id, version FROM experiments WHERE name = $1 AND hash = $2]],
      e.name, hash, json.encode(M.definition(e)))
    if not rows or not rows[1] then return nil, err or "experiment version not stored" end
    v = { id = rows[1].experiment_id, version = rows[1].version, hash = hash }
    alog:info("experiment version", { experiment = e.name, version = v.version, hash = hash:sub(1, 12) })
  end
  self.versions[key] = v
  return v
end

-- Successes and failures per variant so far (Thompson sampling).
function Lab:_stats(v)
  local key = v.id or v.hash
  local s = self.stats[key]
  if s then return s end
  s = {}
  if self.pool and v.id then
    local rows = self.pool:query([[SELECT variant, count(*) FILTER (WHERE reward > 0) AS ok,
      count(*) FILTER (WHERE reward <= 0) AS bad FROM experiment_assignments WHERE experiment_id = $1 GROUP BY variant]], v.id)
    for _, r in ipairs(rows or {}) do s[r.variant] = { ok = tonumber(r.ok), bad = tonumber(r.bad) } end
  end
  self.stats[key] = s
  return s
end

--- Assign (or look up) the variant of a unit. Returns the variant table,
-- the version record | nil, err.
function Lab:assign(e, unit)
  local v, verr = self:version(e)
  if not v then return nil, verr end
  local key = v.hash .. "\0" .. unit
  local name = self.assigned[key]
  if not name and self.pool and v.id then
    local rows = self.pool:query("SELECT variant FROM experiment_assignments WHERE experiment_id = $1 AND unit = $2", v.id, unit)
    name = rows and rows[1] and rows[1].variant
  end
  if not name then
    local chosen = M.choose(e, v.version, unit, self:_stats(v))
    if not chosen then return nil, ("experiment %s has no variant for %s"):format(e.name, unit) end
    name = chosen.name
    if self.pool and v.id then
      local rows = self.pool:query([[
        WITH ins AS (INSERT INTO experiment_assignments (experiment_id, unit, variant) VALUES ($1, $2, $3)
                     ON CONFLICT (experiment_id, unit) DO NOTHING RETURNING variant)
        SELECT variant FROM ins UNION ALL
        SELECT variant FROM experiment_assignments WHERE experiment_id = $1 AND unit = $2]], v.id, unit, name)
      name = rows and rows[1] and rows[1].variant or name -- another runtime may have assigned it first
    end
  end
  self.assigned[key] = name
  for _, var in ipairs(e.variants) do
    if var.name == name then return var, v end
  end
  return nil, ("experiment %s: stored variant %q is not in version %d"):format(e.name, name, v.version)
end

--- The experiment, version and variant for an account's cycle now, or nil.
function Lab:variant_for(acc, cycle_key, now_ms)
  local e = self:experiment_for(acc.name, now_ms)
  if not e then return nil end
  local unit = e.unit == "account" and acc.name or (acc.name .. "/" .. cycle_key)
  local var, v = self:assign(e, unit)
  if not var then
    alog:error("experiment assignment failed; the cycle runs without it", { experiment = e.name, unit = unit, error = tostring(v) })
    return nil
  end
  return { experiment = e, version = v.version, version_id = v.id, hash = v.hash, variant = var, unit = unit }
end

--- Record a unit's outcome (1 = success, 0 = failure) for Thompson sampling.
function Lab:reward(a, reward)
  local s = self:_stats({ id = a.version_id, hash = a.hash })
  local c = s[a.variant.name] or { ok = 0, bad = 0 }
  if reward > 0 then c.ok = c.ok + 1 else c.bad = c.bad + 1 end
  s[a.variant.name] = c
  if self.pool and a.version_id then
    self.pool:query("UPDATE experiment_assignments SET reward = $3 WHERE experiment_id = $1 AND unit = $2",
      a.version_id, a.unit, reward)
  end
end

return M
