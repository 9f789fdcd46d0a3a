local h = require "helpers"

describe("hot reload of scripts", function()
  it("swaps a changed script, keeps the old one on a broken edit, keeps state", function()
    local dir = h.tmpdir()
    h.write(dir .. "/prompt.lua", "state.n = (state.n or 0) + 1\nreturn { render = function() return 'v1' end }\n")
    local reg = scripts.registry { dir = dir, exports = { prompt = { "render" } } }
    local n, errs = reg:load_all()
    assert.equal(1, n, table.concat(errs, "\n"))
    assert.equal("v1", reg:call("prompt", "render"))
    assert(reg:watch(10))
    -- editor-style save: write a temp file and rename it over the script
    h.write(dir .. "/.prompt.tmp", "state.n = state.n + 1\nreturn { render = function() return 'v2:' .. state.n end }\n")
    os.rename(dir .. "/.prompt.tmp", dir .. "/prompt.lua")
    assert.is_true(h.wait_until(function() return reg:version("prompt") == 2 end, 5000))
    assert.equal("v2:2", reg:call("prompt", "render"))
    h.write(dir .. "/prompt.lua", "return { render = function( end }\n")
    assert.is_true(h.wait_until(function() return reg.errors.prompt ~= nil end, 5000))
    assert.matches("prompt.lua:1:", reg.errors.prompt, 1, true)
    assert.equal("v2:2", reg:call("prompt", "render"))
    h.write(dir .. "/prompt.lua", "return { other = 1 }\n")
    assert.is_true(h.wait_until(function() return reg.errors.prompt and reg.errors.prompt:find("must export") end, 5000))
    assert.equal("v2:2", reg:call("prompt", "render"))
    reg:close()
  end)

  it("sandboxes scripts", function()
    local env = sandbox.env { name = "t" }
    for _, expr in ipairs { "os.execute('true')", "io.open('/etc/passwd')", "require('ffi')", "getfenv(0)",
                            "string.dump(print)", "load(string.char(27))" } do
      local fn = assert(sandbox.compile("return " .. expr, "=t", env))
      local ok, res = pcall(fn)
      assert.is_true(not ok or res == nil, expr)
    end
  end)
end)
