"""AES-GCM for any IV length (NIST SP 800-38D), for the IVs the crypto library refuses
(it takes 8 to 128 bytes; PKCS #11 allows 1 to 256). AES itself still runs in the library;
only GHASH and the counter arithmetic are done here, so this path is slow and used only
where it must be."""
from __future__ import annotations

import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_R = 0xE1 << 120


def _mul(x: int, y: int) -> int:
    """Multiplication in GF(2^128) with GCM's bit order."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def _ghash(h: int, data: bytes) -> int:
    y = 0
    for i in range(0, len(data), 16):
        y = _mul(y ^ int.from_bytes(data[i:i + 16].ljust(16, b"\x00"), "big"), h)
    return y


def _pad16(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 16)


def _ecb(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _j0(key: bytes, iv: bytes) -> tuple[int, bytes]:
    h = int.from_bytes(_ecb(key, bytes(16)), "big")
    if len(iv) == 12:
        return h, iv + b"\x00\x00\x00\x01"
    block = _pad16(iv) + bytes(8) + (8 * len(iv)).to_bytes(8, "big")
    return h, _ghash(h, block).to_bytes(16, "big")


def _gctr(key: bytes, j0: bytes, data: bytes) -> bytes:
    """The keystream from inc32(J0) on; the low 32 bits wrap alone, as GCM says."""
    out = bytearray()
    prefix, low = j0[:12], int.from_bytes(j0[12:], "big")
    pos = 0
    while pos < len(data):
        low = (low + 1) & 0xFFFFFFFF
        room = (0x100000000 - low) * 16  # bytes before the low word wraps
        chunk = data[pos:pos + room]
        ctr = Cipher(algorithms.AES(key), modes.CTR(prefix + low.to_bytes(4, "big"))).encryptor()
        out += ctr.update(chunk) + ctr.finalize()
        pos += len(chunk)
        low = (low + (len(chunk) + 15) // 16 - 1) & 0xFFFFFFFF
    return bytes(out)


def _tag(key: bytes, h: int, j0: bytes, aad: bytes, ct: bytes, tag_len: int) -> bytes:
    lengths = (8 * len(aad)).to_bytes(8, "big") + (8 * len(ct)).to_bytes(8, "big")
    s = _ghash(h, _pad16(aad) + _pad16(ct) + lengths)
    full = int.from_bytes(_ecb(key, j0), "big") ^ s
    return full.to_bytes(16, "big")[:tag_len]


def encrypt(key: bytes, iv: bytes, aad: bytes, data: bytes, tag_len: int) -> bytes:
    h, j0 = _j0(key, iv)
    ct = _gctr(key, j0, data)
    return ct + _tag(key, h, j0, aad, ct, tag_len)


def decrypt(key: bytes, iv: bytes, aad: bytes, data: bytes, tag_len: int) -> bytes | None:
    """The plaintext, or None when the tag does not verify."""
    ct, tag = data[:-tag_len], data[-tag_len:]
    h, j0 = _j0(key, iv)
    if not hmac.compare_digest(_tag(key, h, j0, aad, ct, tag_len), tag):
        return None
    return _gctr(key, j0, ct)
