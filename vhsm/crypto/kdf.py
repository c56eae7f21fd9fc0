"""Key derivation functions as pure functions of bytes: ANSI X9.63 (the CKD_SHA*_KDF of
CK_ECDH1_DERIVE_PARAMS) and HKDF (RFC 5869, CKM_HKDF_DERIVE).
"""
from __future__ import annotations

import hashlib
import hmac

from fxpkcs11 import ck

# hashlib names of the hashes the KDFs take, by PKCS #11 digest mechanism.
HASH_NAMES = {ck.CKM_SHA_1: "sha1", ck.CKM_SHA224: "sha224", ck.CKM_SHA256: "sha256", ck.CKM_SHA384: "sha384",
              ck.CKM_SHA512: "sha512", ck.CKM_SHA3_224: "sha3_224", ck.CKM_SHA3_256: "sha3_256",
              ck.CKM_SHA3_384: "sha3_384", ck.CKM_SHA3_512: "sha3_512"}
# CK_EC_KDF_TYPE -> hashlib name (CKD_NULL has no hash).
X963_HASHES = {ck.CKD_SHA1_KDF: "sha1", ck.CKD_SHA224_KDF: "sha224", ck.CKD_SHA256_KDF: "sha256",
               ck.CKD_SHA384_KDF: "sha384", ck.CKD_SHA512_KDF: "sha512", ck.CKD_SHA3_224_KDF: "sha3_224",
               ck.CKD_SHA3_256_KDF: "sha3_256", ck.CKD_SHA3_384_KDF: "sha3_384", ck.CKD_SHA3_512_KDF: "sha3_512"}


def digest_size(name: str) -> int:
    return hashlib.new(name).digest_size


def x963(name: str, z: bytes, shared_info: bytes, length: int) -> bytes:
    """ANSI X9.63 KDF: Hash(Z || counter || SharedInfo) for counter = 1, 2, ... (32-bit big endian)."""
    size = digest_size(name)
    if length < 0 or length > size * 0xFFFFFFFF:
        raise ValueError("X9.63 KDF output length out of range")
    out = bytearray()
    counter = 1
    while len(out) < length:
        out += hashlib.new(name, z + counter.to_bytes(4, "big") + shared_info).digest()
        counter += 1
    return bytes(out[:length])


def hkdf_extract(name: str, salt: bytes | None, ikm: bytes) -> bytes:
    """RFC 5869 extract; no salt means HashLen zero bytes."""
    if not salt:
        salt = bytes(digest_size(name))
    return hmac.new(salt, ikm, name).digest()


def hkdf_expand(name: str, prk: bytes, info: bytes, length: int) -> bytes:
    size = digest_size(name)
    if not 0 < length <= 255 * size:
        raise ValueError(f"HKDF output is 1 to {255 * size} bytes")
    out, block = bytearray(), b""
    i = 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes((i,)), name).digest()
        out += block
        i += 1
    return bytes(out[:length])


def hkdf(name: str, salt: bytes | None, ikm: bytes, info: bytes, length: int) -> bytes:
    return hkdf_expand(name, hkdf_extract(name, salt, ikm), info, length)
