--- vibex.api.auth — who is calling, and what they may do.
--
-- Bearer tokens: the config's api.token (the operator: scope trade),
-- tokens made per user with `vibex token create` or POST /api/v1/tokens
-- (scope read or trade, an expiry; only their sha256 is stored), and
-- sessions from a wallet sign-in. Sign-in with an Ethereum wallet: the
-- server hands out a nonce inside a readable message; the wallet signs it
-- with personal_sign (EIP-191); the address recovered from the signature
-- must be the one claimed and one the config allows; the nonce is good
-- once and for api.nonce_ttl_s (5 minutes). Failed sign-ins and bad tokens are logged and
-- limited per peer (10 a minute, then 429 with Retry-After).
local crypto = require "vibex.crypto"
local eth = require "vibex.core.eth"
local log = require "vibex.log"
local runtime = require "vibex.runtime"
local types = require "vibex.api.types"

local M = {}

local alog = log.channel("app")
local NONCE_MAX = 10000
local FAIL_WINDOW_MS, FAIL_MAX = 60 * 1000, 10
local CACHE_MS = 5000

local Auth = {}
Auth.__index = Auth

--- o: config (the api section), pool (the database, for user tokens), host
--- (named in the sign-in message).
function M.new(o)
  return setmetatable({ cfg = o.config, pool = o.pool, host = o.host or "vibex", nonces = {}, n_nonces = 0,
                        sessions = {}, failures = {}, cache = {}, counts = {} }, Auth)
end

local function now() return runtime.wall_ms() end

local function new_secret(prefix) return prefix .. crypto.hex(crypto.random_bytes(24)) end

-- ---- failures and their limit ------------------------------------------------------------------

--- Seconds to wait when the peer failed too often lately, else nil.
function Auth:limited(peer)
  local f = self.failures[peer]
  if not f or now() - f.since > FAIL_WINDOW_MS then return nil end
  if f.n >= FAIL_MAX then return math.ceil((f.since + FAIL_WINDOW_MS - now()) / 1000) end
end

-- Tables keyed by what callers send (addresses, token hashes) must not
-- grow without end under a flood: past `max` entries, old ones go.
-- self.counts[name] counts the entries of self[name] (one is about to be added).
function Auth:bounded(name, max, stale)
  local t = self[name]
  self.counts[name] = (self.counts[name] or 0) + 1
  if self.counts[name] <= max then return end
  local n = 0
  for k, v in pairs(t) do
    if stale(v) then t[k] = nil else n = n + 1 end
  end
  if n >= max then -- everything is fresh: start over rather than grow
    self[name], n = {}, 0
  end
  self.counts[name] = n + 1
end

function Auth:failed(peer, what, fields)
  local f = self.failures[peer]
  if not f or now() - f.since > FAIL_WINDOW_MS then
    f = { n = 0, since = now() }
    if not self.failures[peer] then
      self:bounded("failures", 10000, function(v) return now() - v.since > FAIL_WINDOW_MS end)
    end
    self.failures[peer] = f
  end
  f.n = f.n + 1
  fields = fields or {}
  fields.peer, fields.failures = peer, f.n
  alog:warn("API authentication failed: " .. what, fields)
end

-- ---- tokens ---------------------------------------------------------------------------------------

local function equal(a, b) return crypto.sha256(a) == crypto.sha256(b) end -- no early exit on the secret

-- A user token's row by its hash, cached briefly (a read route must not
-- cost a query per request).
function Auth:user_token(hash)
  local c = self.cache[hash]
  if c and now() - c.at < CACHE_MS then return c.row end
  if not self.pool then return nil end
  local rows = self.pool:query([[UPDATE api_tokens SET last_used_at = now()
    WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
    RETURNING api_token_id, name, scope, expires_at]], hash)
  local row = rows and rows[1] or false
  if not c then self:bounded("cache", 1000, function(v) return now() - v.at >= CACHE_MS end) end
  self.cache[hash] = { at = now(), row = row }
  return row
end

--- The caller of a request: {name, scope, kind} | nil, why.
function Auth:identify(authorization)
  local token = authorization and authorization:match("^[Bb]earer%s+(%S+)%s*$")
  if not token then return nil, "no bearer token (send Authorization: Bearer TOKEN)" end
  local op = self.cfg.token
  if type(op) == "table" and op.reveal then op = op:reveal() end -- a vibex.secret
  if op and equal(token, op) then
    return { name = "operator", scope = "trade", kind = "config" }
  end
  local hash = crypto.sha256(token)
  local s = self.sessions[hash]
  if s then
    if s.expires_ms > now() then return { name = s.address, scope = s.scope, kind = "wallet" } end
    self.sessions[hash] = nil
    return nil, "the session has expired: sign in again"
  end
  local row = self:user_token(hash)
  if row then return { name = row.name, scope = row.scope, kind = "token", id = row.api_token_id } end
  return nil, "unknown, revoked or expired token"
end

--- Make a user token. Returns the token (shown once) and its row.
function M.create_token(pool, o)
  local token = new_secret("vx_")
  local expires = o.expires_ms and types.iso(o.expires_ms) or nil
  local rows, err = pool:query([[INSERT INTO api_tokens (name, scope, token_hash, prefix, created_by, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6::timestamptz) RETURNING api_token_id, name, scope, prefix, created_at, expires_at]],
    o.name, o.scope, crypto.sha256(token), token:sub(1, 10), o.created_by or "cli", expires)
  if not rows then return nil, err end
  return token, rows[1]
end

function M.list_tokens(pool)
  return pool:query([[SELECT api_token_id, name, scope, prefix, created_by, created_at, expires_at, last_used_at, revoked_at
    FROM api_tokens ORDER BY api_token_id]])
end

function M.revoke_token(pool, id)
  local rows, err = pool:query("UPDATE api_tokens SET revoked_at = now() WHERE api_token_id = $1 AND revoked_at IS NULL RETURNING api_token_id", id)
  if not rows then return nil, err end
  return rows[1] ~= nil
end

function Auth:forget_cached() self.cache, self.counts.cache = {}, 0 end


-- ---- wallet sign-in ------------------------------------------------------------------------------

function Auth:wallet_entry(address)
  for _, w in ipairs(self.cfg.wallets or {}) do
    if w.address:lower() == address:lower() then return w end
  end
end

--- The message a wallet signs for a nonce.
function Auth:nonce_ttl_ms() return (self.cfg.nonce_ttl_s or 300) * 1000 end

function Auth:message(address, nonce, issued_ms)
  local NONCE_TTL_MS = self:nonce_ttl_ms()
  return ("%s wants you to sign in with your Ethereum account:\n%s\n\nSign in to the vibex API.\n\nNonce: %s\nIssued At: %s\nExpiration Time: %s")
    :format(self.host, address, nonce, types.iso(issued_ms), types.iso(issued_ms + NONCE_TTL_MS))
end

--- A nonce for an address: {nonce, message, expires_at}.
function Auth:nonce(address)
  -- expired nonces go; a flood of requests cannot grow the table past NONCE_MAX
  if self.n_nonces >= NONCE_MAX then
    for k, v in pairs(self.nonces) do
      if v.expires_ms < now() then self.nonces[k] = nil; self.n_nonces = self.n_nonces - 1 end
    end
    if self.n_nonces >= NONCE_MAX then return nil, "too many sign-ins in progress; try again in a few minutes" end
  end
  local nonce = crypto.hex(crypto.random_bytes(16))
  local t = now()
  local NONCE_TTL_MS = self:nonce_ttl_ms()
  local msg = self:message(address, nonce, t)
  self.nonces[nonce] = { address = address, message = msg, expires_ms = t + NONCE_TTL_MS }
  self.n_nonces = self.n_nonces + 1
  return { nonce = nonce, message = msg, expires_at = types.iso(t + NONCE_TTL_MS) }
end

local function personal_digest(msg)
  return eth.keccak256("\25Ethereum Signed Message:\n" .. #msg .. msg)
end

local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

--- Check a signed nonce. A session {token, address, scope, expires_at} |
--- nil, why (the nonce is used up either way: a signature never works twice).
function Auth:sign_in(address, nonce, signature, peer)
  local n = self.nonces[nonce]
  if n then self.nonces[nonce], self.n_nonces = nil, self.n_nonces - 1 end
  if not n then
    self:failed(peer, "unknown or used nonce", { address = address })
    return nil, "unknown or already used nonce: ask for a new one (POST /api/v1/auth/nonce)"
  end
  if n.expires_ms < now() then
    self:failed(peer, "expired nonce", { address = address })
    return nil, "the nonce has expired: ask for a new one"
  end
  if n.address:lower() ~= address:lower() then
    self:failed(peer, "nonce issued to another address", { address = address })
    return nil, "this nonce was issued to another address"
  end
  local sig = signature:gsub("^0x", "")
  if #sig ~= 130 or not sig:match("^%x+$") then
    self:failed(peer, "malformed signature", { address = address })
    return nil, "signature: expected 65 bytes as 0x and 130 hex digits"
  end
  local got = eth.recover(personal_digest(n.message), unhex(sig))
  if not got or got:lower() ~= address:lower() then
    self:failed(peer, "signature of another key", { address = address, recovered = got })
    return nil, "the signature was not made by " .. address
  end
  local w = self:wallet_entry(address)
  if not w then
    self:failed(peer, "address not allowed", { address = address })
    return nil, address .. " is not among the config's api.wallets"
  end
  local token = new_secret("vxs_")
  local ttl = (self.cfg.session_ttl_s or 3600) * 1000
  self:bounded("sessions", 10000, function(v) return v.expires_ms < now() end)
  self.sessions[crypto.sha256(token)] = { address = eth.checksum(address) or address, scope = w.scope or "read",
                                          expires_ms = now() + ttl }
  alog:info("API wallet sign-in", { address = address, scope = w.scope, peer = peer })
  return { token = token, address = eth.checksum(address) or address, scope = w.scope or "read",
           expires_at = types.iso(now() + ttl) }
end

return M
