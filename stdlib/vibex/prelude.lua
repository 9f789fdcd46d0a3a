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

--- Install the globals into `env` (default _G). Modules load on first use.
function M.install(env)
  env = env or _G
  for name, modname in pairs(M.modules) do
    if rawget(env, name) == nil then
      local ok, mod = pcall(require, modname)
      if ok then rawset(env, name, mod) end
    end
  end
  rawset(env, "pp", require("vibex.inspect").pp)
  return env
end

return M
