--- vibex.secret — secrets referenced by name, never written in configs.
--
-- In a config, `env "ASTER_API_SECRET"` makes a reference. Loading the
-- config resolves it (process environment first, then the `.env` file next
-- to the config) into a Secret object:
--
--   local s = cfg.accounts[1].exchange.credentials.api_secret
--   tostring(s)   --> <secret ASTER_API_SECRET>   (what logs, the REPL, errors see)
--   s:reveal()    --> the value, for the one place that signs requests
--
-- The value lives in a private weak table, not in the object, so walking
-- the config with pairs, json or inspect cannot reach it; it is also
-- registered with the log redactor, so it is masked even if code reveals it
-- and logs it by mistake.
local logcore = require "vibex.core.log"

local M = {}

local values = setmetatable({}, { __mode = "k" })

local Ref = {}
Ref.__index = Ref
Ref.__tostring = function(r) return ("<secret reference %s>"):format(r.name) end
Ref.__describe = function(r) return ("secret reference env %q"):format(r.name) end

local Secret = {}
Secret.__index = Secret
Secret.__tostring = function(s) return ("<secret %s>"):format(s.name) end
Secret.__describe = function(s) return ("secret %s"):format(s.name) end
function Secret.reveal(s) return values[s] end
function Secret.is_set(s) return values[s] ~= nil and values[s] ~= "" end

--- A reference to the secret `name` (what `env "NAME"` returns in a config).
function M.ref(name)
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    error(("env(name): expected an environment variable name like \"ASTER_API_SECRET\", got %s")
      :format(type(name) == "string" and ("%q"):format(name) or type(name)), 2)
  end
  return setmetatable({ name = name }, Ref)
end

function M.is_ref(v) return type(v) == "table" and getmetatable(v) == Ref end
function M.is_secret(v) return type(v) == "table" and getmetatable(v) == Secret end

--- Make a Secret holding value (registered with the log redactor).
function M.new(name, value)
  local s = setmetatable({ name = name }, Secret)
  values[s] = value
  -- the redactor holds a bounded set; a full set must not stop a config load
  if type(value) == "string" then pcall(logcore.add_secret, value) end
  return s
end

--- Two secrets are the same when they have the same name and value.
function M.same(a, b)
  return M.is_secret(a) and M.is_secret(b) and a.name == b.name and values[a] == values[b]
end

return M
