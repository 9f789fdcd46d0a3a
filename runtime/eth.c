/*
 * eth.c — Keccak-256, secp256k1 signatures and EIP-712 digests (see eth.h).
 */
#include "eth.h"

#include <nettle/sha3.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Keccak-256: rate 136 bytes, original padding 0x01 … 0x80 ---------- */

enum { KECCAK256_RATE = 136 };

static void absorb_block(struct sha3_state *st, const uint8_t *p) {
    for (int i = 0; i < KECCAK256_RATE / 8; i++) {
        uint64_t lane = 0;
        for (int b = 7; b >= 0; b--) lane = (lane << 8) | p[i * 8 + b];
        st->a[i] ^= lane;
    }
    sha3_permute(st);
}

void vx_keccak256(const void *data, size_t n, uint8_t out[32]) {
    struct sha3_state st;
    memset(&st, 0, sizeof st);
    const uint8_t *p = data;
    for (; n >= KECCAK256_RATE; n -= KECCAK256_RATE, p += KECCAK256_RATE) absorb_block(&st, p);
    uint8_t last[KECCAK256_RATE] = {0};
    if (n) memcpy(last, p, n);
    last[n] ^= 0x01;
    last[KECCAK256_RATE - 1] ^= 0x80;
    absorb_block(&st, last);
    for (int i = 0; i < 4; i++)
        for (int b = 0; b < 8; b++) out[i * 8 + b] = (uint8_t)(st.a[i] >> (8 * b));
}

/* ---- signer ---------------------------------------------------------------- */

struct vx_eth_signer {
    secp256k1_context *ctx;
    uint8_t key[32];
    uint8_t address[20];
};

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Exactly 2*n hex digits after an optional 0x; 0 or -1. */
static int parse_hex(const char *s, uint8_t *out, size_t n) {
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s += 2;
    if (strlen(s) != 2 * n) return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static void address_of_pubkey(const secp256k1_context *ctx, const secp256k1_pubkey *pk, uint8_t addr[20]) {
    uint8_t ser[65];
    size_t len = sizeof ser;
    secp256k1_ec_pubkey_serialize(ctx, ser, &len, pk, SECP256K1_EC_UNCOMPRESSED);
    uint8_t h[32];
    vx_keccak256(ser + 1, 64, h);
    memcpy(addr, h + 12, 20);
}

vx_eth_signer *vx_eth_signer_new(const char *hexkey, char *err, size_t errlen) {
    vx_eth_signer *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!hexkey || parse_hex(hexkey, s->key, 32) != 0) {
        snprintf(err, errlen, "private key: expected 64 hex digits (optionally 0x-prefixed)");
        goto fail;
    }
    s->ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    if (!s->ctx) {
        snprintf(err, errlen, "secp256k1: cannot create a context");
        goto fail;
    }
    /* blinding against timing side channels, as libsecp256k1 recommends */
    uint8_t seed[32];
    if (RAND_bytes(seed, sizeof seed) != 1 || !secp256k1_context_randomize(s->ctx, seed)) {
        snprintf(err, errlen, "secp256k1: cannot randomize the context");
        goto fail;
    }
    secp256k1_pubkey pk;
    if (!secp256k1_ec_seckey_verify(s->ctx, s->key) || !secp256k1_ec_pubkey_create(s->ctx, &pk, s->key)) {
        snprintf(err, errlen, "private key: not a valid secp256k1 key (zero or not below the group order)");
        goto fail;
    }
    address_of_pubkey(s->ctx, &pk, s->address);
    return s;
fail:
    vx_eth_signer_free(s);
    return NULL;
}

void vx_eth_signer_free(vx_eth_signer *s) {
    if (!s) return;
    if (s->ctx) secp256k1_context_destroy(s->ctx);
    OPENSSL_cleanse(s->key, sizeof s->key);
    free(s);
}

const uint8_t *vx_eth_signer_address(const vx_eth_signer *s) { return s->address; }

int vx_eth_sign(const vx_eth_signer *s, const uint8_t digest[32], uint8_t sig[65]) {
    secp256k1_ecdsa_recoverable_signature rs;
    if (!secp256k1_ecdsa_sign_recoverable(s->ctx, &rs, digest, s->key, NULL, NULL)) return -1;
    int recid = 0;
    secp256k1_ecdsa_recoverable_signature_serialize_compact(s->ctx, sig, &recid, &rs);
    sig[64] = (uint8_t)(27 + recid);
    return 0;
}

int vx_eth_recover(const uint8_t digest[32], const uint8_t sig[65], uint8_t addr[20]) {
    int v = sig[64];
    int recid = v >= 27 ? v - 27 : v;
    if (recid < 0 || recid > 1) return -1;
    const secp256k1_context *ctx = secp256k1_context_static;
    secp256k1_ecdsa_recoverable_signature rs;
    secp256k1_pubkey pk;
    if (!secp256k1_ecdsa_recoverable_signature_parse_compact(ctx, &rs, sig, recid)) return -1;
    if (!secp256k1_ecdsa_recover(ctx, &pk, &rs, digest)) return -1;
    address_of_pubkey(ctx, &pk, addr);
    return 0;
}

/* ---- addresses ----------------------------------------------------------- */

void vx_eth_address_hex(const uint8_t addr[20], char out[43]) {
    static const char digits[] = "0123456789abcdef";
    char lower[40];
    for (int i = 0; i < 20; i++) {
        lower[2 * i] = digits[addr[i] >> 4];
        lower[2 * i + 1] = digits[addr[i] & 15];
    }
    uint8_t h[32];
    vx_keccak256(lower, 40, h);
    out[0] = '0';
    out[1] = 'x';
    for (int i = 0; i < 40; i++) {
        int nibble = (i & 1) ? (h[i / 2] & 15) : (h[i / 2] >> 4);
        char c = lower[i];
        out[2 + i] = (c >= 'a' && nibble >= 8) ? (char)(c - 'a' + 'A') : c;
    }
    out[42] = 0;
}

int vx_eth_parse_address(const char *s, uint8_t addr[20]) {
    if (!(s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))) return -1;
    return parse_hex(s, addr, 20);
}

/* ---- EIP-712 ------------------------------------------------------------- */

static void keccak_str(const char *s, uint8_t out[32]) { vx_keccak256(s, strlen(s), out); }

void vx_eip712_domain(const char *name, const char *version, uint64_t chain_id,
                      const uint8_t contract[20], uint8_t out[32]) {
    uint8_t enc[5 * 32] = {0};
    keccak_str("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)", enc);
    keccak_str(name, enc + 32);
    keccak_str(version, enc + 64);
    for (int b = 0; b < 8; b++) enc[96 + 31 - b] = (uint8_t)(chain_id >> (8 * b));
    memcpy(enc + 128 + 12, contract, 20);
    vx_keccak256(enc, sizeof enc, out);
}

void vx_eip712_message_digest(const uint8_t domain[32], const char *msg, size_t n, uint8_t out[32]) {
    uint8_t st[64];
    keccak_str("Message(string msg)", st);
    vx_keccak256(msg, n, st + 32);
    uint8_t pre[66];
    pre[0] = 0x19;
    pre[1] = 0x01;
    memcpy(pre + 2, domain, 32);
    vx_keccak256(st, sizeof st, pre + 34);
    vx_keccak256(pre, sizeof pre, out);
}
