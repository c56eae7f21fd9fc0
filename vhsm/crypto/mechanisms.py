"""Cryptographic operations per PKCS #11 mechanism, as contexts the device keeps between
the init, update and final steps of an operation.

Each factory validates the key against the mechanism and the parameters, then returns a
context; a single-part call is update + final. Raising DeviceError ends the operation.
"""
from __future__ import annotations

import hashlib

import hmac as _hmac
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import cmac, hashes, padding as sympad
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import (InvalidUnwrap, aes_key_unwrap, aes_key_unwrap_with_padding,
                                                    aes_key_wrap, aes_key_wrap_with_padding)

from fxpkcs11 import ck
from vhsm.crypto import gcm
from vhsm.excrypt import DeviceError

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES as _TripleDES
except ImportError:  # older cryptography
    _TripleDES = algorithms.TripleDES


def TripleDES(key: bytes) -> Any:
    """The TDES cipher for a DES3 (24-byte) or DES2 (16-byte, K1 K2 K1) key."""
    return _TripleDES(key + key[:8] if len(key) == 16 else key)

HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    ck.CKM_SHA_1: hashes.SHA1, ck.CKM_SHA224: hashes.SHA224, ck.CKM_SHA256: hashes.SHA256,
    ck.CKM_SHA384: hashes.SHA384, ck.CKM_SHA512: hashes.SHA512,
}
MGFS: dict[int, type[hashes.HashAlgorithm]] = {
    ck.CKG_MGF1_SHA1: hashes.SHA1, ck.CKG_MGF1_SHA224: hashes.SHA224, ck.CKG_MGF1_SHA256: hashes.SHA256,
    ck.CKG_MGF1_SHA384: hashes.SHA384, ck.CKG_MGF1_SHA512: hashes.SHA512,
}
RSA_PKCS_HASHED = {ck.CKM_SHA1_RSA_PKCS: hashes.SHA1, ck.CKM_SHA224_RSA_PKCS: hashes.SHA224,
                   ck.CKM_SHA256_RSA_PKCS: hashes.SHA256, ck.CKM_SHA384_RSA_PKCS: hashes.SHA384,
                   ck.CKM_SHA512_RSA_PKCS: hashes.SHA512}
RSA_PSS_HASHED = {ck.CKM_SHA1_RSA_PKCS_PSS: hashes.SHA1, ck.CKM_SHA224_RSA_PKCS_PSS: hashes.SHA224,
                  ck.CKM_SHA256_RSA_PKCS_PSS: hashes.SHA256, ck.CKM_SHA384_RSA_PKCS_PSS: hashes.SHA384,
                  ck.CKM_SHA512_RSA_PKCS_PSS: hashes.SHA512}
ECDSA_HASHED = {ck.CKM_ECDSA_SHA1: hashes.SHA1, ck.CKM_ECDSA_SHA224: hashes.SHA224,
                ck.CKM_ECDSA_SHA256: hashes.SHA256, ck.CKM_ECDSA_SHA384: hashes.SHA384,
                ck.CKM_ECDSA_SHA512: hashes.SHA512}
DSA_HASHED = {ck.CKM_DSA_SHA1: hashes.SHA1, ck.CKM_DSA_SHA224: hashes.SHA224, ck.CKM_DSA_SHA256: hashes.SHA256,
              ck.CKM_DSA_SHA384: hashes.SHA384, ck.CKM_DSA_SHA512: hashes.SHA512}
# HMAC mechanism -> (hashlib name, the CKK_*_HMAC key type it also accepts beside generic secrets)
HMACS = {ck.CKM_SHA_1_HMAC: ("sha1", ck.CKK_SHA_1_HMAC), ck.CKM_SHA224_HMAC: ("sha224", ck.CKK_SHA224_HMAC),
         ck.CKM_SHA256_HMAC: ("sha256", ck.CKK_SHA256_HMAC), ck.CKM_SHA384_HMAC: ("sha384", ck.CKK_SHA384_HMAC),
         ck.CKM_SHA512_HMAC: ("sha512", ck.CKK_SHA512_HMAC),
         ck.CKM_SHA3_224_HMAC: ("sha3_224", ck.CKK_SHA3_224_HMAC),
         ck.CKM_SHA3_256_HMAC: ("sha3_256", ck.CKK_SHA3_256_HMAC),
         ck.CKM_SHA3_384_HMAC: ("sha3_384", ck.CKK_SHA3_384_HMAC),
         ck.CKM_SHA3_512_HMAC: ("sha3_512", ck.CKK_SHA3_512_HMAC)}
HMAC_GENERAL = {ck.CKM_SHA_1_HMAC_GENERAL: ck.CKM_SHA_1_HMAC, ck.CKM_SHA224_HMAC_GENERAL: ck.CKM_SHA224_HMAC,
                ck.CKM_SHA256_HMAC_GENERAL: ck.CKM_SHA256_HMAC, ck.CKM_SHA384_HMAC_GENERAL: ck.CKM_SHA384_HMAC,
                ck.CKM_SHA512_HMAC_GENERAL: ck.CKM_SHA512_HMAC,
                ck.CKM_SHA3_224_HMAC_GENERAL: ck.CKM_SHA3_224_HMAC,
                ck.CKM_SHA3_256_HMAC_GENERAL: ck.CKM_SHA3_256_HMAC,
                ck.CKM_SHA3_384_HMAC_GENERAL: ck.CKM_SHA3_384_HMAC,
                ck.CKM_SHA3_512_HMAC_GENERAL: ck.CKM_SHA3_512_HMAC}
# Block-cipher MACs: mechanism -> (cipher family, CMAC?, general (length from the parameter)?)
BLOCK_MACS = {ck.CKM_AES_MAC: ("aes", False, False), ck.CKM_AES_MAC_GENERAL: ("aes", False, True),
              ck.CKM_AES_CMAC: ("aes", True, False), ck.CKM_AES_CMAC_GENERAL: ("aes", True, True),
              ck.CKM_DES3_MAC: ("des3", False, False), ck.CKM_DES3_MAC_GENERAL: ("des3", False, True),
              ck.CKM_DES3_CMAC: ("des3", True, False), ck.CKM_DES3_CMAC_GENERAL: ("des3", True, True)}
# DER DigestInfo prefixes: raw CKM_RSA_PKCS input that carries one is signed through the
# library's prehashed path, which gives the same bytes much faster than a modexp in Python.
DIGEST_INFO = {
    bytes.fromhex("3021300906052b0e03021a05000414"): hashes.SHA1,
    bytes.fromhex("302d300d06096086480165030402040500041c"): hashes.SHA224,
    bytes.fromhex("3031300d060960864801650304020105000420"): hashes.SHA256,
    bytes.fromhex("3041300d060960864801650304020205000430"): hashes.SHA384,
    bytes.fromhex("3051300d060960864801650304020305000440"): hashes.SHA512,
}

AES_BLOCK_MECHS = {ck.CKM_AES_ECB, ck.CKM_AES_CBC, ck.CKM_AES_CBC_PAD}
DES3_BLOCK_MECHS = {ck.CKM_DES3_ECB, ck.CKM_DES3_CBC, ck.CKM_DES3_CBC_PAD}
ASYMMETRIC_SIGN = ({ck.CKM_RSA_PKCS, ck.CKM_RSA_X_509, ck.CKM_RSA_PKCS_PSS, ck.CKM_ECDSA, ck.CKM_DSA, ck.CKM_EDDSA}
                   | set(RSA_PKCS_HASHED) | set(RSA_PSS_HASHED) | set(ECDSA_HASHED) | set(DSA_HASHED))
MAC_MECHS = set(HMACS) | set(HMAC_GENERAL) | set(BLOCK_MACS)


def bad_param(text: str) -> DeviceError:
    return DeviceError(ck.CKR_MECHANISM_PARAM_INVALID, text)


def key_type_inconsistent(mech: int) -> DeviceError:
    return DeviceError(ck.CKR_KEY_TYPE_INCONSISTENT, f"{ck.name(mech, 'CKM_')} cannot use this key type")


def data_len(text: str) -> DeviceError:
    return DeviceError(ck.CKR_DATA_LEN_RANGE, text)


# ---------------------------------------------------------------- signing contexts

class _Accumulate:
    """Collects the data of a mechanism that signs its whole input at once."""
    __slots__ = ("buf", "single_only", "used_update")

    def __init__(self, single_only: bool) -> None:
        self.buf = bytearray()
        self.single_only = single_only

    def update(self, data: bytes) -> None:
        if self.single_only:
            raise DeviceError(ck.CKR_FUNCTION_NOT_SUPPORTED, "this mechanism is single-part only")
        self.buf += data


# The padding and prehash descriptors hold no state: one of each serves every call.
PKCS1 = padding.PKCS1v15()
_PREHASHED: dict[type, utils.Prehashed] = {}
_ECDSA_PREHASHED: dict[type, ec.ECDSA] = {}
_HASHLIB = {hashes.SHA1: hashlib.sha1, hashes.SHA224: hashlib.sha224, hashes.SHA256: hashlib.sha256,
            hashes.SHA384: hashlib.sha384, hashes.SHA512: hashlib.sha512}


_KINDS: dict[tuple[type, type], bool] = {}


def _is(key: Any, kind: type) -> bool:
    """isinstance against the library's abstract key classes, remembered per concrete type:
    the abstract check costs about half a microsecond, on every operation's init."""
    t = (type(key), kind)
    known = _KINDS.get(t)
    if known is None:
        known = _KINDS[t] = isinstance(key, kind)
    return known


def prehashed(alg: type[hashes.HashAlgorithm]) -> utils.Prehashed:
    p = _PREHASHED.get(alg)
    if p is None:
        p = _PREHASHED[alg] = utils.Prehashed(alg())
    return p


def ecdsa_prehashed(alg: type[hashes.HashAlgorithm]) -> ec.ECDSA:
    p = _ECDSA_PREHASHED.get(alg)
    if p is None:
        p = _ECDSA_PREHASHED[alg] = ec.ECDSA(prehashed(alg))
    return p


class HashThenSign:
    __slots__ = ("h", "fn", "digest")
    takes_views = True  # hashes its input within the call

    def __init__(self, alg: type[hashes.HashAlgorithm], fn) -> None:
        quick = _HASHLIB.get(alg)  # hashlib's objects cost less per call than a hashes.Hash
        if quick is not None:
            self.h = quick()
            self.digest = self.h.digest
        else:
            self.h = hashes.Hash(alg())
            self.digest = self.h.finalize
        self.fn = fn

    def update(self, data: bytes) -> None:
        self.h.update(data)

    def final(self, data: bytes = b"", *extra: Any) -> Any:
        if data:
            self.h.update(data)
        return self.fn(self.digest(), *extra)


class RsaPkcsHashVerify:
    """CKM_SHA*_RSA_PKCS verification as PKCS #1 v1.5 defines it ("encode and compare"): the
    signature opened with the public key must be exactly DigestInfo || H(message). One
    library call per signature, and no verification context to build per operation."""
    __slots__ = ("h", "key", "kb", "prefix")
    takes_views = True

    def __init__(self, alg: type[hashes.HashAlgorithm], key: rsa.RSAPublicKey, kb: int) -> None:
        self.h = _HASHLIB[alg]()
        self.key, self.kb, self.prefix = key, kb, _DIGEST_INFO_OF[alg]

    def update(self, data: bytes) -> None:
        self.h.update(data)

    def final(self, data: bytes = b"", sig: bytes = b"") -> None:
        if data:
            self.h.update(data)
        if len(sig) != self.kb:
            raise DeviceError(ck.CKR_SIGNATURE_LEN_RANGE, f"RSA signature must be {self.kb} bytes")
        try:
            opened = self.key.recover_data_from_signature(sig, PKCS1, None)
        except InvalidSignature:
            opened = None
        if opened != self.prefix + self.h.digest():
            raise DeviceError(ck.CKR_SIGNATURE_INVALID, "signature does not verify")


class EcdsaSign:
    """CKM_ECDSA: signs caller-hashed input whole, as r || s."""
    __slots__ = ("key", "bits", "n", "buf")
    takes_views = True  # the input is read within the call

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self.key = key
        self.bits = key.curve.key_size
        self.n = (self.bits + 7) // 8

    def update(self, data: bytes) -> None:
        raise DeviceError(ck.CKR_FUNCTION_NOT_SUPPORTED, "this mechanism is single-part only")

    def final(self, data: bytes = b"") -> bytes:
        pre = _ECDSA_BY_SIZE.get(len(data)) if 8 * len(data) == self.bits else None
        if pre is not None:  # the usual case: a hash as long as the order
            return dss_raw(self.key.sign(bytes(data), pre), self.n)
        return _ecdsa_sign(self.key, *_ecdsa_digest(self.bits, bytes(data)))


class WholeInput:
    __slots__ = ("acc", "fn")

    def __init__(self, fn, single_only: bool = True) -> None:
        self.acc = _Accumulate(single_only)
        self.fn = fn

    def update(self, data: bytes) -> None:
        self.acc.update(data)

    def final(self, data: bytes = b"", *extra: Any) -> Any:
        buf = self.acc.buf
        return self.fn(bytes(buf) + data if buf else bytes(data), *extra)


def _pss(param: dict | None, alg: type[hashes.HashAlgorithm] | None, key_bytes: int) -> tuple[padding.PSS, type]:
    if not isinstance(param, dict):
        raise bad_param("CKM_RSA_PKCS_PSS needs CK_RSA_PKCS_PSS_PARAMS")
    h = HASHES.get(param.get("hash"))
    mgf = MGFS.get(param.get("mgf"))
    salt = param.get("salt", 0)
    if h is None or mgf is None:
        raise bad_param("unsupported PSS hash or MGF")
    if alg is not None and h is not alg:
        raise bad_param("PSS parameter hash differs from the mechanism's hash")
    if salt < 0 or salt > key_bytes - h.digest_size - 2:
        raise bad_param(f"PSS salt length {salt} does not fit the key")
    return padding.PSS(padding.MGF1(mgf()), salt), h


def _rsa_raw_private(key: rsa.RSAPrivateKey, block: bytes) -> bytes:
    n = key.private_numbers()
    k = (n.public_numbers.n.bit_length() + 7) // 8
    m = int.from_bytes(block, "big")
    if m >= n.public_numbers.n:
        raise data_len("input is not smaller than the modulus")
    # CRT
    m1 = pow(m, n.dmp1, n.p)
    m2 = pow(m, n.dmq1, n.q)
    h = (n.iqmp * (m1 - m2)) % n.p
    return (m2 + h * n.q).to_bytes(k, "big")


def _rsa_raw_public(key: rsa.RSAPublicKey, block: bytes) -> bytes:
    n = key.public_numbers()
    k = (n.n.bit_length() + 7) // 8
    m = int.from_bytes(block, "big")
    if m >= n.n:
        raise data_len("input is not smaller than the modulus")
    return pow(m, n.e, n.n).to_bytes(k, "big")


def _rsa_pkcs_sign(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    k = (key.key_size + 7) // 8
    if len(data) > k - 11:
        raise data_len(f"CKM_RSA_PKCS input is longer than {k - 11} bytes")
    for prefix, alg in DIGEST_INFO.items():
        if data.startswith(prefix) and len(data) == len(prefix) + alg.digest_size:
            return key.sign(data[len(prefix):], PKCS1, prehashed(alg))
    block = b"\x00\x01" + b"\xff" * (k - 3 - len(data)) + b"\x00" + data
    return _rsa_raw_private(key, block)


_PREHASH_SIZES = ((20, hashes.SHA1), (28, hashes.SHA224), (32, hashes.SHA256), (48, hashes.SHA384),
                  (64, hashes.SHA512))
_ECDSA_BY_SIZE = {size: ecdsa_prehashed(alg) for size, alg in _PREHASH_SIZES}
_DIGEST_INFO_OF = {alg: prefix for prefix, alg in DIGEST_INFO.items()}


def _ecdsa_digest(order_bits: int, data: bytes) -> tuple[bytes, hashes.HashAlgorithm]:
    """CKM_ECDSA and CKM_DSA sign caller-hashed data of any length. The value signed is the
    leftmost order-size bits of the input (FIPS 186); it is handed to the library as a
    digest of a size it knows, placed so that the library's own truncation yields it."""
    for size, alg in _PREHASH_SIZES:  # the usual case: a hash as long as the order
        if 8 * size == order_bits == 8 * len(data):
            return data, alg()
    e = int.from_bytes(data, "big") if data else 0
    if 8 * len(data) > order_bits:
        e >>= 8 * len(data) - order_bits
    for size, alg in _PREHASH_SIZES:
        if 8 * size >= order_bits:
            return (e << (8 * size - order_bits)).to_bytes(size, "big"), alg()
    size, alg = _PREHASH_SIZES[-1]
    if e >> (8 * size):  # order above 512 bits (P-521) and an input longer than 64 bytes
        raise data_len("input longer than 64 bytes for this curve")
    return e.to_bytes(size, "big"), alg()


def _ecdsa_sign(key: ec.EllipticCurvePrivateKey, digest: bytes, alg: hashes.HashAlgorithm) -> bytes:
    return dss_raw(key.sign(digest, ecdsa_prehashed(type(alg))), (key.curve.key_size + 7) // 8)


def dss_raw(der: bytes, n: int) -> bytes:
    """r || s, n bytes each, from the DER SEQUENCE of two INTEGERs the library returns."""
    if len(der) < 128 and der[0] == 0x30 and der[2] == 0x02:  # short form: sliced directly
        rl = der[3]
        r, sl = der[4:4 + rl], der[5 + rl]
        sig = der[6 + rl:6 + rl + sl]
        return r.lstrip(b"\0").rjust(n, b"\0") + sig.lstrip(b"\0").rjust(n, b"\0")
    r, s = utils.decode_dss_signature(der)
    return r.to_bytes(n, "big") + s.to_bytes(n, "big")


def _ecdsa_verify(key: ec.EllipticCurvePublicKey, digest: bytes, alg: hashes.HashAlgorithm, sig: bytes) -> None:
    n = (key.curve.key_size + 7) // 8
    if len(sig) != 2 * n:
        raise DeviceError(ck.CKR_SIGNATURE_LEN_RANGE, f"ECDSA signature must be {2 * n} bytes")
    der = utils.encode_dss_signature(int.from_bytes(sig[:n], "big"), int.from_bytes(sig[n:], "big"))
    key.verify(der, digest, ecdsa_prehashed(type(alg)))


def _dsa_order(key: Any) -> int:
    return key.parameters().parameter_numbers().q.bit_length()


def _dsa_sign(key: dsa.DSAPrivateKey, data: bytes) -> bytes:
    qbits = _dsa_order(key)
    digest, alg = _ecdsa_digest(qbits, data)
    r, s = utils.decode_dss_signature(key.sign(digest, utils.Prehashed(alg)))
    n = (qbits + 7) // 8
    return r.to_bytes(n, "big") + s.to_bytes(n, "big")


def _dsa_verify(key: dsa.DSAPublicKey, data: bytes, sig: bytes) -> None:
    qbits = _dsa_order(key)
    n = (qbits + 7) // 8
    if len(sig) != 2 * n:
        raise DeviceError(ck.CKR_SIGNATURE_LEN_RANGE, f"DSA signature must be {2 * n} bytes")
    digest, alg = _ecdsa_digest(qbits, data)
    der = utils.encode_dss_signature(int.from_bytes(sig[:n], "big"), int.from_bytes(sig[n:], "big"))
    key.verify(der, digest, utils.Prehashed(alg))


EDWARDS_PRIVATE = (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)
EDWARDS_PUBLIC = (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)


def _eddsa_param(param: Any) -> None:
    """Pure EdDSA only: no parameter, or CK_EDDSA_PARAMS with phFlag false and no context
    (Ed25519ph/ctx and Ed448ph/contexts are not available from the library)."""
    if param is None:
        return
    if not isinstance(param, dict):
        raise bad_param("CKM_EDDSA takes CK_EDDSA_PARAMS or no parameter")
    if param.get("ph") or param.get("context"):
        raise bad_param("prehashed EdDSA and EdDSA contexts are not supported; use pure EdDSA")


def _eddsa_verify(key: Any, data: bytes, sig: bytes) -> None:
    size = 64 if isinstance(key, ed25519.Ed25519PublicKey) else 114
    if len(sig) != size:
        raise DeviceError(ck.CKR_SIGNATURE_LEN_RANGE, f"EdDSA signature must be {size} bytes")
    key.verify(sig, data)


def sign_context(mech: int, param: Any, key: Any, key_type: int) -> Any:
    if key_type == ck.CKK_RSA and _is(key, rsa.RSAPrivateKey):
        kb = (key.key_size + 7) // 8
        if mech in RSA_PKCS_HASHED:
            return HashThenSign(RSA_PKCS_HASHED[mech],
                                lambda d, p=prehashed(RSA_PKCS_HASHED[mech]): key.sign(d, PKCS1, p))
        if mech == ck.CKM_RSA_PKCS:
            return WholeInput(lambda d: _rsa_pkcs_sign(key, d))
        if mech == ck.CKM_RSA_X_509:
            return WholeInput(lambda d: _rsa_raw_private(key, d.rjust(kb, b"\x00")) if len(d) <= kb
                              else (_ for _ in ()).throw(data_len("input longer than the modulus")))
        if mech in RSA_PSS_HASHED:
            pad, h = _pss(param, RSA_PSS_HASHED[mech], kb)
            return HashThenSign(h, lambda d: key.sign(d, pad, utils.Prehashed(h())))
        if mech == ck.CKM_RSA_PKCS_PSS:
            pad, h = _pss(param, None, kb)

            def sign_pss(d: bytes) -> bytes:
                if len(d) != h.digest_size:
                    raise data_len(f"CKM_RSA_PKCS_PSS input must be a {h.digest_size}-byte hash")
                return key.sign(d, pad, utils.Prehashed(h()))
            return WholeInput(sign_pss)
    if key_type == ck.CKK_EC and _is(key, ec.EllipticCurvePrivateKey):
        if mech == ck.CKM_ECDSA:
            return EcdsaSign(key)
        if mech in ECDSA_HASHED:
            alg = ECDSA_HASHED[mech]
            return HashThenSign(alg, lambda d: _ecdsa_sign(key, *_ecdsa_digest(key.curve.key_size, d)))
    if key_type == ck.CKK_DSA and _is(key, dsa.DSAPrivateKey):
        if mech == ck.CKM_DSA:
            return WholeInput(lambda d: _dsa_sign(key, d))
        if mech in DSA_HASHED:
            return HashThenSign(DSA_HASHED[mech], lambda d: _dsa_sign(key, d))
    if key_type == ck.CKK_EC_EDWARDS and _is(key, EDWARDS_PRIVATE) and mech == ck.CKM_EDDSA:
        _eddsa_param(param)
        return WholeInput(key.sign, single_only=False)
    if mech in ASYMMETRIC_SIGN:
        raise key_type_inconsistent(mech)
    raise DeviceError(ck.CKR_MECHANISM_INVALID, f"{ck.name(mech, 'CKM_')} cannot sign")


def _checked_verify(fn):
    def run(*args: Any) -> None:
        try:
            fn(*args)
        except InvalidSignature:
            raise DeviceError(ck.CKR_SIGNATURE_INVALID, "signature does not verify") from None
    return run


def verify_context(mech: int, param: Any, key: Any, key_type: int) -> Any:
    if key_type == ck.CKK_RSA and _is(key, rsa.RSAPublicKey):
        kb = (key.key_size + 7) // 8
        if mech in RSA_PKCS_HASHED:
            return RsaPkcsHashVerify(RSA_PKCS_HASHED[mech], key, kb)

        def length_ok(sig: bytes) -> None:
            if len(sig) != kb:
                raise DeviceError(ck.CKR_SIGNATURE_LEN_RANGE, f"RSA signature must be {kb} bytes")
        if mech in (ck.CKM_RSA_PKCS, ck.CKM_RSA_X_509):
            def verify_raw(d: bytes, sig: bytes) -> None:
                length_ok(sig)
                block = _rsa_raw_public(key, sig)
                if mech == ck.CKM_RSA_X_509:
                    ok = block == d.rjust(kb, b"\x00")
                else:
                    ok = (len(d) <= kb - 11 and
                          block == b"\x00\x01" + b"\xff" * (kb - 3 - len(d)) + b"\x00" + d)
                if not ok:
                    raise DeviceError(ck.CKR_SIGNATURE_INVALID, "signature does not verify")
            return WholeInput(verify_raw)
        if mech in RSA_PSS_HASHED or mech == ck.CKM_RSA_PKCS_PSS:
            pad, h = _pss(param, RSA_PSS_HASHED.get(mech), kb)
            fn = _checked_verify(lambda d, sig: (length_ok(sig), key.verify(sig, d, pad, utils.Prehashed(h()))))
            return HashThenSign(h, fn) if mech in RSA_PSS_HASHED else WholeInput(fn)
    if key_type == ck.CKK_EC and _is(key, ec.EllipticCurvePublicKey):
        ks = key.curve.key_size
        fn = _checked_verify(lambda d, sig: _ecdsa_verify(key, *_ecdsa_digest(ks, d), sig))
        if mech == ck.CKM_ECDSA:
            return WholeInput(fn)
        if mech in ECDSA_HASHED:
            return HashThenSign(ECDSA_HASHED[mech], fn)
    if key_type == ck.CKK_DSA and _is(key, dsa.DSAPublicKey):
        fn = _checked_verify(lambda d, sig: _dsa_verify(key, d, sig))
        if mech == ck.CKM_DSA:
            return WholeInput(fn)
        if mech in DSA_HASHED:
            return HashThenSign(DSA_HASHED[mech], fn)
    if key_type == ck.CKK_EC_EDWARDS and _is(key, EDWARDS_PUBLIC) and mech == ck.CKM_EDDSA:
        _eddsa_param(param)
        return WholeInput(_checked_verify(lambda d, sig: _eddsa_verify(key, d, sig)), single_only=False)
    if mech in ASYMMETRIC_SIGN:
        raise key_type_inconsistent(mech)
    raise DeviceError(ck.CKR_MECHANISM_INVALID, f"{ck.name(mech, 'CKM_')} cannot verify")


# ---------------------------------------------------------------- MAC contexts

class CbcMac:
    """ISO 9797-1 MAC algorithm 1 (CBC-MAC, zero IV, data padded with zero bytes): the MAC of
    CKM_AES_MAC and CKM_DES3_MAC; the output is the last cipher block."""
    __slots__ = ("enc", "block", "buf", "last", "seen")

    def __init__(self, algorithm: Any, block: int) -> None:
        self.enc = Cipher(algorithm, modes.CBC(bytes(block))).encryptor()
        self.block = block
        self.buf = b""
        self.last = b""
        self.seen = False

    def update(self, data: bytes) -> None:
        if not data:
            return
        self.seen = True
        data = self.buf + data
        whole = len(data) - len(data) % self.block
        if whole:
            out = self.enc.update(data[:whole])
            self.last = out[-self.block:]
        self.buf = data[whole:]

    def finalize(self) -> bytes:
        if self.buf or not self.seen:
            self.last = self.enc.update(self.buf.ljust(self.block, b"\x00"))[-self.block:]
        return self.last


class Mac:
    """A MAC context for GPMC / GPMV: HMAC, CMAC or CBC-MAC, cut to `length` bytes."""
    __slots__ = ("h", "finish", "length")

    def __init__(self, h: Any, finish: Any, length: int) -> None:
        self.h = h
        self.finish = finish
        self.length = length

    def update(self, data: bytes) -> None:
        self.h.update(data)

    def final(self, data: bytes = b"", sig: bytes | None = None) -> bytes | None:
        if data:
            self.h.update(data)
        mac = self.finish()[: self.length]
        if sig is None:
            return mac
        if len(sig) != self.length:
            raise DeviceError(ck.CKR_SIGNATURE_LEN_RANGE, f"MAC must be {self.length} bytes")
        if not _hmac.compare_digest(mac, sig):
            raise DeviceError(ck.CKR_SIGNATURE_INVALID, "MAC does not verify")
        return None


def _mac_length(mech: int, param: Any, full: int) -> int:
    if not isinstance(param, int) or not 1 <= param <= full:
        raise bad_param(f"{ck.name(mech, 'CKM_')} needs CK_MAC_GENERAL_PARAMS from 1 to {full}")
    return param


def mac_context(mech: int, param: Any, key: bytes, key_type: int) -> Mac:
    if mech in HMACS or mech in HMAC_GENERAL:
        name, own_type = HMACS[HMAC_GENERAL.get(mech, mech)]
        if key_type not in (ck.CKK_GENERIC_SECRET, own_type):
            # HMAC takes generic secrets and the key type named for its hash.
            raise key_type_inconsistent(mech)
        h = _hmac.new(key, digestmod=name)
        length = _mac_length(mech, param, h.digest_size) if mech in HMAC_GENERAL else h.digest_size
        return Mac(h, h.digest, length)
    if mech in BLOCK_MACS:
        family, is_cmac, general = BLOCK_MACS[mech]
        if family == "aes":
            if key_type != ck.CKK_AES:
                raise key_type_inconsistent(mech)
            algorithm, block = algorithms.AES(key), 16
        else:
            if key_type not in (ck.CKK_DES3, ck.CKK_DES2):
                raise key_type_inconsistent(mech)
            algorithm, block = TripleDES(key), 8
        h = cmac.CMAC(algorithm) if is_cmac else CbcMac(algorithm, block)
        default = block if is_cmac else block // 2
        length = _mac_length(mech, param, block) if general else default
        if not general and param not in (None, b""):
            raise bad_param(f"{ck.name(mech, 'CKM_')} takes no parameter")
        return Mac(h, h.finalize, length)
    raise DeviceError(ck.CKR_MECHANISM_INVALID, f"{ck.name(mech, 'CKM_')} is not a MAC mechanism")


# ---------------------------------------------------------------- cipher contexts

class BlockCipher:
    """ECB/CBC with or without PKCS#7 padding, multi-part."""
    __slots__ = ("ctx", "pad", "unpad", "block", "pending", "decrypt")
    takes_views = True  # reads its input once, within the call: no copy needed

    def __init__(self, cipher: Cipher, block: int, padded: bool, decrypt: bool) -> None:
        self.ctx = cipher.decryptor() if decrypt else cipher.encryptor()
        self.block = block
        self.decrypt = decrypt
        self.pad = sympad.PKCS7(block * 8).padder() if padded and not decrypt else None
        self.unpad = sympad.PKCS7(block * 8).unpadder() if padded and decrypt else None
        self.pending = 0

    def update(self, data: bytes) -> bytes:
        if self.pad is not None:
            data = self.pad.update(data)
        out = self.ctx.update(data)
        if self.unpad is not None:
            out = self.unpad.update(out)
        self.pending = (self.pending + len(data)) % self.block
        return out

    def final(self, data: bytes = b"") -> bytes:
        out = self.update(data) if data else b""
        if self.pad is not None:
            out += self.ctx.update(self.pad.finalize())
            return out + self.ctx.finalize()
        if self.pending:
            raise (DeviceError(ck.CKR_ENCRYPTED_DATA_LEN_RANGE, "ciphertext is not a whole number of blocks")
                   if self.decrypt else data_len("data is not a whole number of blocks"))
        out += self.ctx.finalize()
        if self.unpad is not None:
            try:
                out += self.unpad.finalize()
            except ValueError:
                raise DeviceError(ck.CKR_ENCRYPTED_DATA_INVALID, "bad padding") from None
        return out


class Gcm:
    """CKM_AES_GCM. IVs of 8 to 128 bytes run in the crypto library; the other lengths the
    spec allows (1 to 256 bytes) go through vhsm/crypto/gcm.py, which buffers to the end."""
    __slots__ = ("ctx", "tag_len", "decrypt", "buf", "_key", "_iv", "_aad")

    def __init__(self, key: bytes, param: Any, decrypt: bool) -> None:
        if not isinstance(param, dict):
            raise bad_param("CKM_AES_GCM needs CK_GCM_PARAMS")
        iv, aad, tag_bits = param.get("iv", b""), param.get("aad", b""), param.get("tag_bits", 0)
        if not 1 <= len(iv) <= 256:
            raise bad_param(f"GCM IV must be 1 to 256 bytes, not {len(iv)}")
        if tag_bits not in (32, 64, 96, 104, 112, 120, 128):
            raise bad_param(f"GCM tag of {tag_bits} bits is not allowed")
        self.tag_len = tag_bits // 8
        self.decrypt = decrypt
        self.buf = bytearray()
        self._key, self._iv, self._aad = key, iv, aad
        self.ctx = None
        if not decrypt and 8 <= len(iv) <= 128:
            self.ctx = Cipher(algorithms.AES(key), modes.GCM(iv, min_tag_length=4)).encryptor()
            if aad:
                self.ctx.authenticate_additional_data(aad)

    def update(self, data: bytes) -> bytes:
        if self.ctx is None:  # decrypting (the tag is the input's tail), or an IV only gcm.py takes
            self.buf += data
            return b""
        return self.ctx.update(data)

    def final(self, data: bytes = b"") -> bytes:
        if self.ctx is not None:
            out = self.ctx.update(data) if data else b""
            out += self.ctx.finalize()
            return out + self.ctx.tag[: self.tag_len]
        self.buf += data
        if not self.decrypt:
            return gcm.encrypt(self._key, self._iv, self._aad, bytes(self.buf), self.tag_len)
        if len(self.buf) < self.tag_len:
            raise DeviceError(ck.CKR_ENCRYPTED_DATA_LEN_RANGE, "input shorter than the GCM tag")
        if not 8 <= len(self._iv) <= 128:
            out = gcm.decrypt(self._key, self._iv, self._aad, bytes(self.buf), self.tag_len)
            if out is None:
                raise DeviceError(ck.CKR_ENCRYPTED_DATA_INVALID, "GCM tag does not verify")
            return out
        ct, tag = bytes(self.buf[: -self.tag_len]), bytes(self.buf[-self.tag_len:])
        dec = Cipher(algorithms.AES(self._key), modes.GCM(self._iv, tag, min_tag_length=4)).decryptor()
        if self._aad:
            dec.authenticate_additional_data(self._aad)
        try:
            return dec.update(ct) + dec.finalize()
        except InvalidTag:
            raise DeviceError(ck.CKR_ENCRYPTED_DATA_INVALID, "GCM tag does not verify") from None


def _iv(param: Any, size: int, mech: int) -> bytes:
    if not isinstance(param, bytes) or len(param) != size:
        raise bad_param(f"{ck.name(mech, 'CKM_')} needs a {size}-byte IV")
    return param


class Ctr:
    """CKM_AES_CTR: the counter block's low ulCounterBits bits count blocks and must not wrap."""
    __slots__ = ("ctx", "room")

    def __init__(self, key: bytes, param: Any) -> None:
        if not isinstance(param, dict) or len(param.get("cb") or b"") != 16:
            raise bad_param("CKM_AES_CTR needs CK_AES_CTR_PARAMS")
        bits = param.get("bits", 0)
        if not 1 <= bits <= 128:
            raise bad_param(f"ulCounterBits must be 1 to 128, not {bits}")
        cb = param["cb"]
        counter = int.from_bytes(cb, "big") & ((1 << bits) - 1)
        self.room = ((1 << bits) - counter) * 16  # bytes before the counter would wrap
        self.ctx = Cipher(algorithms.AES(key), modes.CTR(cb)).encryptor()

    def update(self, data: bytes) -> bytes:
        if len(data) > self.room:
            raise data_len("the CTR counter would wrap (ulCounterBits too small for this much data)")
        self.room -= len(data)
        return self.ctx.update(data)

    def final(self, data: bytes = b"") -> bytes:
        return (self.update(data) if data else b"") + self.ctx.finalize()


def symmetric_context(mech: int, param: Any, key: bytes, key_type: int, decrypt: bool) -> Any:
    if mech in AES_BLOCK_MECHS or mech in (ck.CKM_AES_GCM, ck.CKM_AES_CTR):
        if key_type != ck.CKK_AES:
            raise key_type_inconsistent(mech)
        if mech == ck.CKM_AES_GCM:
            return Gcm(key, param, decrypt)
        if mech == ck.CKM_AES_CTR:
            return Ctr(key, param)
        mode = modes.ECB() if mech == ck.CKM_AES_ECB else modes.CBC(_iv(param, 16, mech))
        return BlockCipher(Cipher(algorithms.AES(key), mode), 16, mech == ck.CKM_AES_CBC_PAD, decrypt)
    if mech in DES3_BLOCK_MECHS:
        if key_type not in (ck.CKK_DES3, ck.CKK_DES2):
            raise key_type_inconsistent(mech)
        mode = modes.ECB() if mech == ck.CKM_DES3_ECB else modes.CBC(_iv(param, 8, mech))
        return BlockCipher(Cipher(TripleDES(key), mode), 8, mech == ck.CKM_DES3_CBC_PAD, decrypt)
    raise DeviceError(ck.CKR_MECHANISM_INVALID, f"{ck.name(mech, 'CKM_')} is not a symmetric cipher")


# ---------------------------------------------------------------- RSA encryption

def _oaep(param: Any) -> padding.OAEP:
    if not isinstance(param, dict):
        raise bad_param("CKM_RSA_PKCS_OAEP needs CK_RSA_PKCS_OAEP_PARAMS")
    h, mgf = HASHES.get(param.get("hash")), MGFS.get(param.get("mgf"))
    if h is None or mgf is None:
        raise bad_param("unsupported OAEP hash or MGF")
    return padding.OAEP(padding.MGF1(mgf()), h(), param.get("label") or None)


def rsa_encrypt(mech: int, param: Any, key: rsa.RSAPublicKey, data: bytes) -> bytes:
    kb = (key.key_size + 7) // 8
    if mech == ck.CKM_RSA_PKCS:
        if len(data) > kb - 11:
            raise data_len(f"CKM_RSA_PKCS encrypts at most {kb - 11} bytes")
        return key.encrypt(data, padding.PKCS1v15())
    if mech == ck.CKM_RSA_PKCS_OAEP:
        pad = _oaep(param)
        if len(data) > kb - 2 * pad._algorithm.digest_size - 2:
            raise data_len("data too long for OAEP with this key")
        return key.encrypt(data, pad)
    if mech == ck.CKM_RSA_X_509:
        if len(data) > kb:
            raise data_len("data longer than the modulus")
        return _rsa_raw_public(key, data.rjust(kb, b"\x00"))
    raise DeviceError(ck.CKR_MECHANISM_INVALID, f"{ck.name(mech, 'CKM_')} cannot encrypt with RSA")


def rsa_decrypt(mech: int, param: Any, key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    kb = (key.key_size + 7) // 8
    if len(data) != kb:
        raise DeviceError(ck.CKR_ENCRYPTED_DATA_LEN_RANGE, f"RSA ciphertext must be {kb} bytes")
    try:
        if mech == ck.CKM_RSA_PKCS:
            return key.decrypt(data, padding.PKCS1v15())
        if mech == ck.CKM_RSA_PKCS_OAEP:
            return key.decrypt(data, _oaep(param))
        if mech == ck.CKM_RSA_X_509:
            return _rsa_raw_private(key, data)
    except ValueError:
        raise DeviceError(ck.CKR_ENCRYPTED_DATA_INVALID, "decryption failed") from None
    raise DeviceError(ck.CKR_MECHANISM_INVALID, f"{ck.name(mech, 'CKM_')} cannot decrypt with RSA")


RSA_CIPHER_MECHS = {ck.CKM_RSA_PKCS, ck.CKM_RSA_PKCS_OAEP, ck.CKM_RSA_X_509}


# ---------------------------------------------------------------- key wrapping

AES_WRAP_MECHS = {ck.CKM_AES_KEY_WRAP, ck.CKM_AES_KEY_WRAP_PAD, ck.CKM_AES_KEY_WRAP_KWP}


def aes_wrap(mech: int, param: Any, kek: bytes, data: bytes) -> bytes:
    if param not in (None, b""):
        raise bad_param("AES key wrap takes no IV here")
    if mech == ck.CKM_AES_KEY_WRAP:
        if len(data) % 8 or len(data) < 16:
            raise DeviceError(ck.CKR_KEY_SIZE_RANGE, "CKM_AES_KEY_WRAP needs a key of 16+ bytes in 8-byte steps")
        return aes_key_wrap(kek, data)
    if mech == ck.CKM_AES_KEY_WRAP_PAD:
        pad = 8 - len(data) % 8
        if len(data) + pad < 16:
            raise DeviceError(ck.CKR_KEY_SIZE_RANGE, "CKM_AES_KEY_WRAP_PAD needs a key of at least 8 bytes")
        return aes_key_wrap(kek, data + bytes([pad]) * pad)
    return aes_key_wrap_with_padding(kek, data)


def aes_unwrap(mech: int, param: Any, kek: bytes, data: bytes) -> bytes:
    if param not in (None, b""):
        raise bad_param("AES key wrap takes no IV here")
    try:
        if mech == ck.CKM_AES_KEY_WRAP:
            return aes_key_unwrap(kek, data)
        if mech == ck.CKM_AES_KEY_WRAP_PAD:
            out = aes_key_unwrap(kek, data)
            pad = out[-1]
            if not 1 <= pad <= 8 or out[-pad:] != bytes([pad]) * pad:
                raise InvalidUnwrap()
            return out[:-pad]
        return aes_key_unwrap_with_padding(kek, data)
    except (InvalidUnwrap, ValueError):
        raise DeviceError(ck.CKR_WRAPPED_KEY_INVALID, "wrapped key does not unwrap under this key") from None


# ---------------------------------------------------------------- wrapping with block ciphers

PADDED_BLOCK_MECHS = {ck.CKM_AES_CBC_PAD, ck.CKM_DES3_CBC_PAD}
BLOCK_WRAP_MECHS = AES_BLOCK_MECHS | DES3_BLOCK_MECHS


def _block_of(mech: int) -> int:
    return 16 if mech in AES_BLOCK_MECHS else 8


def block_wrap(mech: int, param: Any, kek: bytes, kek_type: int, data: bytes) -> bytes:
    """Wrap with ECB, CBC or CBC_PAD. Without padding the key is padded with zero bytes to a
    whole block (the spec's rule); the unwrapper cuts it back with CKA_VALUE_LEN."""
    try:
        ctx = symmetric_context(mech, param, kek, kek_type, False)
    except DeviceError as e:
        if e.reason == ck.CKR_KEY_TYPE_INCONSISTENT:
            raise DeviceError(ck.CKR_WRAPPING_KEY_TYPE_INCONSISTENT, e.text) from None
        raise
    if mech not in PADDED_BLOCK_MECHS and len(data) % _block_of(mech):
        data += bytes(_block_of(mech) - len(data) % _block_of(mech))
    return ctx.final(data)


def block_unwrap(mech: int, param: Any, kek: bytes, kek_type: int, blob: bytes) -> bytes:
    try:
        ctx = symmetric_context(mech, param, kek, kek_type, True)
    except DeviceError as e:
        if e.reason == ck.CKR_KEY_TYPE_INCONSISTENT:
            raise DeviceError(ck.CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT, e.text) from None
        raise
    try:
        return ctx.final(blob)
    except DeviceError as e:
        reason = {ck.CKR_ENCRYPTED_DATA_LEN_RANGE: ck.CKR_WRAPPED_KEY_LEN_RANGE,
                  ck.CKR_ENCRYPTED_DATA_INVALID: ck.CKR_WRAPPED_KEY_INVALID}.get(e.reason, e.reason)
        raise DeviceError(reason, e.text) from None
