--- vibex.api.routes.admin — signing in with a wallet, who am I, and the
-- users' API tokens.
local T = require "vibex.api.types"
local C = require "vibex.api.routes.common"
local auth = require "vibex.api.auth"

local obj, str, arr, int, ref, enum = T.obj, T.str, T.arr, T.int, T.ref, T.enum

local function token_row(r)
  return { api_token_id = tonumber(r.api_token_id), name = r.name, scope = r.scope, prefix = r.prefix, created_by = r.created_by,
           created_at = T.iso(r.created_at), expires_at = T.iso(r.expires_at), last_used_at = T.iso(r.last_used_at),
           revoked_at = T.iso(r.revoked_at) }
end

local function limited(c)
  local wait = c.api.auth:limited(c.peer)
  if wait then
    return 429, C.err("rate_limited", ("too many failed sign-ins from %s"):format(c.peer), ("wait %d s"):format(wait)),
      { ["Retry-After"] = tostring(wait) }
  end
end

return {
  { method = "POST", path = "/api/v1/auth/nonce", id = "authNonce", tag = "auth", scope = "public", audit = false,
    summary = "Start a wallet sign-in: a nonce and the message to sign with personal_sign (EIP-191)",
    body = obj({ address = str { pattern = T.ADDRESS } }, { "address" }),
    body_example = { address = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94" },
    responses = { [200] = { schema = obj({ nonce = str(), message = str(), expires_at = T.time() }, { "nonce", "message", "expires_at" }) },
                  [429] = { description = "too many failed sign-ins", schema = ref "Error" } },
    handler = function(c)
      local st, e, h = limited(c)
      if st then return st, e, h end
      local n, err = c.api.auth:nonce(c.body.address)
      if not n then return 429, C.err("rate_limited", err) end
      return 200, n
    end },
  { method = "POST", path = "/api/v1/auth/wallet", id = "authWallet", tag = "auth", scope = "public", audit = false,
    summary = "Finish a wallet sign-in: the signed message's signature gives a short-lived session token",
    body = obj({ address = str { pattern = T.ADDRESS }, nonce = str { minLength = 1, maxLength = 128 },
                 signature = str { pattern = T.HEX } }, { "address", "nonce", "signature" }),
    responses = { [200] = { schema = obj({ token = str(), address = str(), scope = enum { "read", "trade" }, expires_at = T.time() },
                                         { "token", "address", "scope", "expires_at" }) },
                  [401] = { description = "wrong signature, address, or an old or used nonce", schema = ref "Error" },
                  [429] = { description = "too many failed sign-ins", schema = ref "Error" } },
    handler = function(c)
      local st, e, h = limited(c)
      if st then return st, e, h end
      local s, err = c.api.auth:sign_in(c.body.address, c.body.nonce, c.body.signature, c.peer)
      if not s then return 401, C.err("auth", err) end
      return 200, s
    end },
  { method = "GET", path = "/api/v1/auth/whoami", id = "whoami", tag = "auth", scope = "read",
    summary = "Who this token belongs to and its scope",
    responses = { [200] = { schema = obj({ name = str(), scope = enum { "read", "trade" }, kind = enum { "config", "token", "wallet" } },
                                         { "name", "scope", "kind" }) } },
    handler = function(c) return 200, { name = c.who.name, scope = c.who.scope, kind = c.who.kind } end },
  { method = "GET", path = "/api/v1/tokens", id = "listTokens", tag = "auth", scope = "trade",
    summary = "API tokens (never the tokens themselves: only their first characters)",
    responses = { [200] = { schema = obj({ items = arr(ref "Token") }, { "items" }) } },
    handler = function(c)
      local rows, err = auth.list_tokens(C.pool(c))
      if not rows then return 503, C.err("unavailable", tostring(err)) end
      local items = {}
      for i, r in ipairs(rows) do items[i] = token_row(r) end
      return 200, { items = T.list(items) }
    end },
  { method = "POST", path = "/api/v1/tokens", id = "createToken", tag = "auth", scope = "trade",
    summary = "Create a token for a user (shown once in this answer)",
    body = obj({ name = str { minLength = 1, maxLength = 100 }, scope = enum { "read", "trade" },
                 expires_in_s = int { minimum = 60, maximum = 31536000 } }, { "name", "scope" }),
    body_example = { name = "grafana", scope = "read", expires_in_s = 2592000 },
    responses = { [201] = { description = "Created", schema = ref "Token" } },
    handler = function(c)
      local b = c.body
      local exp = b.expires_in_s and (require("vibex.runtime").wall_ms() + b.expires_in_s * 1000) or nil
      local token, row = auth.create_token(C.pool(c), { name = b.name, scope = b.scope, expires_ms = exp, created_by = c.who.name })
      if not token then return 503, C.err("unavailable", tostring(row)) end
      local out = token_row(row)
      out.token = token
      return 201, out
    end },
  { method = "DELETE", path = "/api/v1/tokens/{id}", id = "revokeToken", tag = "auth", scope = "trade",
    summary = "Revoke a token (at once: cached lookups are dropped)",
    responses = { [200] = { schema = obj({ revoked = T.bool(), api_token_id = int() }, { "revoked", "api_token_id" }) } },
    handler = function(c)
      local id = tonumber(c.params.id)
      if not id then return 400, C.err("invalid", "id: a token id (GET /api/v1/tokens)") end
      local ok, err = auth.revoke_token(C.pool(c), id)
      if ok == nil then return 503, C.err("unavailable", tostring(err)) end
      if not ok then return 404, C.err("not_found", ("no active token %d"):format(id)) end
      c.api.auth:forget_cached()
      return 200, { revoked = true, api_token_id = id }
    end },
}
