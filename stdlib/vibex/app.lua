--- vibex.app — `vibex run CONFIG`: the long-running mode.
--
-- Loads the config, configures logging, loads the strategy scripts with hot
-- reload and runs until SIGINT/SIGTERM. The agent loop (per-account decision
-- cycles) plugs in here.
local runtime = require "vibex.runtime"
local sandbox = require "vibex.sandbox"
local scripts = require "vibex.scripts"
local task = require "vibex.task"
local log = require "vibex.log"

local M = {}

local function load_config(path)
  local source, err = runtime.read_file(path)
  if not source then return nil, err end
  local fn, cerr = sandbox.compile(source, "@" .. path, sandbox.env { name = path })
  if not fn then return nil, cerr end
  local ok, cfg = pcall(fn)
  if not ok then return nil, tostring(cfg) end
  if type(cfg) ~= "table" then return nil, path .. ": a config must return a table" end
  return cfg
end

function M.run(path)
  local cfg, err = load_config(path)
  if not cfg then
    io.stderr:write("vibex: ", err, "\n")
    return 2
  end
  local rt = cfg.runtime or {}
  log.configure { dir = rt.log_dir, level = rt.log_level }
  local reg = scripts.registry { dir = runtime.home() .. "/scripts" }
  reg:load_all()
  reg:watch()
  log.info("vibex running", { config = path })
  local alive = require("vibex.metrics").gauge("vibex_up", "1 while vibex run is running")
  alive:set(1)
  local done = false
  runtime.on("shutdown", function() done = true; reg:close() end)
  while not done do
    local ok = pcall(task.sleep, 1000)
    if not ok then break end
  end
  alive:set(0)
  log.info("vibex stopped")
  return 0
end

return M
