/*
 * eth_lua.c — require "vibex.core.eth" (see eth.h):
 *
 *   keccak256(bytes) -> 32 bytes
 *   signer(hexkey) -> signer | nil, err      signer:address() -> "0x…" (EIP-55)
 *   signer:sign(digest32) -> 65 bytes        signer:sign_message(domain32, msg) -> 65 bytes
 *   recover(digest32, sig65) -> "0x…" | nil, err
 *   checksum(address) -> "0x…" | nil, err    (EIP-55 form of any-case hex)
 *   eip712_domain(name, version, chain_id, contract) -> 32 bytes
 *   eip712_message(domain32, msg) -> 32-byte digest
 *
 * A signer's key lives only in C memory; tostring shows the address.
 */
#include <string.h>

#include "eth.h"
#include "vx_lua.h"

#define SIGNER_MT "vibex.eth.signer"

static const uint8_t *check_bytes(lua_State *L, int idx, size_t want, const char *what) {
    size_t n;
    const char *s = luaL_checklstring(L, idx, &n);
    if (n != want) luaL_error(L, "%s: expected %d bytes, got %d", what, (int)want, (int)n);
    return (const uint8_t *)s;
}

static int l_keccak256(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    uint8_t h[32];
    vx_keccak256(s, n, h);
    lua_pushlstring(L, (const char *)h, 32);
    return 1;
}

static vx_eth_signer *check_signer(lua_State *L) {
    vx_eth_signer **ud = luaL_checkudata(L, 1, SIGNER_MT);
    if (!*ud) luaL_error(L, "signer: already closed");
    return *ud;
}

static int l_signer(lua_State *L) {
    const char *hex = luaL_checkstring(L, 1);
    char err[160];
    vx_eth_signer **ud = lua_newuserdata(L, sizeof *ud);
    *ud = NULL;
    luaL_getmetatable(L, SIGNER_MT);
    lua_setmetatable(L, -2);
    *ud = vx_eth_signer_new(hex, err, sizeof err);
    if (!*ud) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return 1;
}

static void push_address(lua_State *L, const uint8_t addr[20]) {
    char hex[43];
    vx_eth_address_hex(addr, hex);
    lua_pushstring(L, hex);
}

static int l_signer_address(lua_State *L) {
    push_address(L, vx_eth_signer_address(check_signer(L)));
    return 1;
}

static int push_signature(lua_State *L, const vx_eth_signer *s, const uint8_t digest[32]) {
    uint8_t sig[65];
    if (vx_eth_sign(s, digest, sig) != 0) return luaL_error(L, "secp256k1: signing failed");
    lua_pushlstring(L, (const char *)sig, sizeof sig);
    return 1;
}

static int l_signer_sign(lua_State *L) {
    const vx_eth_signer *s = check_signer(L);
    return push_signature(L, s, check_bytes(L, 2, 32, "sign(digest)"));
}

static int l_signer_sign_message(lua_State *L) {
    const vx_eth_signer *s = check_signer(L);
    const uint8_t *domain = check_bytes(L, 2, 32, "sign_message(domain, msg)");
    size_t n;
    const char *msg = luaL_checklstring(L, 3, &n);
    uint8_t digest[32];
    vx_eip712_message_digest(domain, msg, n, digest);
    return push_signature(L, s, digest);
}

static int l_signer_gc(lua_State *L) {
    vx_eth_signer **ud = luaL_checkudata(L, 1, SIGNER_MT);
    vx_eth_signer_free(*ud);
    *ud = NULL;
    return 0;
}

static int l_signer_tostring(lua_State *L) {
    vx_eth_signer **ud = luaL_checkudata(L, 1, SIGNER_MT);
    if (!*ud) {
        lua_pushliteral(L, "<eth signer (closed)>");
        return 1;
    }
    char hex[43];
    vx_eth_address_hex(vx_eth_signer_address(*ud), hex);
    lua_pushfstring(L, "<eth signer %s>", hex);
    return 1;
}

static int l_recover(lua_State *L) {
    const uint8_t *digest = check_bytes(L, 1, 32, "recover(digest, sig)");
    const uint8_t *sig = check_bytes(L, 2, 65, "recover(digest, sig)");
    uint8_t addr[20];
    if (vx_eth_recover(digest, sig, addr) != 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "invalid signature (cannot recover a public key)");
        return 2;
    }
    push_address(L, addr);
    return 1;
}

static int l_checksum(lua_State *L) {
    uint8_t addr[20];
    if (vx_eth_parse_address(luaL_checkstring(L, 1), addr) != 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "address: expected 0x followed by 40 hex digits");
        return 2;
    }
    push_address(L, addr);
    return 1;
}

static int l_eip712_domain(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    const char *version = luaL_checkstring(L, 2);
    lua_Number chain = luaL_checknumber(L, 3);
    if (chain < 0 || chain > 9007199254740991.0 || chain != (lua_Number)(uint64_t)chain)
        return luaL_argerror(L, 3, "chain id must be a non-negative integer");
    uint8_t contract[20];
    if (vx_eth_parse_address(luaL_checkstring(L, 4), contract) != 0)
        return luaL_argerror(L, 4, "verifying contract: expected 0x followed by 40 hex digits");
    uint8_t out[32];
    vx_eip712_domain(name, version, (uint64_t)chain, contract, out);
    lua_pushlstring(L, (const char *)out, 32);
    return 1;
}

static int l_eip712_message(lua_State *L) {
    const uint8_t *domain = check_bytes(L, 1, 32, "eip712_message(domain, msg)");
    size_t n;
    const char *msg = luaL_checklstring(L, 2, &n);
    uint8_t out[32];
    vx_eip712_message_digest(domain, msg, n, out);
    lua_pushlstring(L, (const char *)out, 32);
    return 1;
}

int vx_open_eth(lua_State *L) {
    static const luaL_Reg methods[] = {{"address", l_signer_address},
                                       {"sign", l_signer_sign},
                                       {"sign_message", l_signer_sign_message},
                                       {NULL, NULL}};
    vx_new_class(L, SIGNER_MT, methods, l_signer_gc);
    lua_pop(L, 1);
    luaL_getmetatable(L, SIGNER_MT);
    lua_pushcfunction(L, l_signer_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);

    static const luaL_Reg fns[] = {{"keccak256", l_keccak256},
                                   {"signer", l_signer},
                                   {"recover", l_recover},
                                   {"checksum", l_checksum},
                                   {"eip712_domain", l_eip712_domain},
                                   {"eip712_message", l_eip712_message},
                                   {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
