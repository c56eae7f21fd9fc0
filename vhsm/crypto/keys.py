"""Key generation and key material: the device's only place that makes or parses keys."""
from __future__ import annotations

import os
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fxpkcs11 import ck
from vhsm.excrypt import DeviceError

# DER of the named-curve OIDs as CKA_EC_PARAMS carries them.
CURVES: dict[bytes, ec.EllipticCurve] = {
    bytes.fromhex("06082a8648ce3d030107"): ec.SECP256R1(),
    bytes.fromhex("06052b81040022"): ec.SECP384R1(),
    bytes.fromhex("06052b81040023"): ec.SECP521R1(),
}
CURVE_NAMES = {"prime256v1": "06082a8648ce3d030107", "secp256r1": "06082a8648ce3d030107",
               "secp384r1": "06052b81040022", "secp521r1": "06052b81040023"}

RSA_MIN_BITS, RSA_MAX_BITS = 2048, 4096
AES_LENGTHS = (16, 24, 32)


def curve_for(params: Any) -> ec.EllipticCurve:
    if isinstance(params, bytes):
        curve = CURVES.get(params)
        if curve is None and params[:1] == b"\x13":  # PrintableString curve name
            hexoid = CURVE_NAMES.get(params[2:].decode("ascii", "replace").lower())
            curve = CURVES.get(bytes.fromhex(hexoid)) if hexoid else None
        if curve is not None:
            return curve
    raise DeviceError(ck.CKR_CURVE_NOT_SUPPORTED if isinstance(params, bytes) else ck.CKR_ATTRIBUTE_VALUE_INVALID,
                      "CKA_EC_PARAMS names no supported curve (P-256, P-384, P-521)")


def params_for(curve: ec.EllipticCurve) -> bytes:
    for der, c in CURVES.items():
        if c.name == curve.name:
            return der
    raise DeviceError(ck.CKR_CURVE_NOT_SUPPORTED, f"curve {curve.name} is not supported")


def der_octet_string(data: bytes) -> bytes:
    n = len(data)
    if n < 0x80:
        return bytes((0x04, n)) + data
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x04, 0x80 | len(size))) + size + data


def unwrap_octet_string(data: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING; raw points are accepted too."""
    if data[:1] == b"\x04" and len(data) > 2:
        n, off = data[1], 2
        if n & 0x80:
            k = n & 0x7F
            n, off = int.from_bytes(data[2:2 + k], "big"), 2 + k
        if off + n == len(data):
            return data[off:]
    return data


def new_secret(key_type: int, length: int | None) -> bytes:
    if key_type == ck.CKK_AES:
        if length not in AES_LENGTHS:
            raise DeviceError(ck.CKR_KEY_SIZE_RANGE if length else ck.CKR_TEMPLATE_INCOMPLETE,
                              f"AES keys are 16, 24 or 32 bytes (CKA_VALUE_LEN {length})")
        return os.urandom(length)
    if key_type == ck.CKK_DES3:
        return des_parity(os.urandom(24))
    if key_type == ck.CKK_DES2:
        return des_parity(os.urandom(16))
    if key_type == ck.CKK_GENERIC_SECRET:
        if not length or length > 512:
            raise DeviceError(ck.CKR_TEMPLATE_INCOMPLETE if not length else ck.CKR_KEY_SIZE_RANGE,
                              "generic secret keys need CKA_VALUE_LEN between 1 and 512")
        return os.urandom(length)
    raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, f"cannot generate key type {ck.name(key_type, 'CKK_')}")


def des_parity(key: bytes) -> bytes:
    return bytes(b & 0xFE | (bin(b >> 1).count("1") + 1) % 2 for b in key)


def check_secret_value(key_type: int, value: bytes) -> None:
    ok = {ck.CKK_AES: len(value) in AES_LENGTHS, ck.CKK_DES3: len(value) == 24, ck.CKK_DES2: len(value) == 16,
          ck.CKK_GENERIC_SECRET: 0 < len(value) <= 512}.get(key_type, False)
    if not ok:
        raise DeviceError(ck.CKR_ATTRIBUTE_VALUE_INVALID,
                          f"a {ck.name(key_type, 'CKK_')} key cannot be {len(value)} bytes long")


def new_rsa(bits: int, exponent: int) -> rsa.RSAPrivateKey:
    if not RSA_MIN_BITS <= bits <= RSA_MAX_BITS:
        raise DeviceError(ck.CKR_KEY_SIZE_RANGE, f"RSA keys are {RSA_MIN_BITS} to {RSA_MAX_BITS} bits, not {bits}")
    if exponent < 3 or exponent % 2 == 0:
        raise DeviceError(ck.CKR_ATTRIBUTE_VALUE_INVALID, "CKA_PUBLIC_EXPONENT must be odd and at least 3")
    return rsa.generate_private_key(exponent, bits)


def rsa_public_attrs(key: rsa.RSAPublicKey) -> dict[int, Any]:
    n = key.public_numbers()
    return {ck.CKA_MODULUS: int_bytes(n.n), ck.CKA_PUBLIC_EXPONENT: int_bytes(n.e),
            ck.CKA_MODULUS_BITS: key.key_size}


def ec_public_attrs(key: ec.EllipticCurvePublicKey) -> dict[int, Any]:
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {ck.CKA_EC_PARAMS: params_for(key.curve), ck.CKA_EC_POINT: der_octet_string(point)}


def public_key_info(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def private_der(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_private(der: bytes) -> Any:
    return serialization.load_der_private_key(der, None)


def int_bytes(v: int) -> bytes:
    return v.to_bytes(max(1, (v.bit_length() + 7) // 8), "big")


def public_from_attrs(attrs: dict[int, Any]) -> Any:
    kt = attrs.get(ck.CKA_KEY_TYPE)
    try:
        if kt == ck.CKK_RSA:
            n = int.from_bytes(attrs[ck.CKA_MODULUS], "big")
            e = int.from_bytes(attrs[ck.CKA_PUBLIC_EXPONENT], "big")
            return rsa.RSAPublicNumbers(e, n).public_key()
        if kt == ck.CKK_EC:
            curve = curve_for(attrs[ck.CKA_EC_PARAMS])
            return ec.EllipticCurvePublicKey.from_encoded_point(curve, unwrap_octet_string(attrs[ck.CKA_EC_POINT]))
    except (KeyError, ValueError) as e:
        raise DeviceError(ck.CKR_ATTRIBUTE_VALUE_INVALID, f"public key attributes are invalid: {e}") from None
    raise DeviceError(ck.CKR_KEY_TYPE_INCONSISTENT, f"no public key of type {ck.name(kt or 0, 'CKK_')}")


def private_from_template(kt: int, t: dict[int, Any]) -> Any:
    """Build a private key from an imported template's components."""
    try:
        if kt == ck.CKK_RSA:
            n = _int(t, ck.CKA_MODULUS)
            e = _int(t, ck.CKA_PUBLIC_EXPONENT)
            d = _int(t, ck.CKA_PRIVATE_EXPONENT)
            if all(a in t for a in (ck.CKA_PRIME_1, ck.CKA_PRIME_2)):
                p, q = _int(t, ck.CKA_PRIME_1), _int(t, ck.CKA_PRIME_2)
            else:
                p, q = rsa.rsa_recover_prime_factors(n, e, d)
            nums = rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                                         rsa.rsa_crt_iqmp(p, q), rsa.RSAPublicNumbers(e, n))
            return nums.private_key()
        if kt == ck.CKK_EC:
            curve = curve_for(t[ck.CKA_EC_PARAMS])
            return ec.derive_private_key(_int(t, ck.CKA_VALUE), curve)
    except KeyError as e:
        raise DeviceError(ck.CKR_TEMPLATE_INCOMPLETE,
                          f"private key template lacks {ck.name(e.args[0], 'CKA_')}") from None
    except ValueError as e:
        raise DeviceError(ck.CKR_ATTRIBUTE_VALUE_INVALID, f"private key components are invalid: {e}") from None
    raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, f"cannot import private key type {ck.name(kt, 'CKK_')}")


def _int(t: dict[int, Any], a: int) -> int:
    return int.from_bytes(t[a], "big")


def private_component(key: Any, attr: int) -> bytes:
    """A private component for an extractable, non-sensitive key's C_GetAttributeValue."""
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        v = {ck.CKA_PRIVATE_EXPONENT: n.d, ck.CKA_PRIME_1: n.p, ck.CKA_PRIME_2: n.q, ck.CKA_EXPONENT_1: n.dmp1,
             ck.CKA_EXPONENT_2: n.dmq1, ck.CKA_COEFFICIENT: n.iqmp}.get(attr)
    elif isinstance(key, ec.EllipticCurvePrivateKey) and attr == ck.CKA_VALUE:
        v = key.private_numbers().private_value
        return v.to_bytes((key.curve.key_size + 7) // 8, "big")
    else:
        v = None
    if v is None:
        raise DeviceError(ck.CKR_ATTRIBUTE_TYPE_INVALID, f"no attribute {ck.name(attr, 'CKA_')}")
    return int_bytes(v)
