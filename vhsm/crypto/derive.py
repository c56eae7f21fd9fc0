"""Key derivation mechanisms (C_DeriveKey) as functions of key material and parameters.

Each function returns the derived bytes, at least `length` of them when a length is asked
(None: the mechanism's natural output); the caller cuts the key from the leading bytes.
Parameter problems are CKR_MECHANISM_PARAM_INVALID.
"""
from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fxpkcs11 import ck
from vhsm.crypto import dh as dhkeys
from vhsm.crypto import kdf
from vhsm.crypto import keys as keymat
from vhsm.crypto.mechanisms import TripleDES, bad_param, key_type_inconsistent
from vhsm.excrypt import DeviceError

ECDH_MECHS = {ck.CKM_ECDH1_DERIVE, ck.CKM_ECDH1_COFACTOR_DERIVE}
ENCRYPT_DATA = {ck.CKM_AES_ECB_ENCRYPT_DATA: ("aes", False), ck.CKM_AES_CBC_ENCRYPT_DATA: ("aes", True),
                ck.CKM_DES3_ECB_ENCRYPT_DATA: ("des3", False), ck.CKM_DES3_CBC_ENCRYPT_DATA: ("des3", True)}
CONCATENATE = {ck.CKM_CONCATENATE_BASE_AND_KEY, ck.CKM_CONCATENATE_BASE_AND_DATA,
               ck.CKM_CONCATENATE_DATA_AND_BASE, ck.CKM_XOR_BASE_AND_DATA}


def enough(material: bytes, length: int | None, reason: int, what: str) -> bytes:
    if length is not None and length > len(material):
        raise DeviceError(reason, f"{what} gives {len(material)} bytes; the key needs {length}")
    return material


# ------------------------------------------------------------------ key agreement

def _shared_data(param: dict) -> bytes:
    data = param.get("shared") or b""
    if not isinstance(data, bytes):
        raise bad_param("shared data must be bytes")
    return data


def ecdh(key: Any, param: Any, length: int | None) -> bytes:
    """ECDH1 (and cofactor ECDH: every supported curve has cofactor 1) with CKD_NULL or an
    ANSI X9.63 KDF; the other party's point raw or as a DER OCTET STRING."""
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise key_type_inconsistent(ck.CKM_ECDH1_DERIVE)
    if not isinstance(param, dict):
        raise bad_param("ECDH needs CK_ECDH1_DERIVE_PARAMS")
    kdf_type, shared = param.get("kdf"), _shared_data(param)
    try:
        peer = keymat.ec_public_from_point(key.curve, param.get("public") or b"")
    except ValueError as e:
        raise bad_param(f"the other party's public key: {e}") from None
    z = key.exchange(ec.ECDH(), peer)
    if kdf_type == ck.CKD_NULL:
        if shared:
            raise bad_param("CKD_NULL takes no shared data")
        return enough(z, length, ck.CKR_TEMPLATE_INCONSISTENT, "the ECDH shared secret")
    name = kdf.X963_HASHES.get(kdf_type)
    if name is None:
        raise bad_param(f"KDF {ck.name(kdf_type or 0, 'CKD_')} is not supported")
    if length is None:
        raise DeviceError(ck.CKR_TEMPLATE_INCOMPLETE, "a KDF needs CKA_VALUE_LEN (or a fixed-length key type)")
    return kdf.x963(name, z, shared, length)


def dh(key: Any, param: Any, length: int | None) -> bytes:
    """PKCS #3 Diffie-Hellman: the parameter is the other party's public value."""
    if not isinstance(key, dhkeys.DHPrivateKey):
        raise key_type_inconsistent(ck.CKM_DH_PKCS_DERIVE)
    if not isinstance(param, bytes) or not param:
        raise bad_param("CKM_DH_PKCS_DERIVE needs the other party's public value")
    try:
        z = key.exchange(int.from_bytes(param, "big"))
    except ValueError as e:
        raise bad_param(str(e)) from None
    return enough(z, length, ck.CKR_TEMPLATE_INCONSISTENT, "the DH shared secret")


# ------------------------------------------------------------------ secret-key derivations

def encrypt_data(mech: int, key: bytes, key_type: int, param: Any, length: int | None) -> bytes:
    """AES/DES3 ECB_ENCRYPT_DATA and CBC_ENCRYPT_DATA: the key is the base key's encryption
    of the parameter's data (whole blocks, no padding)."""
    family, cbc = ENCRYPT_DATA[mech]
    if family == "aes":
        if key_type != ck.CKK_AES:
            raise key_type_inconsistent(mech)
        algorithm, block = algorithms.AES(key), 16
    else:
        if key_type not in (ck.CKK_DES3, ck.CKK_DES2):
            raise key_type_inconsistent(mech)
        algorithm, block = TripleDES(key), 8
    if cbc:
        if not isinstance(param, dict) or len(param.get("iv") or b"") != block:
            raise bad_param(f"{ck.name(mech, 'CKM_')} needs a {block}-byte IV and data")
        data, mode = param.get("data") or b"", modes.CBC(param["iv"])
    else:
        if not isinstance(param, bytes):
            raise bad_param(f"{ck.name(mech, 'CKM_')} needs CK_KEY_DERIVATION_STRING_DATA")
        data, mode = param, modes.ECB()
    if not data or len(data) % block:
        raise bad_param(f"{ck.name(mech, 'CKM_')} data must be whole {block}-byte blocks")
    enc = Cipher(algorithm, mode).encryptor()
    out = enc.update(data) + enc.finalize()
    return enough(out, length, ck.CKR_MECHANISM_PARAM_INVALID, "the encrypted data")


def concatenate(mech: int, base: bytes, param: Any, other_key: bytes | None, length: int | None) -> bytes:
    if mech == ck.CKM_CONCATENATE_BASE_AND_KEY:
        if other_key is None:
            raise bad_param("CKM_CONCATENATE_BASE_AND_KEY needs a second key")
        out = base + other_key
        return enough(out, length, ck.CKR_TEMPLATE_INCONSISTENT, "the two keys")
    if not isinstance(param, bytes) or not param:
        raise bad_param(f"{ck.name(mech, 'CKM_')} needs CK_KEY_DERIVATION_STRING_DATA")
    if mech == ck.CKM_CONCATENATE_BASE_AND_DATA:
        out = base + param
    elif mech == ck.CKM_CONCATENATE_DATA_AND_BASE:
        out = param + base
    else:  # XOR_BASE_AND_DATA: as long as the shorter of the two
        out = bytes(a ^ b for a, b in zip(base, param))
    return enough(out, length, ck.CKR_MECHANISM_PARAM_INVALID, "the key and data")


def hkdf(param: Any, ikm: bytes, salt_key: bytes | None, length: int | None) -> bytes:
    """CKM_HKDF_DERIVE: extract and/or expand (RFC 5869) as CK_HKDF_PARAMS says."""
    if not isinstance(param, dict):
        raise bad_param("CKM_HKDF_DERIVE needs CK_HKDF_PARAMS")
    extract, expand = bool(param.get("extract")), bool(param.get("expand"))
    if not (extract or expand):
        raise bad_param("CK_HKDF_PARAMS must extract, expand or both")
    name = kdf.HASH_NAMES.get(param.get("prf"))
    if name is None:
        raise bad_param(f"HKDF hash {ck.name(param.get('prf') or 0, 'CKM_')} is not supported")
    prk = ikm
    if extract:
        salt_type = param.get("salt_type")
        if salt_type == ck.CKF_HKDF_SALT_NULL:
            salt = None
        elif salt_type == ck.CKF_HKDF_SALT_DATA:
            salt = param.get("salt") or b""
            if not salt:
                raise bad_param("CKF_HKDF_SALT_DATA needs salt bytes")
        elif salt_type == ck.CKF_HKDF_SALT_KEY:
            if salt_key is None:
                raise bad_param("CKF_HKDF_SALT_KEY needs a salt key")
            salt = salt_key
        else:
            raise bad_param("ulSaltType must be CKF_HKDF_SALT_NULL, _DATA or _KEY")
        prk = kdf.hkdf_extract(name, salt, ikm)
    if not expand:
        return enough(prk, length, ck.CKR_TEMPLATE_INCONSISTENT, "HKDF extract")
    if length is None:
        raise DeviceError(ck.CKR_TEMPLATE_INCOMPLETE, "HKDF expand needs CKA_VALUE_LEN (or a fixed-length key type)")
    try:
        return kdf.hkdf_expand(name, prk, param.get("info") or b"", length)
    except ValueError as e:
        raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, str(e)) from None
