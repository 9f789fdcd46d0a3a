local h = require "helpers"
local runtime = require "vibex.runtime"

describe("vibex command line", function()
  it("prints help and version", function()
    local out, _, code = h.vibex { "--help" }
    assert.equal(0, code)
    assert.matches("repl ", out, 1, true)
    assert.matches("Exit codes: 0 ok; 1 runtime failure; 2 usage or config error", out, 1, true)
    out, _, code = h.vibex { "--version" }
    assert.equal(0, code)
    assert.matches("^vibex %d+%.%d+%.%d+", out)
    -- every linked library, with its version
    for _, lib in ipairs { "luajit", "libuv", "libcurl", "libwebsockets", "libpq", "openssl", "nettle",
                           "libsecp256k1", "libedit", "lua%-argparse" } do
      assert.matches("\n  " .. lib .. " +%S", out)
    end
  end)

  it("gives every command a --help with its options and an example, exit 0", function()
    local cases = {
      { { "run" }, { "<config>" } },
      { { "check" }, { "<config>", "--quiet" } },
      { { "status" }, { "--json" } },
      { { "migrate" }, { "status", "up" } },
      { { "migrate", "up" }, { "--dry-run" } },
      { { "migrate", "status" }, { "<config>" } },
      { { "ab" }, { "report" } },
      { { "ab", "report" }, { "--json", "--csv", "--chart FILE", "--version N" } },
      { { "llm" }, { "stats" } },
      { { "llm", "stats" }, { "--json" } },
      { { "data" }, { "list", "import", "download" } },
      { { "data", "download" }, { "--symbols A,B", "--interval INTERVAL", "--from DATE", "--to DATE", "--base-url URL" } },
      { { "data", "list" }, { "--json", "<config>" } },
      { { "data", "import" }, { "--symbol SYMBOL", "--interval INTERVAL", "--config CONFIG" } },
      { { "repl" }, {} },
      { { "test" }, { "args" } },
    }
    for _, c in ipairs(cases) do
      local args = { unpack(c[1]) }
      args[#args + 1] = "--help"
      local out, err, code = h.vibex(args)
      local name = table.concat(c[1], " ")
      assert.equal(0, code, name .. ": " .. err)
      assert.matches("Usage: vibex " .. name, out, 1, true)
      assert.matches("Example:\n  vibex " .. c[1][1], out, 1, true)
      for _, opt in ipairs(c[2]) do assert.matches(opt, out, 1, true) end
    end
  end)

  it("rejects unknown options and missing files with one line and status 2; suggests a misspelled option", function()
    local _, err, code = h.vibex { "--bogus" }
    assert.equal(2, code)
    assert.equal("vibex: unknown option '--bogus' (see vibex --help)\n", err)
    _, err, code = h.vibex { "status", "--jsn" }
    assert.equal(2, code)
    assert.equal("vibex: unknown option '--jsn'; did you mean '--json'? (see vibex status --help)\n", err)
    _, err, code = h.vibex { "migrate", "up", "--dry-rn" }
    assert.equal(2, code)
    assert.matches("did you mean '--dry-run'? (see vibex migrate up --help)", err, 1, true)
    _, err, code = h.vibex { "migrate", "cfg.lua" }
    assert.equal(2, code)
    assert.matches("name the action first: `vibex migrate status cfg.lua` or `vibex migrate up cfg.lua`", err, 1, true)
    _, err, code = h.vibex { "ab", "report", "--chart" }
    assert.equal(2, code)
    assert.matches("option '--chart' requires an argument", err, 1, true)
    _, err, code = h.vibex { "missing.lua" }
    assert.equal(2, code)
    assert.equal("vibex: cannot open missing.lua: No such file or directory\n", err)
    _, err, code = h.vibex { "run", "missing.lua" }
    assert.equal(2, code)
    assert.equal("vibex: cannot open missing.lua: No such file or directory\n", err)
  end)

  it("checks several config files in one call, saying which is wrong", function()
    local dir = h.tmpdir()
    h.write(dir .. "/a.lua", "return { accounts = { { name = 'a', exchange = { venue = 'sim' }, symbols = { 'BTCUSDT' } } } }\n")
    h.write(dir .. "/b.lua", "return { accounts = { { name = 'b', exchange = { venue = 'sim' }, symbols = { 'BTCUSDT' } } } }\n")
    h.write(dir .. "/bad.lua", "return { accounts = { { name = 'c', exchange = { venue = 'nowhere' } } } }\n")
    local out, err, code = h.vibex { "check", dir .. "/a.lua", dir .. "/b.lua" }
    assert.equal(0, code, err)
    assert.matches(dir .. "/a.lua: valid for environment development", out, 1, true)
    assert.matches(dir .. "/b.lua: valid for environment development", out, 1, true)
    out, err, code = h.vibex { "check", dir .. "/a.lua", dir .. "/bad.lua", dir .. "/b.lua" }
    assert.equal(2, code)
    assert.matches(dir .. "/a.lua: valid", out, 1, true)
    assert.matches(dir .. "/b.lua: valid", out, 1, true)
    assert.matches(dir .. "/bad.lua: accounts[1].exchange.venue", err, 1, true)
    assert.is_nil(err:find(dir .. "/a.lua", 1, true))
  end)

  it("runs -e on the loop and exits when its tasks are done", function()
    local out, _, code = h.vibex { "-e", "task.spawn(function() task.sleep(20); print('late') end); print('first')" }
    assert.equal(0, code)
    assert.equal("first\nlate\n", out)
  end)

  it("reports a syntax error in a script with file and line, status 2", function()
    local dir = h.tmpdir()
    h.write(dir .. "/bad.lua", "local x = = 1\n")
    local _, err, code = h.vibex { dir .. "/bad.lua" }
    assert.equal(2, code)
    assert.matches("bad.lua:1:", err, 1, true)
  end)

  it("keeps running other tasks when one raises", function()
    local out, err, code = h.vibex { "-e", [[
      task.spawn(function() error("boom in task") end)
      task.sleep(20)
      print("still here")]] , }
    assert.equal(0, code)
    assert.equal("still here\n", out)
    assert.matches("boom in task", err, 1, true)
  end)

  it("passes arguments to scripts", function()
    local dir = h.tmpdir()
    h.write(dir .. "/args.lua", "print(arg[0], ...)\n")
    local out, _, code = h.vibex { dir .. "/args.lua", "a", "b" }
    assert.equal(0, code)
    assert.equal(dir .. "/args.lua\ta\tb\n", out)
  end)

  it("shuts down gracefully on SIGTERM with exit 0", function()
    local p = assert(require("vibex.process").spawn { file = h.bin, stderr = "pipe",
      args = { "-e", "print('ready'); io.stdout:flush(); while true do task.sleep(50) end" } })
    assert.equal("ready", p:read_line())
    p:kill("TERM")
    local code = task.timeout(10000, function() return p:wait() end)
    assert.equal(0, code)
  end)

  it("runs the REPL on piped input, printing values", function()
    local dir = h.tmpdir()
    h.write(dir .. "/in.txt", "1 + 2\nlocal t = {a = 1}\nfunction f()\nreturn 42\nend\nf()\ntask.sleep(5)\nreturn 'x', nil\n")
    local p = assert(require("vibex.process").spawn { file = "/bin/sh", args = { "-c", h.bin .. " repl < " .. dir .. "/in.txt" } })
    local out = p:read_all()
    assert.equal(0, (p:wait()))
    assert.equal('3\n42\n"x"\tnil\n', out)
  end)
  it("REPL :help lists every preloaded module with its line; :help NAME shows a module's functions", function()
    local dir = h.tmpdir()
    h.write(dir .. "/in.txt", ":help\n:help http\n:help nosuchmodule\n")
    local p = assert(require("vibex.process").spawn { file = "/bin/sh", stderr = "pipe",
      args = { "-c", h.bin .. " repl < " .. dir .. "/in.txt" } })
    local errt = task.spawn(function() return p:read_all("stderr") end)
    local out = p:read_all()
    local _, err = errt:join()
    assert.equal(0, (p:wait()))
    for name, modname in pairs(require("vibex.prelude").modules) do
      local summary = require("vibex.doc").module(modname).summary
      assert.matches("\n  " .. name .. " +" .. summary:sub(1, 20):gsub("%p", "%%%0"), out)
    end
    assert.matches("vibex.http — asynchronous HTTP client", out, 1, true)
    assert.matches("\n  request(opts)  Send a request and wait for the answer.", out, 1, true)
    assert.matches("no module nosuchmodule (:help lists them)", err, 1, true)
  end)

  it("keeps the REPL's history in the XDG state directory", function()
    local dir = h.tmpdir()
    local out, _, code = h.vibex({ "-e", "print(require('vibex.repl').history_path())" },
      { env = { XDG_STATE_HOME = dir .. "/state" } })
    assert.equal(0, code)
    assert.equal(dir .. "/state/vibex/history\n", out)
    assert.is_not_nil(runtime.stat(dir .. "/state/vibex"))
    out = h.vibex({ "-e", "print(require('vibex.repl').history_path())" }, { env = { XDG_STATE_HOME = "", HOME = dir } })
    assert.equal(dir .. "/.local/state/vibex/history\n", out)
  end)

  it("frees everything it allocates (valgrind, a -e run with a task, HTTP and JSON)", function()
    local valgrind = require("vibex.process").which("valgrind")
    if not valgrind or h.bin:match("asan") then return end -- ASan builds check leaks themselves
    local srv = h.httpd()
    local code_ = ("local r = http.get('%s/hello'); local t = task.spawn(function() task.sleep(5) return r.body end); " ..
                   "print(select(2, t:join()), json.encode{a = 1})"):format(srv.base)
    local out, err, code = h.vibex({ "--leak-check=full", "--error-exitcode=9", h.bin, "-e", code_ },
                                   { file = valgrind, timeout_ms = 120000 })
    srv.stop()
    assert.equal('hello\t{"a":1}\n', out)
    assert.equal(0, code, err)
    assert.matches("All heap blocks were freed", err, 1, true)
  end)
end)
