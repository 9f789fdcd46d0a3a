-- The interpreted pattern matcher that budgeted code uses must behave as
-- the C one does (checked side by side on fixed and random patterns), and
-- a pathological pattern must end with its budget.
local P = require "vibex.sandbox.pattern"
local sandbox = require "vibex.sandbox"

local C = {}
do -- the C functions, whatever the sandbox put in front of them: outside a budget they are called straight
  C.find, C.match, C.gmatch, C.gsub = string.find, string.match, string.gmatch, string.gsub
end

local function pack(...) return { n = select("#", ...), ... } end
local function same(a, b)
  if a[1] ~= b[1] then return false end
  if not a[1] then return true end -- both raised
  if a.n ~= b.n then return false end
  for i = 1, a.n do if a[i] ~= b[i] then return false end end
  return true
end

local function compare(s, p, out)
  for _, init in ipairs { 1, 2, -3, 100 } do
    if not same(pack(pcall(C.find, s, p, init)), pack(pcall(P.find, s, p, init))) then
      out[#out + 1] = ("find(%q, %q, %d)"):format(s, p, init)
    end
    if not same(pack(pcall(C.match, s, p, init)), pack(pcall(P.match, s, p, init))) then
      out[#out + 1] = ("match(%q, %q, %d)"):format(s, p, init)
    end
  end
  local function all(gm)
    local r = {}
    local ok = pcall(function()
      for a, b in gm(s, p) do
        r[#r + 1] = tostring(a) .. "|" .. tostring(b)
        if #r > 200 then break end
      end
    end)
    return ok and table.concat(r, ",") or "error"
  end
  if all(C.gmatch) ~= all(P.gmatch) then out[#out + 1] = ("gmatch(%q, %q)"):format(s, p) end
  for _, repl in ipairs { "<%0>", "%1", "%%", "x", { a = "A", ab = false }, function(x) return x and #tostring(x) end } do
    for _, n in ipairs { -1, 0, 1, 2, 1000 } do
      if not same(pack(pcall(C.gsub, s, p, repl, n)), pack(pcall(P.gsub, s, p, repl, n))) then
        out[#out + 1] = ("gsub(%q, %q, %s, %d)"):format(s, p, type(repl), n)
      end
    end
  end
end

describe("the interpreted pattern matcher", function()
  it("agrees with the C matcher on fixed patterns", function()
    local subjects = { "", "hello world", "  key = value ; x=1", "aaaaab", "(foo(bar))baz", "THE (quick) fox", "a,b,,c",
                       "12.5e3 -7 0x1F", "\0\1\2abc", "f(a(b)c)d", "THE END." }
    local patterns = { "o", "l+", "l*", "l-", "l?", "^h", "d$", "^hello world$", "%a+", "%d+", "%s*", "(%w+)=(%w+)",
      "(%w+)%s*=%s*(%w+)", "()", "()a()", "%b()", "%f[%w]%w+", "[%a_][%w_]*", "[^%s]+", "[a-c]+", "[%-+]?%d+", ".-b",
      "(a*(.)%w(%s*))", "%((%w+)%)", "[]]", "[^]]", "%.", "x*", "", "^", "(a)%1", "[%d%.]+", "^%s*(.-)%s*$", "%u%l+",
      "%p", "%x+", "%c", "%g+", "%", "[a", "(", ")", "%b", "%f", "%1", "[%a-z]+", "[a-]+", "[-a]+", "a+?", "%f[%a]",
      "(()a)", "[^%w%s]", "%W+", "(a-)(b)", "%$", "$a", "a$b", "[%]]", "(.)(.)(.)%3%2%1", "%z", "[%z]" }
    local out = {}
    for _, s in ipairs(subjects) do
      for _, p in ipairs(patterns) do compare(s, p, out) end
    end
    assert.same({}, out)
  end)

  it("agrees with the C matcher on 3,000 random patterns", function()
    math.randomseed(42)
    local atoms = { "a", "b", ".", "%a", "%d", "%s", "[ab]", "[^a]", "[a-c]", "%%", "%(", "(", ")", "()", "%b()", "%f[%a]",
                    "%1", "^", "$", "x", " " }
    local quants = { "", "", "", "*", "+", "-", "?" }
    local out = {}
    for _ = 1, 3000 do
      local parts = {}
      for i = 1, math.random(1, 5) do parts[i] = atoms[math.random(#atoms)] .. quants[math.random(#quants)] end
      local p = table.concat(parts)
      local sp = {}
      for i = 1, math.random(0, 12) do sp[i] = ({ "a", "b", "c", " ", "(", ")", "1", "x" })[math.random(8)] end
      compare(table.concat(sp), p, out)
      if #out > 10 then break end
    end
    assert.same({}, out)
  end)

  it("is what a script's patterns run on, and its budget ends a pathological one", function()
    local env = sandbox.env { name = "patterns" }
    for _, src in ipairs {
      "return (('a'):rep(40)):find(('a-'):rep(40) .. 'b')",
      "return string.match(('a'):rep(40), ('(a-)'):rep(20) .. 'b')",
      "for x in (('a'):rep(30)):gmatch(('a*'):rep(30) .. 'b') do end",
      "return (('a'):rep(30)):gsub(('a-'):rep(30) .. 'b', '')",
    } do
      local fn = assert(sandbox.compile(src, "=patterns", env))
      local t0 = os.clock()
      local ok, msg, kind = sandbox.run({ time_ms = 150, memory_mb = 16 }, fn)
      assert.is_nil(ok, src)
      assert.equal("time", kind, msg)
      assert.is_true(os.clock() - t0 < 2, src)
    end
    local fn = assert(sandbox.compile("return ('key = value'):match('(%w+)%s*=%s*(%w+)')", "=patterns", env))
    assert.same({ true, "key", "value" }, { sandbox.run({ time_ms = 150, memory_mb = 16 }, fn) })
  end)
end)
