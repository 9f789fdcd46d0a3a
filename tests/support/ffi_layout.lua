--- Checks every struct of vibex.cdef against its C header: sizeof and the
-- offset of every field, as the C compiler lays them out and as LuaJIT's FFI
-- does. `make` runs it (a drifted layout fails the build); so does the
-- test suite. Usage: vibex tests/support/ffi_layout.lua [CDEF_MODULE_FILE]
-- (a file in vibex.cdef's format; default: the installed one). Exit 0 when
-- every layout matches, 1 with one line per difference otherwise.
local ffi = require "ffi"
local process = require "vibex.process"
local runtime = require "vibex.runtime"

local args = { ... }
-- read a registry file without declaring it (its types may be declared already)
local function registry_of(path)
  local chunk = assert(loadfile(path))
  local quiet_ffi = { cdef = function() end, C = {} }
  setfenv(chunk, setmetatable({ require = function(n) return n == "ffi" and quiet_ffi or require(n) end },
                              { __index = _G }))
  return chunk()
end
local reg = args[1] and registry_of(args[1]) or require "vibex.cdef"
local PREFIX = "vxchk_"

-- top-level declarations of a cdef text (split at ';' outside braces)
local function declarations(text)
  local out, depth, start = {}, 0, 1
  for i = 1, #text do
    local ch = text:sub(i, i)
    if ch == "{" then depth = depth + 1
    elseif ch == "}" then depth = depth - 1
    elseif ch == ";" and depth == 0 then
      out[#out + 1] = text:sub(start, i):match("^%s*(.-)%s*$")
      start = i + 1
    end
  end
  return out
end

-- the structs with a body: { name, fields = {…} }, in order
local function structs_of(decl)
  local name, body = decl:match("^typedef%s+struct%s+[%w_]*%s*(%b{})%s*([%w_]+)%s*;$")
  if name then name, body = body, name else name, body = decl:match("^struct%s+([%w_]+)%s*(%b{})%s*;$") end
  if not name then return nil end
  local fields = {}
  for member in body:sub(2, -2):gmatch("[^;]+") do
    member = member:gsub("%b[]", ""):match("^%s*(.-)%s*$")
    if member ~= "" then
      local first = true
      for part in member:gmatch("[^,]+") do
        local f = part:match("([%a_][%w_]*)%s*$")
        if f and not (first and not part:find("[%s%*]")) then fields[#fields + 1] = f end
        first = false
      end
    end
  end
  return { name = name, fields = fields }
end

local structs, texts = {}, {}
local renames = {}
for _, s in ipairs(reg.SECTIONS) do
  for _, d in ipairs(declarations(s.text)) do
    if d:match("^typedef") or d:match("^struct") then
      texts[#texts + 1] = d
      local st = structs_of(d)
      if st then structs[#structs + 1] = st end
      for n in d:gmatch("struct%s+([%a_][%w_]*)") do renames[n] = true end
      local td = d:match("([%a_][%w_]*)%s*;$")
      if d:match("^typedef") and td then renames[td] = true end
    end
  end
end

-- declare a renamed copy, so a tampered registry can be checked next to the loaded one
local text = table.concat(texts, "\n")
for n in pairs(renames) do text = text:gsub("%f[%w_]" .. n .. "%f[^%w_]", PREFIX .. n) end
ffi.cdef(text)

local checked = {}
for _, st in ipairs(structs) do
  if not (reg.LUA_ONLY or {})[st.name] then checked[#checked + 1] = st end
end

-- the C side: a program printing sizeof and offsetof as the compiler sees them
local lines = { "#include <stddef.h>", "#include <stdio.h>", "#include <poll.h>", "#include <libpq-fe.h>" }
local hdrs = {}
for _, s in ipairs(reg.SECTIONS) do
  for h in s.headers:gmatch("%S+") do
    if runtime.exists("runtime/" .. h) and not hdrs[h] then
      hdrs[h] = true
      lines[#lines + 1] = ('#include "%s"'):format(h)
    end
  end
end
lines[#lines + 1] = "int main(void) {"
local function ctype(name)
  local m = (reg.C_NAME or {})[name]
  local c = m and m.c or name
  if c == "pollfd" then c = "struct pollfd" end
  return c, m and m.prefix
end
for _, st in ipairs(checked) do
  local c = ctype(st.name)
  lines[#lines + 1] = ('  printf("%s sizeof %%zu\\n", sizeof(%s));'):format(st.name, c)
  for _, f in ipairs(st.fields) do
    lines[#lines + 1] = ('  printf("%s %s %%zu\\n", offsetof(%s, %s));'):format(st.name, f, c, f)
  end
end
lines[#lines + 1] = "  return 0;\n}"

local dir = os.getenv("VX_FFI_DIR") or "build"
runtime.mkdir_p(dir)
local src, bin = dir .. "/ffi_layout.c", dir .. "/ffi_layout"
assert(runtime.write_file(src, table.concat(lines, "\n") .. "\n"))
local cflags = os.getenv("VX_FFI_CFLAGS") or "$(pkg-config --cflags libpq luajit libuv 2>/dev/null)"
local cc = os.getenv("CC") or "cc"
local _, code = process.run("sh", { "-c", ("%s -std=c11 -D_GNU_SOURCE -Iruntime %s -o %s %s"):format(cc, cflags, bin, src) })
if code ~= 0 then
  io.stderr:write("ffi layout: the C side does not compile against runtime/*.h (a field or a struct vibex.cdef declares is gone?)\n")
  os.exit(1)
end
local out, rc = process.run(bin, {})
if rc ~= 0 or not out then
  io.stderr:write("ffi layout: the layout program failed\n")
  os.exit(1)
end

local bad = 0
local function report(fmt, ...)
  bad = bad + 1
  io.stderr:write("ffi layout: ", fmt:format(...), "\n")
end
local n = 0
for line in out:gmatch("[^\n]+") do
  local name, what, v = line:match("^(%S+) (%S+) (%d+)$")
  v = tonumber(v)
  local lt = (name == "pollfd" and "struct " or "") .. PREFIX .. name
  if what == "sizeof" then
    local _, prefix = ctype(name)
    if not prefix and ffi.sizeof(lt) ~= v then
      report("%s is %d bytes in vibex.cdef and %d in the C header (fix the cdef to match the header)", name, ffi.sizeof(lt), v)
    end
  else
    n = n + 1
    local lo = ffi.offsetof(lt, what)
    if lo ~= v then
      report("%s.%s is at offset %d in vibex.cdef and %d in the C header (fix the cdef to match the header)", name, what, lo, v)
    end
  end
end
if bad > 0 then os.exit(1) end
io.stdout:write(("ffi layout: %d structs, %d fields match their C headers\n"):format(#checked, n))
