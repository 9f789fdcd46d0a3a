--- make bench, containment: what the budget costs a script call, how fast
--- sandboxed (interpreted, hooked) code runs beside the same code JIT-compiled,
--- and that reading a hostile answer stays linear (1 KB vs 1 MB).
local sandbox = require "vibex.sandbox"
local decision = require "vibex.agent.decision"

local M = {}

local LOOP = "local s = 0 for i = 1, %d do s = s + i %% 7 end return s"

function M.run(row, fmt, best, quick)
  local scale = quick and 0.1 or 1
  local env = sandbox.env { name = "bench" }
  local limits = { time_ms = 60000, memory_mb = 64 }
  local _, f = sandbox.run(limits, assert(sandbox.compile("return function(x) return x + 1 end", "=bench", env)))
  local n = math.floor(200000 * scale)
  local dt = best(3, function() for i = 1, n do sandbox.run(limits, f, i) end end)
  local bare = best(3, function() for i = 1, n do f(i) end end)
  row("script call under a budget (sandbox.run)", ("%.2f"):format(dt / n * 1e6), "us/call",
      ("bare call %.3f us; target < 5 us: %s"):format(bare / n * 1e6, dt / n < 5e-6 and "ok" or "MISSED"))
  local iters = math.floor(2e7 * scale)
  local sb = assert(sandbox.compile(LOOP:format(iters), "=bench", env))
  local t_sb = best(3, function() assert(sandbox.run(limits, sb)) end)
  local jit_fn = assert(load(LOOP:format(iters)))
  local t_jit = best(3, function() jit_fn() end)
  row("sandboxed loop (JIT off)", fmt(iters / t_sb), "iter/s",
      ("baseline JIT-compiled %s iter/s: %.2fx its time"):format(fmt(iters / t_jit), t_sb / t_jit))
  local ctx = { symbols = { BTCUSDT = { price = 100000 } }, nsymbols = 1 }
  local function per_byte(size, unit)
    local text = unit:rep(math.floor(size / #unit))
    local reps = math.max(1, math.floor(2e6 * scale / #text))
    return best(5, function() for _ = 1, reps do decision.read(text, ctx) end end) / reps / #text
  end
  for _, c in ipairs { { "{", "unclosed braces" }, { '{"a": [1, {"b": "x}"}, ', "nested, strings" } } do
    local small, big = per_byte(1024, c[1]), per_byte(1024 * 1024, c[1])
    row(("hostile answer, %s, 1 MB"):format(c[2]), ("%.1f"):format(big * 1e9), "ns/byte",
        ("1 KB: %.1f ns/byte; %.2fx per byte (linear <= 2x: %s)"):format(small * 1e9, big / small,
          big / small <= 2 and "ok" or "MISSED"))
  end
end

return M
