--- vibex.doc — a module's documentation, read from its source: the summary
-- line on top and the `---` comment (LuaCATS annotations included) above each
-- public function. The REPL's `:help NAME` and the README's API section use it.
--
--   local d = doc.module("vibex.http")
--   d.summary                     --> "asynchronous HTTP client (libcurl on the loop)."
--   d.functions[1]                --> {name = "request", args = "opts", doc = {…lines}, params = {…}, returns = {…}}
local M = {}

--- The summary (the top line after the module's name) and the public
--- functions of a module, in source order: nil, err when it has no source.
---@param modname string a module name ("vibex.http")
---@return table|nil doc {name, path, summary, functions = {{name, args, doc, params, returns}}}
---@return string|nil err
function M.module(modname)
  local path = package.searchpath(modname, package.path)
  if not path then return nil, ("no Lua source for %s"):format(modname) end
  local f = io.open(path, "rb")
  if not f then return nil, ("cannot read %s"):format(path) end
  local text = f:read("*a")
  f:close()
  return M.parse(text, modname, path)
end

local function summary_of(first)
  local s = first and first:match("^%-%-%-?%s*[%w_.]+%s+—%s+(.*)$")
  return s
end

--- Parse a module's source text (see module()).
---@param text string
---@param modname string
---@param path string|nil
---@return table doc
function M.parse(text, modname, path)
  local out = { name = modname, path = path, functions = {} }
  local lines = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  -- the summary: the header's first sentence, which may go on over a few comment lines
  local head = summary_of(lines[1])
  local i = 2
  while head and not head:match("%.$") and lines[i] and lines[i]:match("^%-%-%-?%s*%S") and i < 6 do
    head = head .. " " .. lines[i]:gsub("^%-%-%-?%s*", "")
    i = i + 1
  end
  out.summary = head and (head:match("^(.-%.)%s") or head)
  local block = {}
  for i, line in ipairs(lines) do
    local name, args = line:match("^function M[%.:]([%w_]+)%s*%((.-)%)")
    if not name then name, args = line:match("^M%.([%w_]+)%s*=%s*function%s*%((.-)%)") end
    local assigned = not name and #block > 0 and line:match("^M%.([%w_]+)%s*=%s*[%w_.]+%s*$") -- M.spawn = core.spawn
    if assigned then name, args = assigned, "…" end
    if name then
      local fn = { name = name, args = args, line = i, doc = {}, params = {}, returns = {}, assigned = assigned and true }
      for _, d in ipairs(block) do
        local p = d:match("^@param%s+(.*)$")
        local r = d:match("^@return%s+(.*)$")
        if p then fn.params[#fn.params + 1] = p
        elseif r then fn.returns[#fn.returns + 1] = r
        elseif not d:match("^@") then fn.doc[#fn.doc + 1] = d end
      end
      out.functions[#out.functions + 1] = fn
      block = {}
    elseif line:match("^%-%-%-") then
      block[#block + 1] = line:gsub("^%-%-%-%s?", "")
    elseif line:match("^%-%-") and #block > 0 then -- a doc block goes on in plain comments
      block[#block + 1] = line:gsub("^%-%-%s?", "")
    else
      block = {}
    end
  end
  return out
end

--- The first sentence of a function's documentation (its doc lines joined).
---@param fn table a function entry of module()
---@return string
function M.summary(fn)
  local text = table.concat(fn.doc, " "):gsub("%s+", " ")
  return text:match("^(.-[.?!])%s") or text:match("^(.-[.?!])$") or text
end

--- The functions of a module as help text: one line each (signature — first doc line).
---@param d table a module() result
---@return string
function M.text(d)
  local out = { ("%s — %s"):format(d.name, d.summary or "") }
  for _, fn in ipairs(d.functions) do
    local first = M.summary(fn)
    out[#out + 1] = ("  %s(%s)%s"):format(fn.name, fn.args, first ~= "" and ("  " .. first) or "")
  end
  return table.concat(out, "\n")
end

return M
