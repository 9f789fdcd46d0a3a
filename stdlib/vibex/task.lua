--- vibex.task — tasks: Lua coroutines scheduled on the event loop.
--
-- Every waiting call (task.sleep, http.request, a query, t:join, …) yields
-- the calling task; the loop resumes it when the result is there. Code reads
-- straight through and never blocks other tasks.
--
--   local t = task.spawn(function(a, b) task.sleep(100); return a + b end, 1, 2)
--   local ok, sum = t:join()                 --> true, 3
--   task.every(1000, function() log.info("tick") end)
--   local res, err = task.timeout(500, http.request, {url = "http://127.0.0.1:8080/"})
--
-- An error inside a task is logged with its traceback (channel app, and
-- errors.log) and ends only that task; `t:join()` then returns false, msg.
local core = require "vibex.core.task"

local INTERRUPT = core.INTERRUPT
local CANCELLED = core.CANCELLED
local TIMEOUT_MT = core.TIMEOUT_MT
local error, select, type, getmetatable = error, select, type, getmetatable

local M = {}

--- Raise the error of an interrupt (cancel, deadline) delivered to a wait,
--- or pass the wait's results through. Every waiting primitive ends in this.
local function await(first, ...)
  if first == INTERRUPT then error((...), 0) end
  return first, ...
end
M.await = await

local raw_sleep, raw_join, raw_yield = core.sleep, core.join, core.yield

--- Spawn a task: `task.spawn(fn, ...)` or `task.spawn("name", fn, ...)`.
--- It starts on the next loop turn. Returns its handle.
---@param ... any [name,] fn, args…
---@return userdata task the task handle (t:join, t:cancel)
M.spawn = core.spawn

--- Suspend the current task for `ms` milliseconds.
---@param ms number milliseconds
function M.sleep(ms) await(raw_sleep(ms)) end

local raw_park = core.park
--- Wait until another task calls task.unpark(this_task, ...); returns those
--- values. `io` = true keeps the wait alive through the shutdown grace
--- period (a query waiting for a pooled connection). Cancel and
--- task.timeout interrupt it like any wait.
---@param io boolean|nil keep the wait alive through the shutdown grace period
---@return any ... the values given to task.unpark
function M.park(io) return await(raw_park(io)) end

--- Wake a parked task with values; false when it is not parked.
---@param ... any task, values…
---@return boolean woken false when the task is not parked
M.unpark = core.unpark

--- Let other ready tasks, timers and I/O run, then continue.
function M.yield() await(raw_yield()) end

--- Hold the garbage collector until the running task next waits, errors or
--- returns: a short latency-critical stretch (a decision to its order's
--- bytes) runs with no collector step. The stretch's allocations are
--- collected later. True when held; false outside a task, or when the
--- collector is already stopped (collectgarbage("stop") is left alone).
M.hold_gc = core.hold_gc
--- End the running task's hold before it waits (code that may never wait,
--- such as a backtest's simulated venue, must not starve the collector).
M.release_gc = core.release_gc

--- The running task's handle (nil outside a task).
---@return userdata|nil task
M.current = core.current

--- Tasks not yet finished: list of {id, name, status, run_ms}.
---@return table tasks {{id, name, status, run_ms}, …}
M.list = core.list
M.alive = core.alive

--- Loop time in milliseconds (monotonic, cached per loop turn).
---@return number ms
M.now = core.now
--- Nanoseconds from a monotonic clock (uncached).
---@return number ns
M.hrtime = core.hrtime

--- True when `err` is the error a timeout raises inside `task.timeout`.
---@param err any
---@return boolean
function M.is_timeout(err) return type(err) == "table" and getmetatable(err) == TIMEOUT_MT end

--- True when `err` is the error a cancelled task unwinds with.
---@param err any
---@return boolean
function M.is_cancelled(err) return err == CANCELLED end

local function finish_timeout(level, ms, ok, ...)
  core.deadline_pop(level)
  if ok then return ... end
  local err = ...
  if M.is_timeout(err) and err.level == level then
    return nil, require("vibex.errors").new("timeout", ("timeout after %d ms"):format(ms))
  end
  error(err, 0)
end

--- Run `fn(...)` in the current task with a deadline: any wait inside it
--- that is still pending after `ms` milliseconds is aborted (an HTTP request
--- is cancelled, a sleep cut short). Returns fn's results, or
--- nil, err (a vibex.errors value of kind "timeout": "timeout after N ms").
---@param ms number the deadline
---@param fn function
---@param ... any fn's arguments
---@return any ... fn's results, or nil and a vibex.errors value of kind "timeout"
function M.timeout(ms, fn, ...)
  if type(fn) ~= "function" then error("task.timeout(ms, fn, ...): fn must be a function", 2) end
  local level = core.deadline_push(ms)
  return finish_timeout(level, ms, pcall(fn, ...))
end

local methods = core.methods

--- t:join([timeout_ms]) -> true, results... | false, message
--- Waits for the task to end. A task that failed or was cancelled gives
--- false and its error message; a join that times out gives false, "timeout…".
function methods.join(t, ms)
  if ms == nil then return await(raw_join(t)) end
  local res = { M.timeout(ms, function() return await(raw_join(t)) end) }
  if res[1] == nil and type(res[2]) == "table" and res[2].kind == "timeout" then return false, res[2].message end
  return unpack(res, 1, table.maxn(res))
end

--- Run `fn(...)` every `ms` milliseconds in its own task, on a fixed
--- schedule (no drift; ticks missed while `fn` ran long are skipped). An
--- error in one tick is logged and the schedule goes on. Returns the task;
--- cancel it to stop. Ends by itself when the runtime shuts down.
---@param ms number the period
---@param fn function
---@param ... any fn's arguments
---@return userdata task cancel it to stop
function M.every(ms, fn, ...)
  if type(ms) ~= "number" or ms <= 0 then error("task.every: ms must be a positive number", 2) end
  if type(fn) ~= "function" then error("task.every: fn must be a function", 2) end
  local args, n = { ... }, select("#", ...)
  return M.spawn("every", function()
    local log = require "vibex.log"
    local now = core.now
    local next_at = now() + ms
    while true do
      local wait = next_at - now()
      M.sleep(wait > 0 and wait or 0)
      local ok, err = xpcall(function() return fn(unpack(args, 1, n)) end, debug.traceback)
      if not ok then
        if M.is_cancelled(err) then error(err, 0) end
        log.error("task.every: tick failed: " .. tostring(err))
      end
      next_at = next_at + ms
      local t = now()
      if next_at <= t then next_at = t + ms - (t - next_at) % ms end
    end
  end)
end

--- Wait for all tasks; returns a list of {ok, results...} per task.
---@param tasks userdata[]
---@param ms number|nil a deadline for each join
---@return table results {{ok, results…}, …}
function M.join_all(tasks, ms)
  local out = {}
  for i, t in ipairs(tasks) do out[i] = { t:join(ms) } end
  return out
end

return M
