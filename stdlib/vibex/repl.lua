--- vibex.repl — the interactive prompt, running on the loop.
--
-- Input is evaluated in its own task: waiting calls (http.request, sleeps,
-- exchange calls) work at the prompt, and timers and background tasks keep
-- running while you type or wait. Expressions print their values; Ctrl-C
-- cancels a running evaluation (or clears the line); Ctrl-D or :quit exits.
local core = require "vibex.core.repl"
local task = require "vibex.task"
local inspect = require "vibex.inspect"
local runtime = require "vibex.runtime"

local M = {}

local HELP = [[
Enter Lua statements or expressions; results are pretty-printed.
Multi-line input continues until the chunk is complete.
  :help       this text          :help NAME  a module's functions (:help http)
  :tasks      running tasks      :metrics    Prometheus metrics
  :quit       leave (or Ctrl-D)
Globals (pp = pretty-print):]]

--- The help text: the commands, then every preloaded global with its one line.
local function help_text()
  local prelude = require "vibex.prelude"
  local doc = require "vibex.doc"
  local names = {}
  for name in pairs(prelude.modules) do names[#names + 1] = name end
  table.sort(names)
  local out = { HELP }
  for _, name in ipairs(names) do
    local d = doc.module(prelude.modules[name])
    out[#out + 1] = ("  %-10s %s"):format(name, d and d.summary or prelude.modules[name])
  end
  return table.concat(out, "\n")
end

--- `:help NAME`: a global module's (or any module's) functions, one line each.
local function module_help(name)
  local prelude = require "vibex.prelude"
  local doc = require "vibex.doc"
  local d, err = doc.module(prelude.modules[name] or name)
  if not d then return nil, ("no module %s (:help lists them)"):format(name) end
  return doc.text(d)
end

local function compile(src)
  local fn, err = load("return " .. src, "=stdin", "t")
  if fn then return fn end
  fn, err = load(src, "=stdin", "t")
  if fn then return fn end
  return nil, err
end

local function incomplete(err)
  return err and (err:match("<eof>'?$") or err:match("unfinished string") or err:match("unfinished long"))
end

local function print_results(ok, ...)
  if not ok then
    io.stderr:write(tostring((...)), "\n")
    return
  end
  local n = select("#", ...)
  if n == 0 then return end
  local parts = {}
  for i = 1, n do parts[i] = inspect.inspect((select(i, ...))) end
  io.stdout:write(table.concat(parts, "\t"), "\n")
end

--- Completion of globals and fields: "http.req" → "http.request".
local function completer(word)
  local path, sep, last = word:match("^(.*)([%.:])([%w_]*)$")
  local base = _G
  if path then
    for part in path:gmatch("[^%.:]+") do
      if type(base) ~= "table" then return {} end
      base = rawget(base, part) or base[part]
    end
  else
    last = word
  end
  local out, seen = {}, {}
  local function add_from(t)
    if type(t) ~= "table" then return end
    for k, v in pairs(t) do
      if type(k) == "string" and k:sub(1, #last) == last and not seen[k] and k:match("^[%a_][%w_]*$") then
        if sep ~= ":" or type(v) == "function" then
          seen[k] = true
          out[#out + 1] = (path and (path .. sep) or "") .. k
        end
      end
    end
  end
  add_from(base)
  if base == _G then add_from(require("vibex.prelude").modules) end -- globals not loaded yet
  local mt = getmetatable(base)
  if type(mt) == "table" then add_from(rawget(mt, "__index")) end
  table.sort(out)
  return out
end

local function run_command(cmd)
  if cmd == ":quit" or cmd == ":q" or cmd == ":exit" then return "quit" end
  local topic = cmd:match("^:help%s+(%S+)$")
  if cmd == ":help" then print(help_text())
  elseif topic then
    local text, err = module_help(topic)
    if text then print(text) else io.stderr:write(err, "\n") end
  elseif cmd == ":tasks" then print(inspect.inspect(task.list()))
  elseif cmd == ":metrics" then io.stdout:write(require("vibex.metrics").render())
  else io.stderr:write("unknown command ", cmd, " (try :help)\n") end
end

--- Where the REPL keeps its history: $XDG_STATE_HOME/vibex/history
--- (default ~/.local/state/vibex/history); the directory is made when missing.
function M.history_path()
  local base = os.getenv("XDG_STATE_HOME")
  if not base or base == "" or base:sub(1, 1) ~= "/" then base = (os.getenv("HOME") or ".") .. "/.local/state" end
  local dir = base .. "/vibex"
  runtime.mkdir_p(dir)
  return dir .. "/history"
end

--- Run the prompt until :quit or end of input.
function M.run()
  require("vibex.prelude").install()
  local interactive = core.interactive()
  local history = M.history_path()
  if interactive then
    core.load_history(history)
    core.set_completer(completer)
    local v = runtime.versions()
    print(("vibex %s (LuaJIT %s, libuv %s, libcurl %s) — :help for help, Ctrl-D to quit")
      :format(v.vibex, v.luajit:gsub("^LuaJIT ", ""), v.libuv, v.libcurl))
  end
  local running
  local on_sigint = runtime.on("sigint", function()
    if running then running:cancel() else core.interrupt() end
  end)
  local buffer = nil
  while true do
    local line = task.await(core.readline(buffer and ">> " or "> "))
    if line == nil then break end
    if buffer == nil and (line:match("^%s*:%a+%s*$") or line:match("^%s*:help%s+%S+%s*$")) then
      if run_command(line:match("^%s*(.-)%s*$")) == "quit" then break end
    elseif buffer ~= nil or line:match("%S") then
      buffer = buffer and (buffer .. "\n" .. line) or line
      local fn, err = compile(buffer)
      if fn then
        if interactive then core.add_history(buffer) end
        buffer = nil
        running = task.spawn("repl-eval", function()
          return xpcall(fn, function(e)
            if task.is_cancelled(e) then return "cancelled" end
            return debug.traceback(tostring(e), 2):gsub("\n%s*%[C%]: in function 'xpcall'.*", "")
          end)
        end)
        local function after_join(joined, ...)
          if joined then print_results(...) else print_results(false, (...)) end
        end
        after_join(running:join())
        running = nil
        io.stdout:flush()
      elseif not incomplete(err) then
        buffer = nil
        io.stderr:write(err, "\n")
      end
    end
  end
  runtime.off("sigint", on_sigint)
  if interactive then core.save_history(history) end
  return 0
end

M.completer = completer
return M
