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
