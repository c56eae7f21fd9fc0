"""Key generation and key material: the device's only place that makes or parses keys.

Key families: RSA, EC (NIST P-192 to P-521 and secp256k1), EC Edwards (Ed25519, Ed448),
DSA and PKCS #3 Diffie-Hellman (vhsm/crypto/dh.py), and the secret key types. Private keys
are stored as PKCS #8.
"""
from __future__ import annotations

import os
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from fxpkcs11 import ck
from vhsm.crypto import der
from vhsm.crypto import dh as dhkeys
from vhsm.excrypt import DeviceError

# DER of the named-curve OIDs as CKA_EC_PARAMS carries them.
CURVES: dict[bytes, ec.EllipticCurve] = {
    bytes.fromhex("06082a8648ce3d030107"): ec.SECP256R1(),
    bytes.fromhex("06052b81040022"): ec.SECP384R1(),
    bytes.fromhex("06052b81040023"): ec.SECP521R1(),
    bytes.fromhex("06052b8104000a"): ec.SECP256K1(),
    # Legacy sizes, kept for applications (and test suites) that still use them.
    bytes.fromhex("06052b81040021"): ec.SECP224R1(),
    bytes.fromhex("06082a8648ce3d030101"): ec.SECP192R1(),
}
# Edwards curves (RFC 8410 OIDs): CKK_EC_EDWARDS keys.
EDWARDS: dict[bytes, str] = {bytes.fromhex("06032b6570"): "ed25519", bytes.fromhex("06032b6571"): "ed448"}
EDWARDS_SIZES = {"ed25519": 32, "ed448": 57}
CURVE_NAMES = {"prime256v1": "06082a8648ce3d030107", "secp256r1": "06082a8648ce3d030107",
               "p-256": "06082a8648ce3d030107", "secp384r1": "06052b81040022", "p-384": "06052b81040022",
               "secp521r1": "06052b81040023", "p-521": "06052b81040023", "secp256k1": "06052b8104000a",
               "secp224r1": "06052b81040021", "p-224": "06052b81040021", "prime192v1": "06082a8648ce3d030101",
               "secp192r1": "06082a8648ce3d030101", "p-192": "06082a8648ce3d030101",
               "edwards25519": "06032b6570", "ed25519": "06032b6570", "edwards448": "06032b6571",
               "ed448": "06032b6571"}

RSA_MIN_BITS, RSA_MAX_BITS = 2048, 8192   # the minimum is the default; the caller passes the device's
DSA_SIZES = {1024: (160,), 2048: (224, 256), 3072: (256,)}
AES_LENGTHS = (16, 24, 32)
# Secret key types of any length from 1 to 512 bytes.
VARIABLE_SECRETS = {ck.CKK_GENERIC_SECRET, ck.CKK_HKDF, ck.CKK_SHA_1_HMAC, ck.CKK_SHA224_HMAC,
                    ck.CKK_SHA256_HMAC, ck.CKK_SHA384_HMAC, ck.CKK_SHA512_HMAC, ck.CKK_SHA3_224_HMAC,
                    ck.CKK_SHA3_256_HMAC, ck.CKK_SHA3_384_HMAC, ck.CKK_SHA3_512_HMAC}
FIXED_SECRETS = {ck.CKK_DES3: 24, ck.CKK_DES2: 16}
MAX_SECRET = 512

PRIVATE_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey,
                 ed448.Ed448PrivateKey, dsa.DSAPrivateKey, dhkeys.DHPrivateKey)


# ------------------------------------------------------------------ curves and points

def curve_oid(params: Any) -> bytes | None:
    """The DER OID a CKA_EC_PARAMS value names: an OID, or a PrintableString curve name."""
    if not isinstance(params, bytes) or len(params) < 2:
        return None
    if params[:1] == b"\x06":
        return params
    if params[:1] == b"\x13" and params[1] == len(params) - 2:
        hexoid = CURVE_NAMES.get(params[2:].decode("ascii", "replace").lower())
        return bytes.fromhex(hexoid) if hexoid else None
    return None


def _no_curve(params: Any, what: str) -> DeviceError:
    return DeviceError(ck.CKR_CURVE_NOT_SUPPORTED if isinstance(params, bytes) else ck.CKR_ATTRIBUTE_VALUE_INVALID,
                       f"CKA_EC_PARAMS names no supported {what}")


def curve_for(params: Any) -> ec.EllipticCurve:
    curve = CURVES.get(curve_oid(params) or b"")
    if curve is None:
        raise _no_curve(params, "curve (P-192, P-224, P-256, P-384, P-521, secp256k1)")
    return curve


def edwards_for(params: Any) -> str:
    name = EDWARDS.get(curve_oid(params) or b"")
    if name is None:
        raise _no_curve(params, "Edwards curve (Ed25519, Ed448)")
    return name


def params_for(curve: ec.EllipticCurve) -> bytes:
    for oid, c in CURVES.items():
        if c.name == curve.name:
            return oid
    raise DeviceError(ck.CKR_CURVE_NOT_SUPPORTED, f"curve {curve.name} is not supported")


def der_octet_string(data: bytes) -> bytes:
    return der.octet_string(data)


def unwrap_octet_string(data: bytes) -> bytes:
    """A DER OCTET STRING's content, or the data itself when it is not one."""
    try:
        tag, body, end = der.read(data)
    except der.DERError:
        return data
    return body if tag == der.OCTET_STRING and end == len(data) else data


def ec_point(curve: ec.EllipticCurve, data: bytes) -> bytes:
    """The encoded point (X9.62) from CKA_EC_POINT or an ECDH public value: a DER OCTET
    STRING or the raw point. Sizes decide, so a raw point is never mistaken for DER."""
    fs = (curve.key_size + 7) // 8
    if len(data) in (1 + fs, 1 + 2 * fs) and data[:1] in (b"\x02", b"\x03", b"\x04"):
        return data
    inner = unwrap_octet_string(data)
    if inner is not data and len(inner) in (1 + fs, 1 + 2 * fs):
        return inner
    raise ValueError(f"not a point of {curve.name} (raw or DER OCTET STRING)")


def edwards_point(name: str, data: bytes) -> bytes:
    size = EDWARDS_SIZES[name]
    if len(data) == size:
        return data
    inner = unwrap_octet_string(data)
    if len(inner) == size and inner is not data:
        return inner
    raise ValueError(f"not an {name} public key (raw or DER OCTET STRING)")


def ec_public_from_point(curve: ec.EllipticCurve, data: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, ec_point(curve, data))


def edwards_public(name: str, raw: bytes) -> Any:
    cls = ed25519.Ed25519PublicKey if name == "ed25519" else ed448.Ed448PublicKey
    return cls.from_public_bytes(edwards_point(name, raw))


def edwards_name(key: Any) -> str:
    return "ed25519" if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)) else "ed448"


def is_edwards(key: Any) -> bool:
    return isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey, ed448.Ed448PrivateKey,
                            ed448.Ed448PublicKey))


# ------------------------------------------------------------------ secret keys

def new_secret(key_type: int, length: int | None) -> bytes:
    if key_type == ck.CKK_AES:
        if length not in AES_LENGTHS:
            raise DeviceError(ck.CKR_KEY_SIZE_RANGE if length else ck.CKR_TEMPLATE_INCOMPLETE,
                              f"AES keys are 16, 24 or 32 bytes (CKA_VALUE_LEN {length})")
        return os.urandom(length)
    if key_type in FIXED_SECRETS:
        return des_parity(os.urandom(FIXED_SECRETS[key_type]))
    if key_type in VARIABLE_SECRETS:
        if not length or length > MAX_SECRET:
            raise DeviceError(ck.CKR_TEMPLATE_INCOMPLETE if not length else ck.CKR_KEY_SIZE_RANGE,
                              f"{ck.name(key_type, 'CKK_')} keys need CKA_VALUE_LEN between 1 and {MAX_SECRET}")
        return os.urandom(length)
    raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, f"cannot generate key type {ck.name(key_type, 'CKK_')}")


def des_parity(key: bytes) -> bytes:
    return bytes(b & 0xFE | (bin(b >> 1).count("1") + 1) % 2 for b in key)


def secret_length_ok(key_type: int, n: int) -> bool:
    if key_type == ck.CKK_AES:
        return n in AES_LENGTHS
    if key_type in FIXED_SECRETS:
        return n == FIXED_SECRETS[key_type]
    return key_type in VARIABLE_SECRETS and 0 < n <= MAX_SECRET


def check_secret_value(key_type: int, value: bytes) -> None:
    if not secret_length_ok(key_type, len(value)):
        raise DeviceError(ck.CKR_ATTRIBUTE_VALUE_INVALID,
                          f"a {ck.name(key_type, 'CKK_')} key cannot be {len(value)} bytes long")


# ------------------------------------------------------------------ key pairs

def new_rsa(bits: int, exponent: int, min_bits: int = RSA_MIN_BITS) -> rsa.RSAPrivateKey:
    """An RSA key of `bits` bits; `min_bits` is the device's minimum (a device setting)."""
    if not min_bits <= bits <= RSA_MAX_BITS:
        raise DeviceError(ck.CKR_KEY_SIZE_RANGE, f"RSA keys are {min_bits} to {RSA_MAX_BITS} bits, not {bits}")
    if exponent < 3 or exponent % 2 == 0:
        raise DeviceError(ck.CKR_ATTRIBUTE_VALUE_INVALID, "CKA_PUBLIC_EXPONENT must be odd and at least 3")
    return rsa.generate_private_key(exponent, bits)


def new_ec_key(key_type: int, params: Any) -> Any:
    """An EC (CKK_EC) or Edwards (CKK_EC_EDWARDS) private key on the curve CKA_EC_PARAMS names."""
    if key_type == ck.CKK_EC_EDWARDS:
        name = edwards_for(params)
        return ed25519.Ed25519PrivateKey.generate() if name == "ed25519" else ed448.Ed448PrivateKey.generate()
    return ec.generate_private_key(curve_for(params))


def check_dsa_sizes(p: int, q: int) -> None:
    if q.bit_length() not in DSA_SIZES.get(p.bit_length(), ()):
        raise DeviceError(ck.CKR_DOMAIN_PARAMS_INVALID,
                          f"DSA domain parameters of {p.bit_length()}/{q.bit_length()} bits are not supported "
                          "(1024/160, 2048/224, 2048/256, 3072/256)")


def new_dsa_parameters(bits: int) -> tuple[int, int, int]:
    if bits not in DSA_SIZES:
        raise DeviceError(ck.CKR_ATTRIBUTE_VALUE_INVALID, f"DSA primes are 1024, 2048 or 3072 bits, not {bits}")
    n = dsa.generate_parameters(bits).parameter_numbers()
    return n.p, n.q, n.g


def new_dsa(p: int, q: int, g: int) -> dsa.DSAPrivateKey:
    check_dsa_sizes(p, q)
    try:
        return dsa.DSAParameterNumbers(p, q, g).parameters().generate_private_key()
    except ValueError as e:
        raise DeviceError(ck.CKR_DOMAIN_PARAMS_INVALID, f"DSA domain parameters are invalid: {e}") from None


def new_dh_parameters(bits: int) -> tuple[int, int]:
    try:
        return dhkeys.new_parameters(bits)
    except ValueError as e:
        raise DeviceError(ck.CKR_ATTRIBUTE_VALUE_INVALID, str(e)) from None


def new_dh(p: int, g: int, value_bits: int | None = None) -> dhkeys.DHPrivateKey:
    try:
        return dhkeys.new_private(p, g, value_bits)
    except ValueError as e:
        raise DeviceError(ck.CKR_DOMAIN_PARAMS_INVALID, f"DH domain parameters: {e}") from None


def key_type_of(key: Any) -> int:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return ck.CKK_RSA
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return ck.CKK_EC
    if is_edwards(key):
        return ck.CKK_EC_EDWARDS
    if isinstance(key, (dsa.DSAPrivateKey, dsa.DSAPublicKey)):
        return ck.CKK_DSA
    if isinstance(key, (dhkeys.DHPrivateKey, dhkeys.DHPublicKey)):
        return ck.CKK_DH
    raise DeviceError(ck.CKR_KEY_TYPE_INCONSISTENT, f"unknown key {type(key).__name__}")


def rsa_public_attrs(key: rsa.RSAPublicKey) -> dict[int, Any]:
    n = key.public_numbers()
    return {ck.CKA_MODULUS: int_bytes(n.n), ck.CKA_PUBLIC_EXPONENT: int_bytes(n.e),
            ck.CKA_MODULUS_BITS: key.key_size}


def ec_public_attrs(key: ec.EllipticCurvePublicKey) -> dict[int, Any]:
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {ck.CKA_EC_PARAMS: params_for(key.curve), ck.CKA_EC_POINT: der_octet_string(point)}


def edwards_public_attrs(key: Any) -> dict[int, Any]:
    name = edwards_name(key)
    oid = next(o for o, n in EDWARDS.items() if n == name)
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {ck.CKA_EC_PARAMS: oid, ck.CKA_EC_POINT: der_octet_string(raw)}


def public_attrs(pub: Any) -> dict[int, Any]:
    """The public attributes both halves of a key pair carry (CKA_EC_POINT only the public
    one keeps). The public value of DSA and DH keys is in public_value_attrs()."""
    if isinstance(pub, rsa.RSAPublicKey):
        return rsa_public_attrs(pub)
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return ec_public_attrs(pub)
    if is_edwards(pub):
        return edwards_public_attrs(pub)
    if isinstance(pub, dsa.DSAPublicKey):
        n = pub.parameters().parameter_numbers()
        return {ck.CKA_PRIME: int_bytes(n.p), ck.CKA_SUBPRIME: int_bytes(n.q), ck.CKA_BASE: int_bytes(n.g)}
    if isinstance(pub, dhkeys.DHPublicKey):
        return {ck.CKA_PRIME: int_bytes(pub.p), ck.CKA_BASE: int_bytes(pub.g)}
    raise DeviceError(ck.CKR_KEY_TYPE_INCONSISTENT, f"unknown public key {type(pub).__name__}")


def public_value_attrs(pub: Any) -> dict[int, Any]:
    """CKA_VALUE of a DSA or DH public key object (y); nothing for the other families."""
    if isinstance(pub, dsa.DSAPublicKey):
        return {ck.CKA_VALUE: int_bytes(pub.public_numbers().y)}
    if isinstance(pub, dhkeys.DHPublicKey):
        return {ck.CKA_VALUE: int_bytes(pub.y)}
    return {}


def canonical_point_attrs(pub: Any) -> dict[int, Any]:
    """CKA_EC_POINT in the form the device answers (DER OCTET STRING) for an imported EC or
    Edwards public key that may have carried a raw point."""
    if isinstance(pub, ec.EllipticCurvePublicKey) or is_edwards(pub):
        return {ck.CKA_EC_POINT: public_attrs(pub)[ck.CKA_EC_POINT]}
    return {}


def public_key_info(key: Any) -> bytes:
    if isinstance(key, dhkeys.DHPublicKey):
        return key.public_der()
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def private_der(key: Any) -> bytes:
    if isinstance(key, dhkeys.DHPrivateKey):
        return key.private_der()
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_private(data: bytes) -> Any:
    """A PKCS #8 private key; zero padding after the DER (block-cipher unwrap) is ignored."""
    try:
        data = der.trim(data)
    except der.DERError as e:
        raise ValueError(f"not DER: {e}") from None
    if dhkeys.is_dh_der(data):
        try:
            return dhkeys.load_private(data)
        except der.DERError as e:
            raise ValueError(f"bad DH private key: {e}") from None
    try:
        key = serialization.load_der_private_key(data, None)
    except UnsupportedAlgorithm as e:
        raise ValueError(str(e)) from None
    if not isinstance(key, PRIVATE_TYPES):
        raise ValueError(f"unsupported private key {type(key).__name__}")
    return key


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
            return ec_public_from_point(curve_for(attrs[ck.CKA_EC_PARAMS]), attrs[ck.CKA_EC_POINT])
        if kt == ck.CKK_EC_EDWARDS:
            return edwards_public(edwards_for(attrs[ck.CKA_EC_PARAMS]), attrs[ck.CKA_EC_POINT])
        if kt == ck.CKK_DSA:
            p, q, g = _int(attrs, ck.CKA_PRIME), _int(attrs, ck.CKA_SUBPRIME), _int(attrs, ck.CKA_BASE)
            check_dsa_sizes(p, q)
            return dsa.DSAPublicNumbers(_int(attrs, ck.CKA_VALUE), dsa.DSAParameterNumbers(p, q, g)).public_key()
        if kt == ck.CKK_DH:
            p, g, y = _int(attrs, ck.CKA_PRIME), _int(attrs, ck.CKA_BASE), _int(attrs, ck.CKA_VALUE)
            dhkeys.check_group(p, g)
            if not 1 < y < p - 1:
                raise ValueError("the DH public value is out of range")
            return dhkeys.DHPublicKey(p, g, y)
    except KeyError as e:
        raise DeviceError(ck.CKR_TEMPLATE_INCOMPLETE,
                          f"public key template lacks {ck.name(e.args[0], 'CKA_')}") from None
    except ValueError as e:
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
        if kt == ck.CKK_EC_EDWARDS:
            name = edwards_for(t[ck.CKA_EC_PARAMS])
            raw = t[ck.CKA_VALUE]
            if len(raw) != EDWARDS_SIZES[name]:
                raise ValueError(f"an {name} private key is {EDWARDS_SIZES[name]} bytes")
            cls = ed25519.Ed25519PrivateKey if name == "ed25519" else ed448.Ed448PrivateKey
            return cls.from_private_bytes(raw)
        if kt == ck.CKK_DSA:
            p, q, g, x = (_int(t, a) for a in (ck.CKA_PRIME, ck.CKA_SUBPRIME, ck.CKA_BASE, ck.CKA_VALUE))
            check_dsa_sizes(p, q)
            params = dsa.DSAParameterNumbers(p, q, g)
            return dsa.DSAPrivateNumbers(x, dsa.DSAPublicNumbers(pow(g, x, p), params)).private_key()
        if kt == ck.CKK_DH:
            p, g, x = (_int(t, a) for a in (ck.CKA_PRIME, ck.CKA_BASE, ck.CKA_VALUE))
            dhkeys.check_group(p, g)
            if not 1 < x < p - 1:
                raise ValueError("the DH private value is out of range")
            return dhkeys.DHPrivateKey(p, g, x)
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
    v: int | None = None
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        v = {ck.CKA_PRIVATE_EXPONENT: n.d, ck.CKA_PRIME_1: n.p, ck.CKA_PRIME_2: n.q, ck.CKA_EXPONENT_1: n.dmp1,
             ck.CKA_EXPONENT_2: n.dmq1, ck.CKA_COEFFICIENT: n.iqmp}.get(attr)
    elif attr == ck.CKA_VALUE:
        if isinstance(key, ec.EllipticCurvePrivateKey):
            v = key.private_numbers().private_value
            return v.to_bytes((key.curve.key_size + 7) // 8, "big")
        if is_edwards(key):
            return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                     serialization.NoEncryption())
        if isinstance(key, dsa.DSAPrivateKey):
            v = key.private_numbers().x
        elif isinstance(key, dhkeys.DHPrivateKey):
            v = key.x
    if v is None:
        raise DeviceError(ck.CKR_ATTRIBUTE_TYPE_INVALID, f"no attribute {ck.name(attr, 'CKA_')}")
    return int_bytes(v)


# Key generation mechanisms for the secret key types beyond AES, DES and generic secrets.
MORE_SECRET_KEYGEN = {ck.CKM_HKDF_KEY_GEN: ck.CKK_HKDF, ck.CKM_SHA_1_KEY_GEN: ck.CKK_SHA_1_HMAC,
                      ck.CKM_SHA224_KEY_GEN: ck.CKK_SHA224_HMAC, ck.CKM_SHA256_KEY_GEN: ck.CKK_SHA256_HMAC,
                      ck.CKM_SHA384_KEY_GEN: ck.CKK_SHA384_HMAC, ck.CKM_SHA512_KEY_GEN: ck.CKK_SHA512_HMAC,
                      ck.CKM_SHA3_224_KEY_GEN: ck.CKK_SHA3_224_HMAC, ck.CKM_SHA3_256_KEY_GEN: ck.CKK_SHA3_256_HMAC,
                      ck.CKM_SHA3_384_KEY_GEN: ck.CKK_SHA3_384_HMAC, ck.CKM_SHA3_512_KEY_GEN: ck.CKK_SHA3_512_HMAC}
