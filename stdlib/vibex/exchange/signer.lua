--- vibex.exchange.signer — request signing for Aster/Binance futures.
--
-- Both schemes sign exactly the parameter string that is sent (the docs'
-- examples disagree on URL-encoding, so the string is built once, here):
--
--   V1  X-MBX-APIKEY header; params += timestamp, recvWindow;
--       signature = hex(HMAC-SHA256(secret, params))
--   V3  params += nonce (microseconds, strictly increasing), user, signer;
--       signature = 0x r||s||v, an EIP-712 signature of Message{msg = params}
--       under the domain {AsterSignTransaction, "1", chainId, 0x0…0}
--
-- Keys are taken from Secret objects (or plain strings in a REPL) when the
-- signer is made and live only inside it (the V3 key only in C memory).
local crypto = require "vibex.core.crypto"
local eth = require "vibex.core.eth"
local secret = require "vibex.secret"

local M = {}

local function reveal(v, what)
  if secret.is_secret(v) then v = v:reveal() end
  if type(v) ~= "string" or v == "" then
    error(("signer: %s is missing (set it with env \"NAME\" in the config)"):format(what), 3)
  end
  return v
end

--- Percent-encode a parameter value (RFC 3986 unreserved characters stay).
function M.encode(v)
  return (tostring(v):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

--- "k1=v1&k2=v2" from a list of {key, value} pairs, in order.
function M.join(pairs_list)
  local out = {}
  for i, kv in ipairs(pairs_list) do out[i] = kv[1] .. "=" .. M.encode(kv[2]) end
  return table.concat(out, "&")
end

--- V1 (HMAC) signer. now_ms() gives the venue's time estimate.
function M.v1(o)
  local key = reveal(o.api_key, "api_key")
  local sec = reveal(o.api_secret, "api_secret")
  local recv = o.recv_window_ms or 5000
  return {
    kind = "v1",
    -- the venue refuses a request that arrives more than recvWindow after its timestamp
    acceptance_ms = recv,
    headers = { "X-MBX-APIKEY: " .. key },
    --- Add the auth parameters, return the signed string.
    sign = function(list, now_ms)
      list[#list + 1] = { "recvWindow", recv }
      list[#list + 1] = { "timestamp", ("%d"):format(now_ms) }
      local s = M.join(list)
      return s .. "&signature=" .. crypto.hmac_sha256(sec, s)
    end,
  }
end

--- V3 (EIP-712) signer: user (main wallet), signer (API wallet address),
-- private_key (the API wallet's key), chain_id (1666 mainnet, 714 testnet).
function M.v3(o)
  local user = reveal(o.user, "user")
  local signer_addr = reveal(o.signer, "signer")
  local key = eth.signer(reveal(o.private_key, "private_key"))
  if not key then error("signer: private_key is not a valid secp256k1 key (64 hex digits)", 2) end
  local derived = key:address()
  if derived:lower() ~= signer_addr:lower() then
    error(("signer: the private key belongs to %s, not to the configured signer %s"):format(derived, signer_addr), 2)
  end
  local domain = eth.eip712_domain("AsterSignTransaction", "1", o.chain_id or 1666,
                                   "0x0000000000000000000000000000000000000000")
  local window_ms = o.nonce_window_ms or 10000
  -- Nonces are microseconds and strictly increasing (the venue remembers
  -- the last 100 and refuses a repeat, or one below all of them). Only the
  -- nonces the venue took bind the next ones: those it refused as outside
  -- its window (after a clock step) are forgotten at the next resync, or
  -- every later nonce would stay outside the window too.
  local last_nonce, high_accepted = 0, 0
  return {
    kind = "v3",
    -- the venue refuses a nonce this far from its clock (documented as 10 s)
    acceptance_ms = window_ms,
    headers = {},
    address = derived,
    --- Add the auth parameters; returns the signed string and its nonce.
    sign = function(list, now_ms)
      local nonce = math.max(math.floor(now_ms) * 1000, last_nonce + 1)
      last_nonce = nonce
      list[#list + 1] = { "nonce", ("%d"):format(nonce) }
      list[#list + 1] = { "user", user }
      list[#list + 1] = { "signer", signer_addr }
      local s = M.join(list)
      return s .. "&signature=0x" .. crypto.hex(key:sign_message(domain, s)), nonce
    end,
    --- The venue answered a request signed with this nonce (not a clock refusal).
    accepted = function(nonce)
      if nonce > high_accepted then high_accepted = nonce end
    end,
    --- After a clock resync: the next nonce follows the venue's clock and
    -- the highest nonce it took, unless that one lies beyond its window
    -- now (the venue's clock stepped back): then no nonce near it can be
    -- taken, and one at the venue's time cannot repeat it.
    rebase = function(now_ms)
      local now_us = math.floor(now_ms) * 1000
      if high_accepted > now_us + window_ms * 1000 then
        last_nonce = now_us
      else
        last_nonce = high_accepted
      end
    end,
  }
end

return M
