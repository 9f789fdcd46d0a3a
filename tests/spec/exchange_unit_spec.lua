-- Signing vectors, exact decimals, symbol filters and error mapping.
local eth = require "vibex.core.eth"
local crypto = require "vibex.core.crypto"
local dec = require "vibex.decimal"
local filters = require "vibex.exchange.filters"
local errors = require "vibex.exchange.errors"
local signer = require "vibex.exchange.signer"

local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
local function unhex(h) return (h:gsub("%x%x", function(b) return string.char(tonumber(b, 16)) end)) end

describe("keccak-256", function()
  it("matches the standard vectors", function()
    assert.equal("c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470", hex(eth.keccak256("")))
    assert.equal("4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45", hex(eth.keccak256("abc")))
    -- 200 bytes of 0xa3 spans two 136-byte blocks (the Keccak team's long-message case)
    assert.equal("3a57666b048777f2c953dc4456f45a2588e1cb6f2da760122d530ac2ce607d4a",
      hex(eth.keccak256(("\163"):rep(200))))
  end)
  it("handles every length around the 136-byte rate", function()
    local seen = {}
    for n = 130, 140 do
      local h = hex(eth.keccak256(("x"):rep(n)))
      assert.is_nil(seen[h])
      seen[h] = true
    end
  end)
end)

describe("secp256k1 and EIP-712", function()
  local cow = eth.keccak256("cow")  -- the EIP-712 example's signer key
  it("derives addresses (EIP-55 checksummed)", function()
    assert.equal("0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826", eth.signer(hex(cow)):address())
    -- the Aster V3 docs' demo key and signer
    local s = eth.signer("0x4fd0a42218f3eae43a6ce26d22544e986139a01e5b34a62db53757ffca81bae1")
    assert.equal("0x21cF8Ae13Bb72632562c6Fff438652Ba1a151bb0", s:address())
    assert.equal("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", eth.checksum("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"))
    assert.equal("0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359", eth.checksum("0xFB6916095CA1DF60BB79CE92CE3EA74C37C5D359"))
  end)
  it("computes the EIP-712 Mail example's domain separator and signature", function()
    local domain = eth.eip712_domain("Ether Mail", "1", 1, "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC")
    assert.equal("f2cee375fa42b42143804025fc449deafd50cc031ca257e0b194a650a912090f", hex(domain))
    local digest = unhex("be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2")
    local sig = eth.signer(hex(cow)):sign(digest)
    assert.equal("4355c47d63924e8a72e509b65029052eb6c299d53a04e167c5775fd466751c9d", hex(sig:sub(1, 32)))
    assert.equal("07299936d304c153f6443dfa05f40ff007d72911b6f72307f996231605b91562", hex(sig:sub(33, 64)))
    assert.equal(28, sig:byte(65))
    assert.equal("0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826", eth.recover(digest, sig))
  end)
  it("builds Aster's Message digest from the EIP-712 pieces", function()
    local domain = eth.eip712_domain("AsterSignTransaction", "1", 1666, "0x0000000000000000000000000000000000000000")
    local msg = "symbol=ASTERUSDT&type=LIMIT&side=BUY&timeInForce=GTC&quantity=20&price=0.5&nonce=1748310859508867"
    local st = eth.keccak256(eth.keccak256("Message(string msg)") .. eth.keccak256(msg))
    assert.equal(hex(eth.keccak256("\25\1" .. domain .. st)), hex(eth.eip712_message(domain, msg)))
    local s = eth.signer("0x4fd0a42218f3eae43a6ce26d22544e986139a01e5b34a62db53757ffca81bae1")
    assert.equal(s:address(), eth.recover(eth.eip712_message(domain, msg), s:sign_message(domain, msg)))
  end)
  it("refuses bad keys and signatures with clear errors, never showing the key", function()
    local s, err = eth.signer("0x1234")
    assert.is_nil(s)
    assert.matches("64 hex digits", err)
    s, err = eth.signer(("0"):rep(64))
    assert.is_nil(s)
    assert.matches("not a valid secp256k1 key", err)
    local good = eth.signer(hex(cow))
    assert.not_matches(hex(cow), tostring(good))
    local bad = ("\0"):rep(64) .. "\27"
    local a, rerr = eth.recover(("\1"):rep(32), bad)
    assert.is_nil(a)
    assert.matches("invalid signature", rerr)
  end)
end)

describe("V1 HMAC signing", function()
  it("reproduces the Binance/Aster documentation example", function()
    -- the docs' example: this key, this query string, this signature
    local secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    local q = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
    assert.equal("c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71", crypto.hmac_sha256(secret, q))
  end)
  it("signs exactly the string it sends", function()
    local s = signer.v1 { api_key = "k", api_secret = "s", recv_window_ms = 5000 }
    local out = s.sign({ { "symbol", "BTCUSDT" }, { "note", "a b&c" } }, 1700000000000)
    local body, sig = out:match("^(.*)&signature=(%x+)$")
    assert.equal("symbol=BTCUSDT&note=a%20b%26c&recvWindow=5000&timestamp=1700000000000", body)
    assert.equal(crypto.hmac_sha256("s", body), sig)
  end)
  it("V3 nonces are microseconds and strictly increasing", function()
    local s = signer.v3 { user = "0x63DD5aCC6b1aa0f563956C0e534DD30B6dcF7C4e", signer = "0x21cF8Ae13Bb72632562c6Fff438652Ba1a151bb0",
                          private_key = "4fd0a42218f3eae43a6ce26d22544e986139a01e5b34a62db53757ffca81bae1" }
    local a = s.sign({}, 1700000000000):match("nonce=(%d+)")
    local b = s.sign({}, 1700000000000):match("nonce=(%d+)")
    assert.equal("1700000000000000", a)
    assert.equal("1700000000000001", b)
    assert.has_error(function()
      signer.v3 { user = "0x1", signer = "0x0000000000000000000000000000000000000001",
                  private_key = "4fd0a42218f3eae43a6ce26d22544e986139a01e5b34a62db53757ffca81bae1" }
    end, nil)
  end)
end)

describe("decimal", function()
  it("rounds on the grid exactly", function()
    assert.equal("0.123", dec.round("0.123456", "0.001", "down"))
    assert.equal("0.124", dec.round("0.123456", "0.001", "up"))
    assert.equal("27123.5", dec.round(27123.456, "0.1", "nearest"))
    assert.equal("0.3", dec.round(0.1 + 0.2, "0.1", "down"))   -- 0.30000000000000004
    assert.equal("0.3", dec.round(0.3, "0.1", "down"))         -- 0.29999999999999998890 as a double
    assert.equal("5.05", dec.round("5.07", "0.1", "down", "0.05"))
    assert.equal("-0.2", dec.round("-0.15", "0.1", "nearest"))
    assert.equal("0.2", dec.round("0.15", "0.1", "nearest"))
    assert.equal("0.0000123", dec.round("0.00001234", "0.0000001", "down"))
    assert.equal("123456789.123456789", dec.round("123456789.123456789", "0.000000001", "up"))
    assert.equal("1000000000", dec.round("999999999.9", "1000", "nearest"))
    local ok, err = dec.round("0.25", "0.1", "exact")
    assert.is_nil(ok)
    assert.matches("not a multiple of 0.1", err)
  end)
  it("normalizes and compares", function()
    assert.equal("100", dec.normalize("100.0000"))
    assert.equal("0.00000001", dec.normalize(1e-8))
    assert.equal("1500", dec.normalize("1.5E3"))
    assert.equal(0, dec.cmp("1.10", "1.1"))
    assert.equal(0, dec.cmp_product("0.5", "20", "10"))
    assert.equal(-1, dec.cmp_product("0.4999", "20", "10"))
    assert.equal(1, dec.cmp_products("3451", "1", "3000", "1.15"))
  end)
  it("refuses what it cannot represent", function()
    for _, bad in ipairs { "abc", "", "1e-19", "1.2.3", "0x10", "nan", "inf" } do
      local v, err = dec.normalize(bad)
      assert.is_nil(v, bad)
      assert.matches("not a finite decimal", err)
    end
    assert.is_nil(dec.normalize(0 / 0))
    assert.is_nil(dec.normalize(math.huge))
  end)
end)

describe("symbol filters", function()
  local btc = filters.from_symbol {
    symbol = "BTCUSDT", status = "TRADING",
    filters = {
      { filterType = "PRICE_FILTER", minPrice = "1", maxPrice = "1000000", tickSize = "0.1" },
      { filterType = "LOT_SIZE", minQty = "0.001", maxQty = "1000", stepSize = "0.001" },
      { filterType = "MARKET_LOT_SIZE", minQty = "0.001", maxQty = "120", stepSize = "0.001" },
      { filterType = "MIN_NOTIONAL", notional = "5" },
      { filterType = "PERCENT_PRICE", multiplierUp = "1.1500", multiplierDown = "0.8500", multiplierDecimal = 4 },
    } }
  local pepe = filters.from_symbol {
    symbol = "PEPEUSDT", status = "TRADING",
    filters = {
      { filterType = "PRICE_FILTER", minPrice = "0.0000001", maxPrice = "1", tickSize = "0.0000001" },
      { filterType = "LOT_SIZE", minQty = "1", maxQty = "100000000000", stepSize = "1" },
      { filterType = "MIN_NOTIONAL", notional = "1" },
    } }

  it("rounds limit prices in the trader's favour and quantities down", function()
    local o = assert(btc:format({ side = "BUY", type = "LIMIT", price = 60000.19, quantity = 0.0129 }, "60000"))
    assert.equal("60000.1", o.price)
    assert.equal("0.012", o.quantity)
    o = assert(btc:format({ side = "SELL", type = "LIMIT", price = 60000.11, quantity = "0.5" }, "60000"))
    assert.equal("60000.2", o.price)
    o = assert(pepe:format({ side = "BUY", type = "LIMIT", price = 0.00001239, quantity = 123456.7 }))
    assert.equal("0.0000123", o.price)
    assert.equal("123456", o.quantity)
  end)
  it("names the filter an order breaks", function()
    local cases = {
      { { side = "BUY", type = "MARKET", quantity = 0.0004 }, "MARKET_LOT_SIZE", "rounds to 0" },
      { { side = "BUY", type = "LIMIT", price = 0.5, quantity = 1 }, "PRICE_FILTER", "below minPrice" },
      { { side = "BUY", type = "LIMIT", price = 2000000, quantity = 0.001 }, "PRICE_FILTER", "above maxPrice" },
      { { side = "BUY", type = "LIMIT", price = 60000, quantity = 2000 }, "LOT_SIZE", "above maxQty" },
      { { side = "BUY", type = "MARKET", quantity = 200 }, "MARKET_LOT_SIZE", "above maxQty 120" },
      { { side = "BUY", type = "LIMIT", price = 4000, quantity = 0.001 }, "MIN_NOTIONAL", "below the minimum 5" },
      { { side = "BUY", type = "LIMIT", price = 70000, quantity = 0.01 }, "PERCENT_PRICE", "multiplierUp" },
      { { side = "SELL", type = "LIMIT", price = 50000, quantity = 0.01 }, "PERCENT_PRICE", "multiplierDown" },
    }
    for _, c in ipairs(cases) do
      local o, err = btc:format(c[1], "60000")
      assert.is_nil(o)
      assert.equal("filter", err.kind)
      assert.equal(c[2], err.filter)
      assert.matches(c[3], err.message, 1, true)
      assert.matches(c[2], tostring(err), 1, true)
    end
  end)
  it("lets reduce-only orders under the minimum notional through", function()
    assert.truthy(btc:format({ side = "SELL", type = "MARKET", quantity = 0.001, reduceOnly = true }, "60000"))
  end)
end)

describe("venue errors", function()
  it("names and classifies every documented code", function()
    local e = errors.from_code(-2019, "Margin is insufficient.", { venue = "aster", request = "POST /fapi/v1/order x=1" })
    assert.equal("MARGIN_NOT_SUFFICIENT", e.name)
    assert.equal("rejected", e.kind)
    assert.matches("MARGIN_NOT_SUFFICIENT %(%-2019%) rejected: Margin is insufficient.", tostring(e))
    assert.equal("clock", errors.from_code(-1021, "").kind)
    assert.equal("clock", errors.from_code(-4225, "Nonce Expired").kind)
    assert.equal("unknown", errors.from_code(-1007, "").kind)
    assert.equal("auth", errors.from_code(-1022, "").kind)
    assert.equal("rate_limited", errors.from_code(-1003, "").kind)
    assert.equal("PRICE_NOT_INCREASED_BY_TICK_SIZE", errors.from_code(-4014, "").name)
    assert.equal("UNLISTED", errors.from_code(-9999, "new").name)
    assert.is_true(errors.retryable(errors.from_code(-1001, "")))
    assert.is_false(errors.retryable(errors.from_code(-2019, "")))
    local n = 0
    for _ in pairs(errors.CODES) do n = n + 1 end
    assert.is_true(n > 130)
  end)
end)
