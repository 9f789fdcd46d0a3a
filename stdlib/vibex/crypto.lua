--- vibex.crypto — hashes, HMACs and randomness (OpenSSL libcrypto).
--
--   crypto.sha256("abc")                     --> hex digest
--   crypto.hmac_sha256(secret, query)        --> hex (Binance-style request signatures)
--   crypto.random_bytes(16)                  --> 16 bytes from the CSPRNG
return require "vibex.core.crypto"
