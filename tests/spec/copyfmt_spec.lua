-- COPY text formatting of numbers: exact round trips, NULLs, integers.
local ffi = require "ffi"
local copyfmt = require "vibex.db.copyfmt"

ffi.cdef [[ int vx_format_double(double v, char *out); ]]

describe("COPY number formatting", function()
  local buf = ffi.new("char[40]")
  local function f(v) return ffi.string(buf, ffi.C.vx_format_double(v, buf)) end

  it("writes the shortest fraction for venue-like values", function()
    assert.equal("0.1", f(0.1))
    assert.equal("60000.1", f(60000.1))
    assert.equal("0.0000123", f(0.0000123))
    assert.equal("-2.5", f(-2.5))
    assert.equal("42", f(42))
    assert.equal("0.30000000000000004", f(0.1 + 0.2))
    assert.equal("1e-20", f(1e-20))
  end)

  it("reads back as the same double, for 200,000 random values", function()
    math.randomseed(7)
    for _ = 1, 200000 do
      local v = (math.random() - 0.5) * 10 ^ math.random(-12, 15)
      if math.random() < 0.5 then v = math.floor(v * 10000 + 0.5) / 10000 end
      assert(tonumber(f(v)) == v, ("%.17g formatted as %s"):format(v, f(v)))
    end
  end)

  it("formats batches with integers and NULLs, and keeps strings as given", function()
    local rows = { { t = 1700000000000, p = 0.5, n = 3 }, { t = 1700000060000, n = 4 } }
    assert.equal("1700000000000\t0.5\t3\n1700000060000\t\\N\t4\n",
      copyfmt.batch(rows, { "t", "p", "n" }, { true, false, true }, 1, 2))
    local exact = { { t = 1, p = "100.10", n = 2 } }
    assert.equal("1\t100.10\t2\n", copyfmt.batch(exact, { "t", "p", "n" }, { true, false, true }, 1, 1))
  end)
end)
