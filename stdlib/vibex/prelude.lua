--- vibex.prelude — the globals of `vibex FILE.lua`, `vibex -e` and the REPL:
--- the stdlib's main modules, so one-liners need no require.
--- (Sandboxed strategy scripts do not get these; see vibex.sandbox.)
local M = {}

M.modules = {
  task = "vibex.task", http = "vibex.http", json = "vibex.json", log = "vibex.log",
  metrics = "vibex.metrics", breaker = "vibex.breaker", inspect = "vibex.inspect",
  runtime = "vibex.runtime", process = "vibex.process", fswatch = "vibex.fswatch",
  scripts = "vibex.scripts", sandbox = "vibex.sandbox", config = "vibex.config",
  crypto = "vibex.crypto", ta = "vibex.ta", exchange = "vibex.exchange", decimal = "vibex.decimal",
  db = "vibex.db", ws = "vibex.ws", errors = "vibex.errors", llm = "vibex.llm", doc = "vibex.doc",
}

--- Install the globals into `env` (default _G). Each module loads on first
--- use (a metatable on env), so a script pays only for what it touches and
--- a module is never loaded behind its back.
function M.install(env)
  env = env or _G
  local mt = getmetatable(env)
  if mt and mt.vibex_prelude then return env end
  assert(mt == nil, "prelude.install: the environment already has a metatable")
  setmetatable(env, { vibex_prelude = true, __index = function(t, name)
    local modname = M.modules[name]
    if modname == nil then return nil end
    local mod = require(modname)
    rawset(t, name, mod)
    return mod
  end })
  rawset(env, "pp", require("vibex.inspect").pp)
  return env
end

return M
