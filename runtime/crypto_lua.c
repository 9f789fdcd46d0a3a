/*
 * crypto_lua.c — require "vibex.core.crypto": hashes, HMACs and randomness from
 * OpenSSL's libcrypto (no home-made crypto).
 *
 *   sha256(s) -> hex         hmac_sha256(key, msg) -> hex
 *   sha256_raw(s) -> bytes   hmac_sha256_raw(key, msg) -> bytes
 *   random_bytes(n) -> bytes (CSPRNG)
 *   hex(bytes) -> hex
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "vx_lua.h"

static void push_hex(lua_State *L, const unsigned char *p, size_t n) {
    static const char digits[] = "0123456789abcdef";
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        luaL_addchar(&b, digits[p[i] >> 4]);
        luaL_addchar(&b, digits[p[i] & 15]);
    }
    luaL_pushresult(&b);
}

static int sha256_common(lua_State *L, int hex) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    unsigned char md[SHA256_DIGEST_LENGTH];
    unsigned int len = 0;
    if (!EVP_Digest(s, n, md, &len, EVP_sha256(), NULL)) return luaL_error(L, "sha256: libcrypto failed");
    if (hex) push_hex(L, md, len);
    else lua_pushlstring(L, (const char *)md, len);
    return 1;
}

static int l_sha256(lua_State *L) { return sha256_common(L, 1); }
static int l_sha256_raw(lua_State *L) { return sha256_common(L, 0); }

static int hmac_common(lua_State *L, int hex) {
    size_t klen, mlen;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *msg = luaL_checklstring(L, 2, &mlen);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen, md, &len))
        return luaL_error(L, "hmac_sha256: libcrypto failed");
    if (hex) push_hex(L, md, len);
    else lua_pushlstring(L, (const char *)md, len);
    return 1;
}

static int l_hmac_sha256(lua_State *L) { return hmac_common(L, 1); }
static int l_hmac_sha256_raw(lua_State *L) { return hmac_common(L, 0); }

static int l_random_bytes(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 0 || n > 4096) return luaL_argerror(L, 1, "0..4096 bytes");
    unsigned char buf[4096];
    if (RAND_bytes(buf, (int)n) != 1) return luaL_error(L, "random_bytes: libcrypto RNG failed");
    lua_pushlstring(L, (const char *)buf, (size_t)n);
    return 1;
}

static int l_hex(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    push_hex(L, (const unsigned char *)s, n);
    return 1;
}

int vx_open_crypto(lua_State *L) {
    static const luaL_Reg fns[] = {{"sha256", l_sha256},
                                   {"sha256_raw", l_sha256_raw},
                                   {"hmac_sha256", l_hmac_sha256},
                                   {"hmac_sha256_raw", l_hmac_sha256_raw},
                                   {"random_bytes", l_random_bytes},
                                   {"hex", l_hex},
                                   {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
