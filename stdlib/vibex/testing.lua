--- vibex.testing — `vibex test`: busted, run inside the runtime.
--
-- Specs run in a task, so they can call every primitive (http.request,
-- task.sleep, process.spawn, …) and wait on it; the loop keeps turning.
local M = {}

function M.run(args)
  local argv = { [0] = "vibex test" }
  local has_path = false
  for _, a in ipairs(args) do
    argv[#argv + 1] = a
    if a:sub(1, 1) ~= "-" then has_path = true end
  end
  if not has_path then argv[#argv + 1] = "tests/spec" end
  _G.arg = argv
  require("vibex.prelude").install()
  local real_exit = os.exit
  local exit_code = 0
  os.exit = function(code)
    exit_code = (code == true or code == nil) and 0 or (code == false and 1 or code)
    error({ busted_exit = true }, 0)
  end
  local ok, err = pcall(function() require("busted.runner")({ standalone = false }) end)
  os.exit = real_exit
  io.stdout:flush()
  require("vibex.process").kill_all("KILL")
  if ok then return exit_code end
  if type(err) == "table" and err.busted_exit then return exit_code end
  if err == nil then return 1 end -- busted signals failures with error() under Lua 5.1
  io.stderr:write("vibex test: ", tostring(err), "\n")
  return 1
end

return M
