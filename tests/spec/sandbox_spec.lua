-- The sandbox: everything reachable from it is on the one allow-list, and
-- hostile code ends inside its budget however it tries to get out.
local sandbox = require "vibex.sandbox"
local safe_ta = require "vibex.sandbox.ta"
local ta = require "vibex.ta"
local budget = require "vibex.core.budget"

local LIMITS = { time_ms = 150, memory_mb = 32 }

local function run(src, limits)
  local env = sandbox.env { name = "hostile", config = true, extra = { state = {}, script_name = "hostile" } }
  local fn, err = sandbox.compile(src, "=hostile", env)
  assert(fn, err)
  local t0 = os.clock()
  local res = { sandbox.run(limits or LIMITS, fn) }
  return res, (os.clock() - t0) * 1000
end

describe("the sandbox allow-list", function()
  it("reaches no function, cdata or userdata that is not on the list", function()
    local allowed = {}
    local function collect(t, seen)
      for _, v in pairs(t) do
        if type(v) == "function" then allowed[v] = true
        elseif type(v) == "table" and not seen[v] then seen[v] = true; collect(v, seen) end
      end
    end
    collect(sandbox.ALLOWLIST, {})
    local env = sandbox.env { name = "walk", config = true, extra = { state = {}, script_name = "walk" } }
    for _, path in ipairs(sandbox.PER_ENV) do
      local v = env
      for part in path:gmatch("[^%.]+") do v = v[part] end
      assert.equal("function", type(v), path)
      allowed[v] = true
    end
    local view_metas = { [safe_ta.view_metatable] = true, [safe_ta.candles_metatable] = true }
    -- what a script can get from the allowed constructors, walked too
    local buf = assert(ta.candles { interval = "1m", capacity = 10 })
    buf:update({ t = 0, o = 1, h = 2, l = 0.5, c = 1.5, v = 10 }, true)
    local roots = {
      env = env, string_meta = debug.getmetatable(""),
      view = env.require("vibex.ta").series { 1, 2, 3 },
      ema = env.require("vibex.ta").ema({ 1, 2, 3, 4 }, 2),
      candles = safe_ta.candles_view(buf), ref = env.env("SOME_KEY"), null = env.require("vibex.json").null,
    }
    local bad, seen, count = {}, {}, 0
    local function walk(v, path)
      local t = type(v)
      if t == "cdata" then bad[#bad + 1] = path .. " is cdata"; return end
      if t == "function" then
        if not allowed[v] then bad[#bad + 1] = path .. " is a function not on the allow-list" end
        return
      end
      if t == "thread" then bad[#bad + 1] = path .. " is a coroutine"; return end
      if t ~= "table" and t ~= "userdata" then return end
      if seen[v] then return end
      seen[v] = true
      count = count + 1
      local mt = debug.getmetatable(v)
      if t == "userdata" and v == roots.null then return end -- json.null: a light userdata, no methods
      if t == "userdata" and not view_metas[mt] then bad[#bad + 1] = path .. " is a userdata that is not a view"; return end
      if mt then walk(mt, path .. "<mt>") end
      if t == "table" then
        for k, x in next, v do
          walk(k, path .. "[key]")
          walk(x, path .. "." .. tostring(k))
        end
      end
    end
    for name, root in pairs(roots) do walk(root, name) end
    assert.same({}, bad)
    assert.is_true(count > 20)
    -- and the things that must not be there, by name
    for _, name in ipairs { "io", "debug", "package", "ffi", "jit", "collectgarbage", "getfenv", "setfenv", "dofile",
                            "loadfile", "newproxy", "module" } do
      assert.is_nil(rawget(env, name), name)
    end
    for _, name in ipairs { "execute", "exit", "getenv", "remove", "rename", "tmpname", "setlocale" } do
      assert.is_nil(env.os[name], "os." .. name)
    end
    assert.is_nil(env.string.dump)
    assert.is_nil(("").dump)
    assert.is_nil(env.require("vibex.log").configure)
  end)

  it("refuses modules and raw pointers from inside", function()
    for _, src in ipairs {
      "return require('ffi')", "return require('vibex.core.budget')", "return require('vibex.db')",
      "return require('vibex.log').configure{dir = '/tmp/x'}", "return io.open('/etc/passwd')",
      "return os.execute('true')", "local v = require('vibex.ta').series{1,2,3} return v.p[0]",
      "local v = require('vibex.ta').series{1,2,3} v[1] = 5", "return getmetatable(require('vibex.ta').series{1}).__index()",
      "return load(string.char(27, 76, 74, 2))()", "return debug.getinfo(1)", "return string.dump(print)",
    } do
      local res = run(src)
      assert.is_nil(res[1], src)
      assert.equal("error", res[3], src)
    end
    local v = run("local v = require('vibex.ta').series{1,2,3} return v[1], v[4], #v, v:last(2), v:sub(2):len()")
    assert.same({ true, 1, nil, 3, { 2, 3 }, 2 }, v)
  end)
end)

describe("budgets", function()
  local cases = {
    { "an endless loop", "while true do end", "time" },
    { "a loop inside pcall", "while true do pcall(function() while true do end end) end", "time" },
    { "pcall around error after tripping", "for i = 1, 1e12 do pcall(error, 'x') end", "time" },
    { "a load-made chunk", "local f = load('while true do end') f()", "time" },
    { "loadstring, nested", "loadstring('loadstring(\"while true do end\")()')()", "time" },
    { "a looping __tostring on the error", "error(setmetatable({}, {__tostring = function() while true do end end}))", "time" },
    { "a looping xpcall handler", "xpcall(function() while true do end end, function() while true do end end)", "time" },
    { "coroutines that swallow errors",
      "while true do coroutine.resume(coroutine.create(function() while true do end end)) end", "time" },
    { "coroutine.wrap", "coroutine.wrap(function() while true do end end)()", "time" },
    { "one huge string", "return #string.rep('x', 2^30)", "memory" },
    { "a growing table in pcall", "local t = {} while true do pcall(function() for i = 1, 1e6 do t[#t + 1] = {i} end end) end", nil },
    { "a yield to the runtime", "coroutine.yield(1)", "yield" },
    -- a stack overflow, or the time budget on a slow machine (seen once in a full suite run)
    { "deep recursion", "local function f() return 1 + f() end return f()", { error = true, time = true } },
  }
  for _, c in ipairs(cases) do
    it("ends " .. c[1], function()
      local res, ms = run(c[2])
      assert.is_nil(res[1], c[1])
      if type(c[3]) == "table" then
        assert.truthy(c[3][res[3]], tostring(res[3]) .. ": " .. tostring(res[2]))
      elseif c[3] then
        assert.equal(c[3], res[3], tostring(res[2]))
      else
        assert.truthy(res[3] == "time" or res[3] == "memory")
      end
      assert.is_true(ms < 3000, ("%s took %d ms"):format(c[1], ms))
      assert.equal(0, budget.depth())
      -- the hook is gone and the JIT runs: our own long loops are untouched
      local s = 0
      for i = 1, 3e7 do s = s + i end
      assert.is_true(s > 0)
    end)
  end

  it("turns a __gc loop into nothing: tables have no finalisers and newproxy is out of reach", function()
    local res = run("setmetatable({}, {__gc = function() while true do end end}) return newproxy")
    assert.same({ true }, res)
    collectgarbage()
  end)

  it("runs well-behaved code and hands back its results", function()
    local res = run("local t = {} for i = 1, 1000 do t[i] = i * i end return t[1000], 'ok'")
    assert.same({ true, 1000000, "ok" }, res)
  end)
end)

describe("plain data", function()
  it("copies data and names the path of anything else", function()
    local cyc = { a = {} }
    cyc.a.b = cyc
    local deep = {}
    local d = deep
    for _ = 1, 100 do d.x = {}; d = d.x end
    local cases = {
      { cyc, "a.b", "cycle" },
      { deep, "x.x.x", "deeper" },
      { { [true] = 1 }, "", "boolean used as a key" },
      { { [1.5] = 1 }, "[1.5]", "not a list index" },
      { { f = print }, "f", "function" },
      { { m = setmetatable({}, { __index = function() error("boom") end }) }, "m", "metatable" },
      { { s = ("x"):rep(100) }, "s", "string of 100 bytes" },
    }
    for _, c in ipairs(cases) do
      for _, copying in ipairs { true, false } do
        local copy, path, msg = sandbox.plain(c[1], { max_string = 50, copy = copying })
        assert.is_nil(copy)
        assert.truthy(path:find(c[2], 1, true), path)
        assert.truthy(msg:find(c[3], 1, true), msg)
      end
    end
    -- a path several levels down, through lists and names
    local _, path = sandbox.plain({ symbols = { { short = { close = { 1, 2, print } } } } }, { root = "result", copy = false })
    assert.equal("result.symbols[1].short.close[3]", path)
    local shared = { 1 }
    local copy = assert(sandbox.plain { a = shared, b = shared, n = 0 / 0, list = { 1, 2, 3 } })
    assert.equal(copy.a, copy.b)
    assert.same({ 1, 2, 3 }, copy.list)
    -- checked, not copied: the value itself comes back
    local v = { a = shared, list = { 1, 2, { x = "y" } } }
    assert.equal(v, sandbox.plain(v, { copy = false }))
  end)
end)
