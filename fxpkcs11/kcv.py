"""The KCV shown in key listings (PKCS11Manager, `vhsm keytable list`): 4 hex digits.

- Secret keys: the first 2 bytes of CKA_CHECK_VALUE.
- Public and private keys: the first 2 bytes of SHA-256 over CKA_PUBLIC_KEY_INFO (the DER
  SubjectPublicKeyInfo). When a module does not give CKA_PUBLIC_KEY_INFO, the same DER is
  rebuilt from CKA_MODULUS / CKA_PUBLIC_EXPONENT (RSA) or CKA_EC_PARAMS / CKA_EC_POINT (EC),
  so a key pair's two halves show the same KCV on any module.
- Anything else (data objects, certificates, a secret key without a check value): no KCV.
"""
from __future__ import annotations

import hashlib
from typing import Any

from fxpkcs11 import ck

__all__ = ["kcv", "public_key_info"]


def public_key_info(attrs: dict[int, Any]) -> bytes | None:
    """The DER SubjectPublicKeyInfo of an RSA or EC key from its attributes, if they allow it."""
    spki = attrs.get(ck.CKA_PUBLIC_KEY_INFO)
    if spki:
        return bytes(spki)
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        der = serialization.Encoding.DER
        fmt = serialization.PublicFormat.SubjectPublicKeyInfo
        n, e = attrs.get(ck.CKA_MODULUS), attrs.get(ck.CKA_PUBLIC_EXPONENT)
        if n and e:
            key = rsa.RSAPublicNumbers(int.from_bytes(bytes(e), "big"), int.from_bytes(bytes(n), "big")).public_key()
            return key.public_bytes(der, fmt)
        params, point = attrs.get(ck.CKA_EC_PARAMS), attrs.get(ck.CKA_EC_POINT)
        if params and point:
            curve = _curve(bytes(params))
            raw = _unwrap_octet_string(bytes(point))
            if curve is None or raw is None:
                return None
            return ec.EllipticCurvePublicKey.from_encoded_point(curve, raw).public_bytes(der, fmt)
    except Exception:  # malformed attributes: no KCV rather than a crash in a listing
        return None
    return None


_CURVES = {
    bytes.fromhex("06082a8648ce3d030107"): "SECP256R1",
    bytes.fromhex("06052b81040022"): "SECP384R1",
    bytes.fromhex("06052b81040023"): "SECP521R1",
    bytes.fromhex("06052b8104000a"): "SECP256K1",
}


def _curve(params: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec
    name = _CURVES.get(params)
    return getattr(ec, name)() if name else None


def _unwrap_octet_string(point: bytes) -> bytes | None:
    """CKA_EC_POINT is a DER OCTET STRING around the encoded point (some modules give it bare)."""
    if point[:1] == b"\x04" and len(point) >= 2:
        length, head = point[1], 2
        if length & 0x80:
            count = length & 0x7F
            length, head = int.from_bytes(point[2:2 + count], "big"), 2 + count
        if head + length == len(point):
            return point[head:]
    return point if point[:1] in (b"\x02", b"\x03", b"\x04") else None


def kcv(attrs: dict[int, Any]) -> str:
    """4 upper-case hex digits, or "" when the object has no KCV."""
    cls = attrs.get(ck.CKA_CLASS)
    check = attrs.get(ck.CKA_CHECK_VALUE)
    if cls == ck.CKO_SECRET_KEY or (cls is None and check):
        return bytes(check[:2]).hex().upper() if check else ""
    if cls in (ck.CKO_PUBLIC_KEY, ck.CKO_PRIVATE_KEY) or cls is None:
        spki = public_key_info(attrs)
        return hashlib.sha256(spki).hexdigest()[:4].upper() if spki else ""
    return ""
