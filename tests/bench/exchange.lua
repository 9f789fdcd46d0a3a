--- Exchange benchmarks: signing cost per request for both schemes and the
-- local order preparation (rounding + filter checks), beside SHA-256 of the
-- same string as a baseline.
local crypto = require "vibex.core.crypto"
local filters = require "vibex.exchange.filters"
local signer = require "vibex.exchange.signer"
local task = require "vibex.task"

local M = {}

local ORDER = { { "symbol", "BTCUSDT" }, { "side", "BUY" }, { "type", "LIMIT" }, { "timeInForce", "GTC" },
                { "quantity", "0.012" }, { "price", "60000.1" }, { "newClientOrderId", "vx348bb5122d716ae135c49d378b135a" } }

local function copy(list)
  local out = {}
  for i, kv in ipairs(list) do out[i] = kv end
  return out
end

function M.run(row, fmt, best, quick)
  local n1 = quick and 20000 or 200000
  local n3 = quick and 500 or 5000
  local v1 = signer.v1 { api_key = "k", api_secret = ("s"):rep(64) }
  local v3 = signer.v3 { user = "0x63DD5aCC6b1aa0f563956C0e534DD30B6dcF7C4e", signer = "0x21cF8Ae13Bb72632562c6Fff438652Ba1a151bb0",
                         private_key = "4fd0a42218f3eae43a6ce26d22544e986139a01e5b34a62db53757ffca81bae1" }
  local s = signer.join(ORDER)
  local tb = best(3, function() for _ = 1, n1 do crypto.sha256(s) end end)
  task.yield()
  local t1 = best(3, function() for i = 1, n1 do v1.sign(copy(ORDER), 1700000000000 + i) end end)
  task.yield()
  local t3 = best(3, function() for i = 1, n3 do v3.sign(copy(ORDER), 1700000000000 + i) end end)
  row("sign request, V1 HMAC-SHA256", ("%.2f"):format(t1 / n1 * 1e6), "us/req", ("%s req/s"):format(fmt(n1 / t1)))
  row("sign request, V3 EIP-712 + secp256k1", ("%.2f"):format(t3 / n3 * 1e6), "us/req", ("%s req/s"):format(fmt(n3 / t3)))
  row("  baseline: sha256 of the same string", ("%.2f"):format(tb / n1 * 1e6), "us/op")
  local rules = filters.from_symbol { symbol = "BTCUSDT", status = "TRADING", filters = {
    { filterType = "PRICE_FILTER", minPrice = "1", maxPrice = "1000000", tickSize = "0.1" },
    { filterType = "LOT_SIZE", minQty = "0.001", maxQty = "1000", stepSize = "0.001" },
    { filterType = "MIN_NOTIONAL", notional = "5" },
    { filterType = "PERCENT_PRICE", multiplierUp = "1.15", multiplierDown = "0.85" } } }
  task.yield()
  local tf = best(3, function()
    for i = 1, n1 / 4 do
      assert(rules:format({ side = "BUY", type = "LIMIT", price = 60000.123 + i % 7, quantity = 0.0123 }, "60000"))
    end
  end)
  row("order rounding + filter checks", ("%.2f"):format(tf / (n1 / 4) * 1e6), "us/order")
end

return M
