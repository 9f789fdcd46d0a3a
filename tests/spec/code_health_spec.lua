-- Code health: the FFI registry matches the C headers, every module loads
-- alone, and failures of the outside world come back as the one error type.
local h = require "helpers"
local runtime = require "vibex.runtime"

local HOME = runtime.home()

describe("the FFI registry", function()
  it("matches every C header's struct layout", function()
    local dir = h.tmpdir()
    local out, err, code = h.vibex({ HOME .. "/tests/support/ffi_layout.lua" },
      { env = { VX_FFI_DIR = dir }, cwd = HOME, timeout_ms = 120000 })
    assert.equal(0, code, err)
    assert.matches("ffi layout: %d+ structs, %d+ fields match their C headers", out)
  end)

  it("fails, naming the struct and field, when a declaration drifts from its header", function()
    local dir = h.tmpdir()
    local src = assert(runtime.read_file(HOME .. "/stdlib/vibex/cdef.lua"))
    -- vx_sim_event with two fields swapped, as a hand edit could leave it
    local tampered, n = src:gsub("int32_t kind, symbol; int64_t time_ms, order_id;",
                                 "int32_t kind, symbol; int64_t order_id, time_ms;")
    assert.equal(1, n)
    h.write(dir .. "/cdef.lua", tampered)
    local _, err, code = h.vibex({ HOME .. "/tests/support/ffi_layout.lua", dir .. "/cdef.lua" },
      { env = { VX_FFI_DIR = dir }, cwd = HOME, timeout_ms = 120000 })
    assert.equal(1, code)
    assert.matches("vx_sim_event.time_ms is at offset 16 in vibex.cdef and 8 in the C header", err, 1, true)
    -- a field the header does not have does not compile
    h.write(dir .. "/cdef2.lua", (src:gsub("int64_t m; int scale;", "int64_t m; int scale2;")))
    _, err, code = h.vibex({ HOME .. "/tests/support/ffi_layout.lua", dir .. "/cdef2.lua" },
      { env = { VX_FFI_DIR = dir }, cwd = HOME, timeout_ms = 120000 })
    assert.equal(1, code)
    assert.matches("does not compile against runtime/*.h", err, 1, true)
  end)
end)

-- every module under stdlib/, as "vibex.x.y" -> path
local function stdlib_modules()
  local out = {}
  local listing = require("vibex.process").run("sh", { "-c", "cd " .. HOME .. "/stdlib && find vibex -name '*.lua' | sort" })
  for path in listing:gmatch("[^\n]+") do
    local name = path:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
    out[#out + 1] = { name = name, path = HOME .. "/stdlib/" .. path }
  end
  return out
end

describe("the modules", function()
  local modules = stdlib_modules()

  it("form no require cycle, counting requires made inside functions", function()
    local graph = {}
    for _, m in ipairs(modules) do graph[m.name] = {} end
    for _, m in ipairs(modules) do
      local src = assert(runtime.read_file(m.path))
      for dep in src:gmatch("require%s*%(?%s*[\"']([%w_.]+)[\"']") do
        if graph[dep] and dep ~= m.name then graph[m.name][dep] = true end
      end
    end
    local state, path = {}, {}
    local function visit(n)
      state[n] = "open"
      path[#path + 1] = n
      for dep in pairs(graph[n]) do
        if state[dep] == "open" then
          local from = 1
          for i, p in ipairs(path) do if p == dep then from = i end end
          error("require cycle: " .. table.concat(path, " -> ", from) .. " -> " .. dep)
        end
        if not state[dep] then visit(dep) end
      end
      path[#path] = nil
      state[n] = "done"
    end
    for _, m in ipairs(modules) do if not state[m.name] then visit(m.name) end end
    assert.is_true(#modules > 80)
  end)

  it("read and write no global their file does not define (bytecode: GGET/GSET)", function()
    local bc = require "jit.bc"
    local std = {}
    for k in ("assert error getmetatable setmetatable ipairs pairs next pcall xpcall print rawget rawset rawequal " ..
              "select tonumber tostring type unpack require load loadstring loadfile dofile setfenv getfenv " ..
              "collectgarbage module gcinfo newproxy _G _VERSION string table math io os coroutine debug package " ..
              "bit jit arg"):gmatch("%S+") do std[k] = true end
    local bad = {}
    for _, m in ipairs(modules) do
      local out = {}
      bc.dump(assert(loadfile(m.path)), { write = function(_, s) out[#out + 1] = s end, flush = function() end,
                                          close = function() end }, true)
      for op, name in table.concat(out):gmatch("(G[GS]ET)%s+%d+%s+%d+%s+; \"([%w_]+)\"") do
        if op == "GSET" or not std[name] then bad[#bad + 1] = ("%s %s %s"):format(m.name, op, name) end
      end
    end
    assert.same({}, bad)
  end)

  it("each load alone in a fresh process, adding no global", function()
    local check = [[
      local name = ...
      local before = {}
      for k in pairs(_G) do before[k] = true end
      require(name)
      for k in pairs(_G) do
        if not before[k] then error(name .. " added the global " .. tostring(k), 0) end
      end
      print("ok " .. name)]]
    local failed = {}
    for _, m in ipairs(modules) do
      local out, err, code = h.vibex({ "-e", check, m.name }, { cwd = HOME })
      if code ~= 0 or out ~= "ok " .. m.name .. "\n" then failed[#failed + 1] = m.name .. ": " .. err end
    end
    assert.same({}, failed)
  end)
end)

describe("the one error type", function()
  local errors = require "vibex.errors"

  local function known(err, kind, what)
    assert.is_true(errors.is(err), what .. ": not a vibex.errors value: " .. tostring(err))
    assert.is_not_nil(errors.KINDS[err.kind], what .. ": unknown kind " .. tostring(err.kind))
    if kind then assert.equal(kind, err.kind, what .. ": " .. tostring(err)) end
    assert.equal("boolean", type(err.retryable))
    assert.equal("string", type(err.message))
  end

  it("comes back from every failure path of HTTP, WebSockets, the database, the venues and the models", function()
    local http, ws = require "vibex.http", require "vibex.ws"
    local srv = h.httpd()
    local _, err = http.request { url = "http://127.0.0.1:1/x" }
    known(err, "transport", "http refused")
    _, err = http.request { url = srv.base .. "/delay/2000", timeout_ms = 50 }
    known(err, "timeout", "http timeout")
    _, err = http.request { url = "ftp://x" }
    known(err, "invalid", "http bad url")
    _, err = http.json { url = srv.base .. "/json/bad" }
    known(err, "protocol", "http bad json")
    _, err = ws.connect { url = "ws://127.0.0.1:1/ws" }
    known(err, "transport", "ws refused")

    local pg = require "vibex.db.pg"
    _, err = pg.connect("host=/nonexistent/socket dbname=x user=x", { timeout_ms = 2000 })
    known(err, "transport", "pg refused")
    _, err = pg.connect("")
    known(err, "invalid", "pg no conninfo")
    local _, merr = require("vibex.db.migrate").files("/nonexistent/migrations")
    known(merr, "storage", "migrations dir")

    local exchange = require "vibex.exchange"
    local venue = exchange.aster { base_url = "http://127.0.0.1:1", timeout_ms = 2000,
                                   credentials = { api_key = "k", api_secret = "s" } }
    _, err = venue:ticker("BTCUSDT")
    known(err, "transport", "venue down, a read")
    _, err = venue:klines("BTCUSDT", "7x")
    known(err, "invalid", "venue bad interval")
    _, err = require("vibex.data").read_ohlcv("/nonexistent.json")
    known(err, "storage", "data file")
    _, err = exchange.from_config { name = "x", exchange = { venue = "nowhere" } }
    known(err, "config", "venue config")

    local llm = require "vibex.llm"
    local m = llm.client { name = "down", kind = "openai", base_url = "http://127.0.0.1:1/v1", model = "m",
                           max_retries = 0, connect_timeout_ms = 1000 }
    _, err = m:chat { messages = { { role = "user", content = "hi" } } }
    known(err, "transport", "model down")
    srv.stop()
  end)

  it("is what the database, exchange, model, HTTP and WebSocket modules return: no string errors in their sources", function()
    local files = {}
    for _, m in ipairs(stdlib_modules()) do
      if m.name:match("^vibex%.db") or m.name:match("^vibex%.exchange") or m.name:match("^vibex%.llm")
         or m.name == "vibex.http" or m.name == "vibex.ws" or m.name == "vibex.data" then
        files[#files + 1] = m
      end
    end
    local bad = {}
    for _, m in ipairs(files) do
      local n = 0
      for line in (assert(runtime.read_file(m.path)) .. "\n"):gmatch("([^\n]*)\n") do
        n = n + 1
        if line:match("return nil, [\"(]") or line:match("return nil, tostring%(") then
          bad[#bad + 1] = ("%s:%d: %s"):format(m.name, n, line:match("^%s*(.-)%s*$"))
        end
      end
    end
    assert.same({}, bad)
  end)
end)

describe("the README's API section", function()
  it("is generated from the modules' documentation, and every public function has one", function()
    package.path = HOME .. "/tests/support/?.lua;" .. package.path
    local api = require "api_doc"
    local section, missing = api.render()
    assert.same({}, missing)
    local readme = assert(runtime.read_file(HOME .. "/README.md"))
    assert.equal(section, api.current(readme), "README.md's API section is stale: run `./vibex tests/support/api_doc.lua --write`")
  end)
end)
