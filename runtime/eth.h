/*
 * eth.h — the Ethereum pieces Aster's V3 signatures need: Keccak-256,
 * secp256k1 signing with recovery id, signer recovery, addresses (EIP-55)
 * and the EIP-712 digest of Aster's one-field `Message(string msg)`.
 *
 * The cryptography is the libraries': the Keccak-f[1600] permutation is
 * nettle's (`sha3_permute`; only the original Keccak padding, which differs
 * from SHA-3's, is ours) and ECDSA is libsecp256k1 (RFC 6979 nonces).
 */
#ifndef VX_ETH_H
#define VX_ETH_H

#include <stddef.h>
#include <stdint.h>

void vx_keccak256(const void *data, size_t n, uint8_t out[32]);

typedef struct vx_eth_signer vx_eth_signer;

/* A signer for a 32-byte private key given as 64 hex digits (0x optional).
 * NULL with err filled on a malformed or invalid key; the key never appears
 * in err. */
vx_eth_signer *vx_eth_signer_new(const char *hexkey, char *err, size_t errlen);
/* Wipes the key. */
void vx_eth_signer_free(vx_eth_signer *s);
const uint8_t *vx_eth_signer_address(const vx_eth_signer *s); /* 20 bytes */

/* sig = r(32) || s(32) || v(1), v = 27 + recovery id (Ethereum's form).
 * Returns 0, or -1 if libsecp256k1 refused (only for a zero/overflowing
 * digest-derived nonce, which RFC 6979 makes practically impossible). */
int vx_eth_sign(const vx_eth_signer *s, const uint8_t digest[32], uint8_t sig[65]);
/* The address whose key produced sig over digest; 0, or -1 for an invalid
 * signature (v must be 27/28 or 0/1). */
int vx_eth_recover(const uint8_t digest[32], const uint8_t sig[65], uint8_t addr[20]);

/* "0x" + EIP-55 mixed-case checksum hex; out needs 43 bytes. */
void vx_eth_address_hex(const uint8_t addr[20], char out[43]);
/* Parse "0x" + 40 hex digits (any case); 0, or -1. */
int vx_eth_parse_address(const char *s, uint8_t addr[20]);

/* hashStruct(EIP712Domain{name, version, chainId, verifyingContract}). */
void vx_eip712_domain(const char *name, const char *version, uint64_t chain_id,
                      const uint8_t contract[20], uint8_t out[32]);
/* keccak256(0x1901 || domain || hashStruct(Message{msg})). */
void vx_eip712_message_digest(const uint8_t domain[32], const char *msg, size_t n, uint8_t out[32]);

#endif
