--- db.runs — runs as records: a replay or backtest of a config over a data
-- range, or one start of a live or paper account. Every fact a run records
-- carries its run_id (migration 0007).
--
--   local run, resumed = repos.runs:begin{kind = "replay", identity = h, accounts = {"a", "b"}, …}
--   repos.runs:finish(run.run_id, "completed")
--
-- A replay or backtest whose identity (config, scripts, data) matches an
-- unfinished run (crashed, stopped, or left running by a dead process)
-- resumes it: the same run_id, so writing its facts again changes nothing.
-- A live or paper start is always a new run; earlier runs of the same
-- accounts left unfinished by a dead process are marked crashed.
local json = require "vibex.json"
local pg = require "vibex.db.pg"
local runtime = require "vibex.runtime"

local R = {}
R.__index = R

-- Unfinished runs whose process is gone: crashed. Which runs: those of an
-- identity (a string), or o = {identity, kind}; o.keep_own leaves this
-- process's own runs alone (else they count as gone: a new start of the
-- same identity means the old one is over); o.reason goes into details.error.
-- Returns the list of run ids marked | nil, err.
function R:mark_crashed(o)
  if type(o) ~= "table" then o = { identity = o } end
  local rows, err = self.pool:query([[SELECT run_id, pid FROM runs WHERE outcome IS NULL
    AND ($1::text IS NULL OR identity = $1) AND ($2::text IS NULL OR kind = $2)]], o.identity, o.kind)
  if not rows then return nil, err end
  local marked = {}
  for _, r in ipairs(rows) do
    local pid = tonumber(r.pid)
    local own = pid == runtime.pid()
    if not ((own and o.keep_own) or (pid and not own and runtime.pid_alive(pid))) then
      local _, uerr = self.pool:query([[UPDATE runs SET outcome = 'crashed', ended_at = updated_at,
          details = CASE WHEN $2::text IS NULL THEN details ELSE details || jsonb_build_object('error', $2::text) END
        WHERE run_id = $1 AND outcome IS NULL]], r.run_id, o.reason)
      if uerr then return nil, uerr end
      marked[#marked + 1] = tonumber(r.run_id)
    end
  end
  return marked
end

--- o: kind, identity, accounts {names}, config_hash, script_versions (table),
-- data_from_ms, data_to_ms, details (table), resume (true: carry on an
-- unfinished run of the same identity). Returns the run row, resumed, the
-- ids of earlier runs just found crashed | nil, err.
function R:begin(o)
  local crashed, err = self:mark_crashed(o.identity)
  if not crashed then return nil, err end
  if o.resume then
    local rows, rerr = self.pool:query([[UPDATE runs SET pid = $2, resumes = resumes + 1, resumed_at = now(), outcome = NULL,
        ended_at = NULL
      WHERE run_id = (SELECT run_id FROM runs WHERE identity = $1 AND outcome IN ('crashed', 'stopped')
                      ORDER BY run_id DESC LIMIT 1)
      RETURNING *]], o.identity, runtime.pid())
    if not rows then return nil, rerr end
    if rows[1] then return rows[1], true, crashed end
  end
  local rows, ierr = self.pool:query([[INSERT INTO runs (kind, identity, accounts, config_hash, script_versions, data_from,
      data_to, pid, details)
    VALUES ($1, $2, $3::text[], $4, $5::jsonb, to_timestamp($6::float8 / 1000), to_timestamp($7::float8 / 1000), $8, $9::jsonb)
    RETURNING *]], o.kind, o.identity, pg.text_array(o.accounts), o.config_hash, json.encode(o.script_versions or {}),
    o.data_from_ms, o.data_to_ms, runtime.pid(), json.encode(o.details or {}))
  if not rows then return nil, ierr end
  return rows[1], false, crashed
end

--- End a run: outcome "completed" | "stopped" | "failed"; details are merged in.
function R:finish(run_id, outcome, details)
  return self.pool:query([[UPDATE runs SET outcome = $2, ended_at = now(), details = details || $3::jsonb
    WHERE run_id = $1]], run_id, outcome, json.encode(details or {}))
end

function R:get(run_id)
  local rows, err = self.pool:query("SELECT * FROM runs WHERE run_id = $1", run_id)
  if not rows then return nil, err end
  return rows[1]
end

--- The newest runs, newest first (o.kind, o.limit).
function R:list(o)
  o = o or {}
  return self.pool:query([[SELECT * FROM runs WHERE ($1::text IS NULL OR kind = $1) ORDER BY run_id DESC LIMIT $2]],
    o.kind, o.limit or 20)
end

return R
