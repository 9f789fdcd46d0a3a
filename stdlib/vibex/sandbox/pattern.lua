--- vibex.sandbox.pattern — Lua's pattern functions (find, match, gmatch,
-- gsub) written in Lua, for code under a budget.
--
-- The C matcher backtracks without limit and no hook reaches into it, so a
-- pattern like ("a-"):rep(30) .. "b" against a run of a's would hold the
-- loop for ever. vibex.sandbox routes the string library's pattern
-- functions here while a budget is entered; this matcher is interpreted
-- Lua (the JIT is off for this module), so the budget's hook ends it like
-- any other script code. Same semantics as LuaJIT's string library (5.1
-- patterns): character classes, sets, the four quantifiers, anchors,
-- captures and position captures, %b, %f and back-references.
jit.off(true, true)

local byte, sub, C_find = string.byte, string.sub, string.find
local concat = table.concat

local M = {}

local CAP_UNFINISHED, CAP_POSITION = -1, -2
local MAX_CAPTURES = 32
local MAX_DEPTH = 200 -- nested pattern items, as the C matcher's "pattern too complex"

-- ---- single characters ----------------------------------------------------------------------

local function class_test(c, cl)
  local lower = cl >= 97 and cl <= 122
  local k = lower and cl or cl + 32
  local r
  if k == 97 then r = (c >= 65 and c <= 90) or (c >= 97 and c <= 122)                 -- a
  elseif k == 99 then r = c < 32 or c == 127                                             -- c
  elseif k == 100 then r = c >= 48 and c <= 57                                           -- d
  elseif k == 103 then r = c >= 33 and c <= 126                                          -- g
  elseif k == 108 then r = c >= 97 and c <= 122                                          -- l
  elseif k == 112 then r = (c >= 33 and c <= 47) or (c >= 58 and c <= 64) or (c >= 91 and c <= 96) or (c >= 123 and c <= 126) -- p
  elseif k == 115 then r = c == 32 or (c >= 9 and c <= 13)                               -- s
  elseif k == 117 then r = c >= 65 and c <= 90                                           -- u
  elseif k == 119 then r = (c >= 48 and c <= 57) or (c >= 65 and c <= 90) or (c >= 97 and c <= 122) -- w
  elseif k == 120 then r = (c >= 48 and c <= 57) or (c >= 65 and c <= 70) or (c >= 97 and c <= 102) -- x
  elseif k == 122 then r = c == 0                                                        -- z (5.1)
  else return cl == c end -- %. %% %( …: the character itself
  if lower then return r end
  return not r
end

-- the index just past the single-character class at pi
local function class_end(ms, pi)
  local p = ms.p
  local c = byte(p, pi)
  pi = pi + 1
  if c == 37 then
    if pi > ms.plen then error("malformed pattern (ends with '%')", 0) end
    return pi + 1
  elseif c == 91 then
    if byte(p, pi) == 94 then pi = pi + 1 end
    repeat -- the first character of a set is in it, even a ']'
      if pi > ms.plen then error("malformed pattern (missing ']')", 0) end
      local cc = byte(p, pi)
      pi = pi + 1
      if cc == 37 then pi = pi + 1 end
    until byte(p, pi) == 93
    return pi + 1
  end
  return pi
end

-- c in the set p[pi] == '[' .. p[ec] == ']'
local function in_set(c, p, pi, ec)
  local sig = true
  pi = pi + 1
  if byte(p, pi) == 94 then sig = false; pi = pi + 1 end
  while pi < ec do
    local pc = byte(p, pi)
    if pc == 37 then
      pi = pi + 1
      if class_test(c, byte(p, pi)) then return sig end
      pi = pi + 1
    elseif byte(p, pi + 1) == 45 and pi + 2 < ec then
      if pc <= c and c <= byte(p, pi + 2) then return sig end
      pi = pi + 3
    else
      if pc == c then return sig end
      pi = pi + 1
    end
  end
  return not sig
end

local function single_match(ms, si, pi, ep)
  if si > ms.slen then return false end
  local c = byte(ms.s, si)
  local pc = byte(ms.p, pi)
  if pc == 46 then return true
  elseif pc == 37 then return class_test(c, byte(ms.p, pi + 1))
  elseif pc == 91 then return in_set(c, ms.p, pi, ep - 1)
  end
  return pc == c
end

-- ---- the matcher ----------------------------------------------------------------------------

local match

local function max_expand(ms, si, pi, ep, depth)
  local i = 0
  while single_match(ms, si + i, pi, ep) do i = i + 1 end
  while i >= 0 do
    local r = match(ms, si + i, ep + 1, depth)
    if r then return r end
    i = i - 1
  end
end

local function min_expand(ms, si, pi, ep, depth)
  while true do
    local r = match(ms, si, ep + 1, depth)
    if r then return r end
    if single_match(ms, si, pi, ep) then si = si + 1 else return nil end
  end
end

local function start_capture(ms, si, pi, what, depth)
  local level = ms.level + 1
  if level > MAX_CAPTURES then error("too many captures", 0) end
  ms.init[level], ms.len[level], ms.level = si, what, level
  local r = match(ms, si, pi, depth)
  if not r then ms.level = ms.level - 1 end
  return r
end

local function end_capture(ms, si, pi, depth)
  local l
  for i = ms.level, 1, -1 do
    if ms.len[i] == CAP_UNFINISHED then l = i; break end
  end
  if not l then error("invalid pattern capture", 0) end
  ms.len[l] = si - ms.init[l]
  local r = match(ms, si, pi, depth)
  if not r then ms.len[l] = CAP_UNFINISHED end
  return r
end

local function match_balance(ms, si, pi)
  if pi + 1 > ms.plen then error("missing arguments to '%b'", 0) end
  local s = ms.s
  if si > ms.slen or byte(s, si) ~= byte(ms.p, pi) then return nil end
  local b, e, cont = byte(ms.p, pi), byte(ms.p, pi + 1), 1
  for i = si + 1, ms.slen do
    local c = byte(s, i)
    if c == e then
      cont = cont - 1
      if cont == 0 then return i + 1 end
    elseif c == b then
      cont = cont + 1
    end
  end
end

local function match_capture(ms, si, d)
  local l = d - 48
  if l < 1 or l > ms.level or ms.len[l] == CAP_UNFINISHED then error(("invalid capture index %%%d"):format(l), 0) end
  local len = ms.len[l]
  if len < 0 then return nil end -- a position capture never matches as text (as in C)
  if ms.slen - si + 1 >= len and sub(ms.s, ms.init[l], ms.init[l] + len - 1) == sub(ms.s, si, si + len - 1) then
    return si + len
  end
end

match = function(ms, si, pi, depth)
  depth = depth + 1
  if depth > MAX_DEPTH then error("pattern too complex", 0) end
  local p, plen = ms.p, ms.plen
  while true do
    if pi > plen then return si end
    local pc = byte(p, pi)
    local nc = byte(p, pi + 1)
    if pc == 40 then -- (
      if nc == 41 then return start_capture(ms, si, pi + 2, CAP_POSITION, depth) end
      return start_capture(ms, si, pi + 1, CAP_UNFINISHED, depth)
    elseif pc == 41 then -- )
      return end_capture(ms, si, pi + 1, depth)
    elseif pc == 36 and pi == plen then -- $ at the end
      return si == ms.slen + 1 and si or nil
    elseif pc == 37 and nc == 98 then -- %b
      si = match_balance(ms, si, pi + 2)
      if not si then return nil end
      pi = pi + 4
    elseif pc == 37 and nc == 102 then -- %f
      pi = pi + 2
      if byte(p, pi) ~= 91 then error("missing '[' after '%f' in pattern", 0) end
      local ep = class_end(ms, pi)
      local prev = si == 1 and 0 or byte(ms.s, si - 1)
      local cur = si <= ms.slen and byte(ms.s, si) or 0
      if in_set(prev, p, pi, ep - 1) or not in_set(cur, p, pi, ep - 1) then return nil end
      pi = ep
    elseif pc == 37 and nc and nc >= 48 and nc <= 57 then -- %0-9: a back-reference
      si = match_capture(ms, si, nc)
      if not si then return nil end
      pi = pi + 2
    else
      local ep = class_end(ms, pi)
      local q = byte(p, ep)
      if q == 63 then -- ?
        if single_match(ms, si, pi, ep) then
          local r = match(ms, si + 1, ep + 1, depth)
          if r then return r end
        end
        pi = ep + 1
      elseif q == 43 then -- +
        if not single_match(ms, si, pi, ep) then return nil end
        return max_expand(ms, si + 1, pi, ep, depth)
      elseif q == 42 then -- *
        return max_expand(ms, si, pi, ep, depth)
      elseif q == 45 then -- -
        return min_expand(ms, si, pi, ep, depth)
      else
        if not single_match(ms, si, pi, ep) then return nil end
        si, pi = si + 1, ep
      end
    end
  end
end

-- ---- captures -----------------------------------------------------------------------------

local function one_capture(ms, i, si, e)
  if i > ms.level then
    if i == 1 then return sub(ms.s, si, e - 1) end
    error(("invalid capture index %%%d"):format(i), 0)
  end
  local l = ms.len[i]
  if l == CAP_UNFINISHED then error("unfinished capture", 0) end
  if l == CAP_POSITION then return ms.init[i] end
  return sub(ms.s, ms.init[i], ms.init[i] + l - 1)
end

local function captures(ms, si, e, whole)
  local n = (ms.level == 0 and whole) and 1 or ms.level
  local out = {}
  for i = 1, n do out[i] = one_capture(ms, i, si, e) end
  return out, n
end

local function state(s, p)
  return { s = s, slen = #s, p = p, plen = #p, level = 0, init = {}, len = {} }
end

local function check_string(x, n, fname)
  if type(x) == "number" then return tostring(x) end
  if type(x) ~= "string" then
    error(("bad argument #%d to '%s' (string expected, got %s)"):format(n, fname, x == nil and "no value" or type(x)), 3)
  end
  return x
end

-- what makes find search a pattern rather than plain text (as LuaJIT decides)
local function has_specials(p) return C_find(p, "[%^%$%*%+%?%.%(%[%%%-]") ~= nil end

local function find_aux(is_find, s, p, init, plain)
  local fname = is_find and "find" or "match"
  s, p = check_string(s, 1, fname), check_string(p, 2, fname)
  init = init == nil and 1 or tonumber(init)
  if not init then error(("bad argument #3 to '%s' (number expected)"):format(fname), 3) end
  init = math.floor(init)
  local slen = #s
  if init < 0 then init = slen + init + 1 end
  if init < 1 then init = 1 end
  if init > slen + 1 then init = slen + 1 end
  if is_find and (plain or not has_specials(p)) then return C_find(s, p, init, true) end
  local anchor = byte(p, 1) == 94
  local ms = state(s, p)
  local si = init
  repeat
    ms.level = 0
    local e = match(ms, si, anchor and 2 or 1, 0)
    if e then
      if is_find then
        local caps, n = captures(ms, si, e, false)
        return si, e - 1, unpack(caps, 1, n)
      end
      local caps, n = captures(ms, si, e, true)
      return unpack(caps, 1, n)
    end
    si = si + 1
  until anchor or si > slen + 1
  return nil
end

function M.find(s, p, init, plain) return find_aux(true, s, p, init, plain) end
function M.match(s, p, init) return find_aux(false, s, p, init) end

function M.gmatch(s, p)
  s, p = check_string(s, 1, "gmatch"), check_string(p, 2, "gmatch")
  local ms = state(s, p)
  local src = 1
  return function()
    while src <= ms.slen + 1 do
      ms.level = 0
      local e = match(ms, src, 1, 0)
      if e then
        local start = src
        src = e == src and e + 1 or e
        local caps, n = captures(ms, start, e, true)
        return unpack(caps, 1, n)
      end
      src = src + 1
    end
    return nil
  end
end

local function add_value(ms, out, si, e, repl, tr)
  local value
  if tr == "string" then
    local parts, i, n = {}, 1, #repl
    while i <= n do
      local c = byte(repl, i)
      if c == 37 then
        i = i + 1
        local d = byte(repl, i)
        if d and d >= 48 and d <= 57 then
          local v = d == 48 and sub(ms.s, si, e - 1) or one_capture(ms, d - 48, si, e)
          parts[#parts + 1] = tostring(v)
        elseif d then
          parts[#parts + 1] = string.char(d)
        end
      else
        parts[#parts + 1] = string.char(c)
      end
      i = i + 1
    end
    out[#out + 1] = concat(parts)
    return
  elseif tr == "table" then
    value = repl[one_capture(ms, 1, si, e)]
  else
    local caps, n = captures(ms, si, e, true)
    value = repl(unpack(caps, 1, n))
  end
  if value == nil or value == false then
    out[#out + 1] = sub(ms.s, si, e - 1)
  elseif type(value) == "string" or type(value) == "number" then
    out[#out + 1] = tostring(value)
  else
    error(("invalid replacement value (a %s)"):format(type(value)), 0)
  end
end

function M.gsub(s, p, repl, max_n)
  s, p = check_string(s, 1, "gsub"), check_string(p, 2, "gsub")
  local tr = type(repl)
  if tr == "number" then repl, tr = tostring(repl), "string" end
  if tr ~= "string" and tr ~= "table" and tr ~= "function" then
    error("bad argument #3 to 'gsub' (string/function/table expected)", 2)
  end
  local slen = #s
  max_n = max_n == nil and slen + 1 or math.floor(tonumber(max_n) or error("bad argument #4 to 'gsub' (number expected)", 2))
  local anchor = byte(p, 1) == 94
  local ms = state(s, p)
  local out, si, n = {}, 1, 0
  while n < max_n do
    ms.level = 0
    local e = match(ms, si, anchor and 2 or 1, 0)
    if e then
      n = n + 1
      add_value(ms, out, si, e, repl, tr)
    end
    if e and e > si then
      si = e
    elseif si <= slen then
      out[#out + 1] = sub(s, si, si)
      si = si + 1
    else
      break
    end
    if anchor then break end
  end
  if si <= slen then out[#out + 1] = sub(s, si) end
  return concat(out), n
end

return M
