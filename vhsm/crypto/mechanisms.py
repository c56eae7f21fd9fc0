"""Cryptographic operations per PKCS #11 mechanism, as contexts the device keeps between
the init, update and final steps of an operation.

Each factory validates the key against the mechanism and the parameters, then returns a
context; a single-part call is update + final. Raising DeviceError ends the operation.
"""
from __future__ import annotations

import hmac as _hmac
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, padding as sympad
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import (InvalidUnwrap, aes_key_unwrap, aes_key_unwrap_with_padding,
                                                    aes_key_wrap, aes_key_wrap_with_padding)

from fxpkcs11 import ck
from vhsm.excrypt import DeviceError

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # older cryptography
    TripleDES = algorithms.TripleDES

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
HMACS = {ck.CKM_SHA_1_HMAC: hashes.SHA1, ck.CKM_SHA224_HMAC: hashes.SHA224, ck.CKM_SHA256_HMAC: hashes.SHA256,
         ck.CKM_SHA384_HMAC: hashes.SHA384, ck.CKM_SHA512_HMAC: hashes.SHA512}
HMAC_GENERAL = {ck.CKM_SHA_1_HMAC_GENERAL: hashes.SHA1, ck.CKM_SHA224_HMAC_GENERAL: hashes.SHA224,
                ck.CKM_SHA256_HMAC_GENERAL: hashes.SHA256, ck.CKM_SHA384_HMAC_GENERAL: hashes.SHA384,
                ck.CKM_SHA512_HMAC_GENERAL: hashes.SHA512}
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
ASYMMETRIC_SIGN = ({ck.CKM_RSA_PKCS, ck.CKM_RSA_X_509, ck.CKM_RSA_PKCS_PSS, ck.CKM_ECDSA}
                   | set(RSA_PKCS_HASHED) | set(RSA_PSS_HASHED) | set(ECDSA_HASHED))
MAC_MECHS = set(HMACS) | set(HMAC_GENERAL)


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


class HashThenSign:
    __slots__ = ("h", "fn")

    def __init__(self, alg: type[hashes.HashAlgorithm], fn) -> None:
        self.h = hashes.Hash(alg())
        self.fn = fn

    def update(self, data: bytes) -> None:
        self.h.update(data)

    def final(self, data: bytes = b"", *extra: Any) -> Any:
        if data:
            self.h.update(data)
        return self.fn(self.h.finalize(), *extra)


class WholeInput:
    __slots__ = ("acc", "fn")

    def __init__(self, fn, single_only: bool = True) -> None:
        self.acc = _Accumulate(single_only)
        self.fn = fn

    def update(self, data: bytes) -> None:
        self.acc.update(data)

    def final(self, data: bytes = b"", *extra: Any) -> Any:
        return self.fn(bytes(self.acc.buf) + data, *extra)


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
            return key.sign(data[len(prefix):], padding.PKCS1v15(), utils.Prehashed(alg()))
    block = b"\x00\x01" + b"\xff" * (k - 3 - len(data)) + b"\x00" + data
    return _rsa_raw_private(key, block)


def _ecdsa_digest(key_size: int, data: bytes) -> tuple[bytes, hashes.HashAlgorithm]:
    """CKM_ECDSA signs caller-hashed data of any length; fit it to a prehashed size."""
    order_bytes = (key_size + 7) // 8
    if len(data) > order_bytes:
        data = data[:order_bytes]
    for alg in (hashes.SHA1, hashes.SHA224, hashes.SHA256, hashes.SHA384, hashes.SHA512):
        if alg.digest_size == len(data):
            return data, alg()
    for alg in (hashes.SHA256, hashes.SHA384, hashes.SHA512):
        if alg.digest_size >= len(data):
            return data.rjust(alg.digest_size, b"\x00"), alg()
    raise data_len("ECDSA input too long")


def _ecdsa_sign(key: ec.EllipticCurvePrivateKey, digest: bytes, alg: hashes.HashAlgorithm) -> bytes:
    r, s = utils.decode_dss_signature(key.sign(digest, ec.ECDSA(utils.Prehashed(alg))))
    n = (key.curve.key_size + 7) // 8
    return r.to_bytes(n, "big") + s.to_bytes(n, "big")


def _ecdsa_verify(key: ec.EllipticCurvePublicKey, digest: bytes, alg: hashes.HashAlgorithm, sig: bytes) -> None:
    n = (key.curve.key_size + 7) // 8
    if len(sig) != 2 * n:
        raise DeviceError(ck.CKR_SIGNATURE_LEN_RANGE, f"ECDSA signature must be {2 * n} bytes")
    der = utils.encode_dss_signature(int.from_bytes(sig[:n], "big"), int.from_bytes(sig[n:], "big"))
    key.verify(der, digest, ec.ECDSA(utils.Prehashed(alg)))


def sign_context(mech: int, param: Any, key: Any, key_type: int) -> Any:
    if key_type == ck.CKK_RSA and isinstance(key, rsa.RSAPrivateKey):
        kb = (key.key_size + 7) // 8
        if mech in RSA_PKCS_HASHED:
            return HashThenSign(RSA_PKCS_HASHED[mech],
                                lambda d, a=RSA_PKCS_HASHED[mech]: key.sign(d, padding.PKCS1v15(),
                                                                             utils.Prehashed(a())))
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
    if key_type == ck.CKK_EC and isinstance(key, ec.EllipticCurvePrivateKey):
        if mech == ck.CKM_ECDSA:
            return WholeInput(lambda d: _ecdsa_sign(key, *_ecdsa_digest(key.curve.key_size, d)))
        if mech in ECDSA_HASHED:
            alg = ECDSA_HASHED[mech]
            return HashThenSign(alg, lambda d: _ecdsa_sign(key, *_ecdsa_digest(key.curve.key_size, d)))
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
    if key_type == ck.CKK_RSA and isinstance(key, rsa.RSAPublicKey):
        kb = (key.key_size + 7) // 8

        def length_ok(sig: bytes) -> None:
            if len(sig) != kb:
                raise DeviceError(ck.CKR_SIGNATURE_LEN_RANGE, f"RSA signature must be {kb} bytes")
        if mech in RSA_PKCS_HASHED:
            a = RSA_PKCS_HASHED[mech]
            return HashThenSign(a, _checked_verify(
                lambda d, sig: (length_ok(sig), key.verify(sig, d, padding.PKCS1v15(), utils.Prehashed(a())))))
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
    if key_type == ck.CKK_EC and isinstance(key, ec.EllipticCurvePublicKey):
        ks = key.curve.key_size
        fn = _checked_verify(lambda d, sig: _ecdsa_verify(key, *_ecdsa_digest(ks, d), sig))
        if mech == ck.CKM_ECDSA:
            return WholeInput(fn)
        if mech in ECDSA_HASHED:
            return HashThenSign(ECDSA_HASHED[mech], fn)
    if mech in ASYMMETRIC_SIGN:
        raise key_type_inconsistent(mech)
    raise DeviceError(ck.CKR_MECHANISM_INVALID, f"{ck.name(mech, 'CKM_')} cannot verify")


# ---------------------------------------------------------------- MAC contexts

class Mac:
    __slots__ = ("h", "length")

    def __init__(self, key: bytes, alg: type[hashes.HashAlgorithm], length: int) -> None:
        self.h = _hmac.new(key, digestmod=alg.name.replace("-", "").lower() if alg is not hashes.SHA1 else "sha1")
        self.length = length

    def update(self, data: bytes) -> None:
        self.h.update(data)

    def final(self, data: bytes = b"", sig: bytes | None = None) -> bytes | None:
        if data:
            self.h.update(data)
        mac = self.h.digest()[: self.length]
        if sig is None:
            return mac
        if len(sig) != self.length:
            raise DeviceError(ck.CKR_SIGNATURE_LEN_RANGE, f"MAC must be {self.length} bytes")
        if not _hmac.compare_digest(mac, sig):
            raise DeviceError(ck.CKR_SIGNATURE_INVALID, "MAC does not verify")
        return None


def mac_context(mech: int, param: Any, key: bytes, key_type: int) -> Mac:
    if key_type != ck.CKK_GENERIC_SECRET and mech in MAC_MECHS:
        # Any secret key may be used for HMAC only when it is a generic secret.
        raise key_type_inconsistent(mech)
    if mech in HMACS:
        alg = HMACS[mech]
        return Mac(key, alg, alg.digest_size)
    if mech in HMAC_GENERAL:
        alg = HMAC_GENERAL[mech]
        if not isinstance(param, int) or not 1 <= param <= alg.digest_size:
            raise bad_param("CK_MAC_GENERAL_PARAMS out of range")
        return Mac(key, alg, param)
    raise DeviceError(ck.CKR_MECHANISM_INVALID, f"{ck.name(mech, 'CKM_')} is not a MAC mechanism")


# ---------------------------------------------------------------- cipher contexts

class BlockCipher:
    """ECB/CBC with or without PKCS#7 padding, multi-part."""
    __slots__ = ("ctx", "pad", "unpad", "block", "pending", "decrypt")

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
    __slots__ = ("ctx", "tag_len", "decrypt", "buf", "_key", "_iv", "_aad")

    def __init__(self, key: bytes, param: Any, decrypt: bool) -> None:
        if not isinstance(param, dict):
            raise bad_param("CKM_AES_GCM needs CK_GCM_PARAMS")
        iv, aad, tag_bits = param.get("iv", b""), param.get("aad", b""), param.get("tag_bits", 0)
        if not 1 <= len(iv) <= 256:
            raise bad_param("GCM IV must be 1 to 256 bytes")
        if tag_bits not in (32, 64, 96, 104, 112, 120, 128):
            raise bad_param(f"GCM tag of {tag_bits} bits is not allowed")
        self.tag_len = tag_bits // 8
        self.decrypt = decrypt
        self.buf = bytearray()
        self.ctx = Cipher(algorithms.AES(key), modes.GCM(iv, min_tag_length=4)).encryptor() if not decrypt else None
        if not decrypt:
            if aad:
                self.ctx.authenticate_additional_data(aad)
        else:
            self._key, self._iv, self._aad = key, iv, aad

    def update(self, data: bytes) -> bytes:
        if self.decrypt:  # the tag is the input's tail: release nothing before final
            self.buf += data
            return b""
        return self.ctx.update(data)

    def final(self, data: bytes = b"") -> bytes:
        if not self.decrypt:
            out = self.ctx.update(data) if data else b""
            out += self.ctx.finalize()
            return out + self.ctx.tag[: self.tag_len]
        self.buf += data
        if len(self.buf) < self.tag_len:
            raise DeviceError(ck.CKR_ENCRYPTED_DATA_LEN_RANGE, "input shorter than the GCM tag")
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


def symmetric_context(mech: int, param: Any, key: bytes, key_type: int, decrypt: bool) -> Any:
    if mech in AES_BLOCK_MECHS or mech == ck.CKM_AES_GCM:
        if key_type != ck.CKK_AES:
            raise key_type_inconsistent(mech)
        if mech == ck.CKM_AES_GCM:
            return Gcm(key, param, decrypt)
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
