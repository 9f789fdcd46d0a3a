"""Keccak-256 and secp256k1 public-key recovery in plain Python.

Written from the specifications (FIPS 202's Keccak-f[1600] with the original
Keccak padding; SEC 1 section 4.1.6 for recovery), independently of the
runtime's C code, so that the fake exchange checks the client's signatures
rather than agreeing with them. Slow (milliseconds) and fine for tests.
"""


def _round_constants():
    # the LFSR of FIPS 202, algorithm 5 (rc), collected into 24 round constants
    out, r = [], 1
    bits = []
    for _ in range(7 * 24):
        bits.append(r & 1)
        r <<= 1
        if r & 0x100:
            r ^= 0x171
    for i in range(24):
        c = 0
        for j in range(7):
            if bits[7 * i + j]:
                c |= 1 << ((1 << j) - 1)
        out.append(c)
    return out


def _rotations():
    rot = [[0] * 5 for _ in range(5)]
    x, y = 1, 0
    for t in range(24):
        rot[x][y] = ((t + 1) * (t + 2) // 2) % 64
        x, y = y, (2 * x + 3 * y) % 5
    return rot


_RC = _round_constants()
_ROT = _rotations()
_M64 = (1 << 64) - 1


def _keccak_f(a):
    for rc in _RC:
        c = [a[x][0] ^ a[x][1] ^ a[x][2] ^ a[x][3] ^ a[x][4] for x in range(5)]
        d = [c[(x - 1) % 5] ^ (((c[(x + 1) % 5] << 1) | (c[(x + 1) % 5] >> 63)) & _M64) for x in range(5)]
        a = [[a[x][y] ^ d[x] for y in range(5)] for x in range(5)]
        b = [[0] * 5 for _ in range(5)]
        for x in range(5):
            for y in range(5):
                r = _ROT[x][y]
                v = a[x][y]
                b[y][(2 * x + 3 * y) % 5] = ((v << r) | (v >> (64 - r))) & _M64 if r else v
        a = [[b[x][y] ^ ((~b[(x + 1) % 5][y]) & b[(x + 2) % 5][y]) for y in range(5)] for x in range(5)]
        a[0][0] ^= rc
    return a


def keccak256(data: bytes) -> bytes:
    rate = 136
    msg = bytearray(data)
    msg.append(0x01)
    while len(msg) % rate:
        msg.append(0)
    msg[-1] |= 0x80
    a = [[0] * 5 for _ in range(5)]
    for off in range(0, len(msg), rate):
        block = msg[off:off + rate]
        for i in range(rate // 8):
            lane = int.from_bytes(block[8 * i:8 * i + 8], "little")
            a[i % 5][i // 5] ^= lane
        a = _keccak_f(a)
    out = b""
    for i in range(4):
        out += a[i % 5][i // 5].to_bytes(8, "little")
    return out


assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"

# secp256k1 (SEC 2)
P = 2 ** 256 - 2 ** 32 - 977
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
     0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8)


def _add(p, q):
    if p is None:
        return q
    if q is None:
        return p
    if p[0] == q[0] and (p[1] + q[1]) % P == 0:
        return None
    if p == q:
        lam = 3 * p[0] * p[0] * pow(2 * p[1], -1, P) % P
    else:
        lam = (q[1] - p[1]) * pow(q[0] - p[0], -1, P) % P
    x = (lam * lam - p[0] - q[0]) % P
    return (x, (lam * (p[0] - x) - p[1]) % P)


def _mul(k, p):
    r = None
    while k:
        if k & 1:
            r = _add(r, p)
        p = _add(p, p)
        k >>= 1
    return r


def address_of_point(q) -> str:
    pub = q[0].to_bytes(32, "big") + q[1].to_bytes(32, "big")
    return "0x" + keccak256(pub)[12:].hex()


def address_of_key(key: int) -> str:
    return address_of_point(_mul(key, G))


def recover(digest: bytes, sig: bytes):
    """The lower-case address that signed digest, or None."""
    if len(sig) != 65:
        return None
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:64], "big")
    v = sig[64]
    recid = v - 27 if v >= 27 else v
    if recid not in (0, 1) or not (1 <= r < N) or not (1 <= s < N):
        return None
    # low-s only, as Ethereum requires since EIP-2
    if s > N // 2:
        return None
    x = r
    y2 = (pow(x, 3, P) + 7) % P
    y = pow(y2, (P + 1) // 4, P)
    if y * y % P != y2:
        return None
    if y & 1 != recid:
        y = P - y
    e = int.from_bytes(digest, "big")
    rinv = pow(r, -1, N)
    q = _add(_mul(s * rinv % N, (x, y)), _mul((-e * rinv) % N, G))
    if q is None:
        return None
    return address_of_point(q)


def eip712_message_digest(msg: str, chain_id: int) -> bytes:
    """Aster's typed data: domain AsterSignTransaction/1/chainId/0x0, Message{msg}."""
    def word_str(s):
        return keccak256(s.encode())
    domain_type = word_str("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    domain = keccak256(domain_type + word_str("AsterSignTransaction") + word_str("1")
                       + chain_id.to_bytes(32, "big") + bytes(32))
    struct = keccak256(word_str("Message(string msg)") + word_str(msg))
    return keccak256(b"\x19\x01" + domain + struct)
