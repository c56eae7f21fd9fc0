"""The mechanisms beyond the basics, through python-pkcs11 and raw C calls in this process.

Every result is cross-checked against `cryptography`, hashlib or hmac: RSA OAEP/PSS with
every hash and MGF, EC curves and ECDH with the X9.63 KDFs, EdDSA, DSA, Diffie-Hellman,
AES CTR/CMAC/CBC-MAC, DES2/DES3 MACs, HMAC (SHA-2 and SHA-3), the digests, key derivation
(encryption of data, concatenation, HKDF) and wrapping of secret and private keys.
"""
from __future__ import annotations

import ctypes
import hashlib
import hmac
import os
import warnings

import pkcs11
import pytest
from cryptography.hazmat.primitives import cmac, hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dh as cdh
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives import padding as sympad
from pkcs11 import KDF, MGF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as E

from fxpkcs11 import ck, mechs
from integration_fixtures import (CK_ATTRIBUTE, CK_ULONG, LowLevel, logged_in_session, p11_env,  # noqa: F401
                                  ulong_bytes, use_config)
from support import PIN

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES as _TDES
except ImportError:  # older cryptography
    _TDES = algorithms.TripleDES

CKR_OK = 0
OID = {"p256": "06082a8648ce3d030107", "p384": "06052b81040022", "p521": "06052b81040023",
       "k256": "06052b8104000a", "ed25519": "06032b6570", "ed448": "06032b6571"}
CURVES = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1(), "k256": ec.SECP256K1()}
SHA = {Mechanism.SHA_1: hashes.SHA1, Mechanism.SHA224: hashes.SHA224, Mechanism.SHA256: hashes.SHA256,
       Mechanism.SHA384: hashes.SHA384, Mechanism.SHA512: hashes.SHA512}
MGFS = {MGF.SHA1: hashes.SHA1, MGF.SHA224: hashes.SHA224, MGF.SHA256: hashes.SHA256, MGF.SHA384: hashes.SHA384,
        MGF.SHA512: hashes.SHA512}


def TDES(key: bytes):
    return _TDES(key + key[:8] if len(key) == 16 else key)


# ------------------------------------------------------------------ fixtures and raw helpers


@pytest.fixture(scope="module")
def lib(p11_env):
    return use_config(p11_env.cfg)


@pytest.fixture(scope="module")
def session(lib):
    yield from logged_in_session(lib.get_token(token_label="Futurex"))


@pytest.fixture(scope="module")
def ll(lib):
    return LowLevel()


def uniq(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"


def secret(session, key_type, value: bytes, extra: dict | None = None):
    attrs = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: key_type, Attribute.VALUE: value,
             Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True, Attribute.ENCRYPT: True,
             Attribute.DECRYPT: True, Attribute.SIGN: True, Attribute.VERIFY: True, Attribute.WRAP: True,
             Attribute.UNWRAP: True, Attribute.DERIVE: True, Attribute.LABEL: uniq("more")}
    attrs.update(extra or {})
    return session.create_object(attrs)


def encode(value) -> bytes:
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, int):
        return ulong_bytes(value)
    return bytes(value)


def template_array(template: dict[int, object]):
    arr = (CK_ATTRIBUTE * max(len(template), 1))()
    keep = []
    for i, (t, v) in enumerate(template.items()):
        raw = encode(v)
        buf = ctypes.create_string_buffer(raw, max(len(raw), 1))
        keep.append(buf)
        arr[i] = CK_ATTRIBUTE(t, ctypes.cast(buf, ctypes.c_void_p), len(raw))
    return arr, keep


def raw_derive(ll, h: int, mech: int, param, base: int, template: dict[int, object]) -> tuple[int, int]:
    m = ll.mechanism(mech, param)
    arr, keep = template_array(template)
    out = CK_ULONG()
    rv = ll.dll.C_DeriveKey(CK_ULONG(h), ctypes.byref(m), CK_ULONG(base), arr, CK_ULONG(len(template)),
                            ctypes.byref(out))
    return rv, out.value


def raw_generate(ll, h: int, mech: int, template: dict[int, object]) -> tuple[int, int]:
    m = ll.mechanism(mech)
    arr, keep = template_array(template)
    out = CK_ULONG()
    rv = ll.dll.C_GenerateKey(CK_ULONG(h), ctypes.byref(m), arr, CK_ULONG(len(template)), ctypes.byref(out))
    return rv, out.value


def raw_unwrap(ll, h: int, mech: int, param, kek: int, blob: bytes, template: dict[int, object]) -> tuple[int, int]:
    """C_UnwrapKey with exactly this template (python-pkcs11 adds every capability attribute,
    which a private key template may not carry)."""
    m = ll.mechanism(mech, param)
    arr, keep = template_array(template)
    out = CK_ULONG()
    rv = ll.dll.C_UnwrapKey(CK_ULONG(h), ctypes.byref(m), CK_ULONG(kek), ctypes.c_char_p(blob), CK_ULONG(len(blob)),
                            arr, CK_ULONG(len(template)), ctypes.byref(out))
    return rv, out.value


def raw_digest(ll, h: int, mech: int, data: bytes) -> bytes:
    m = ll.mechanism(mech)
    assert ll.dll.C_DigestInit(CK_ULONG(h), ctypes.byref(m)) == CKR_OK
    rv, _, out = ll.output_call("C_Digest", h, data, 64)
    assert rv == CKR_OK
    return out


def raw_sign(ll, h: int, mech: int, key: int, data: bytes, param=None) -> bytes:
    assert ll.init("Sign", h, mech, key, param) == CKR_OK
    rv, _, sig = ll.output_call("C_Sign", h, data, 1024)
    assert rv == CKR_OK
    return sig


def value_of(ll, h: int, obj: int, attr: int = ck.CKA_VALUE) -> bytes:
    rv, raw = ll.get_attribute(h, obj, attr)
    assert rv == CKR_OK, hex(rv)
    return raw


def derived_template(key_type: int, length: int | None, extra: dict | None = None) -> dict[int, object]:
    t = {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: key_type, ck.CKA_SENSITIVE: False,
         ck.CKA_EXTRACTABLE: True, ck.CKA_ENCRYPT: True, ck.CKA_DECRYPT: True}
    if length is not None:
        t[ck.CKA_VALUE_LEN] = length
    t.update(extra or {})
    return t


class CK_ECDH1_DERIVE_PARAMS(ctypes.Structure):
    _fields_ = [("kdf", CK_ULONG), ("ulSharedDataLen", CK_ULONG), ("pSharedData", ctypes.c_void_p),
                ("ulPublicDataLen", CK_ULONG), ("pPublicData", ctypes.c_void_p)]


def ecdh_params(kdf: int, shared: bytes, public: bytes) -> CK_ECDH1_DERIVE_PARAMS:
    return CK_ECDH1_DERIVE_PARAMS(kdf, len(shared), cbuf(shared) if shared else None, len(public), cbuf(public))


class CK_AES_CTR_PARAMS(ctypes.Structure):
    _fields_ = [("ulCounterBits", CK_ULONG), ("cb", ctypes.c_ubyte * 16)]


class CK_EDDSA_PARAMS(ctypes.Structure):
    _fields_ = [("phFlag", ctypes.c_ubyte), ("ulContextDataLen", CK_ULONG), ("pContextData", ctypes.c_void_p)]


class CK_HKDF_PARAMS(ctypes.Structure):
    _fields_ = [("bExtract", ctypes.c_ubyte), ("bExpand", ctypes.c_ubyte), ("prfHashMechanism", CK_ULONG),
                ("ulSaltType", CK_ULONG), ("pSalt", ctypes.c_void_p), ("ulSaltLen", CK_ULONG),
                ("hSaltKey", CK_ULONG), ("pInfo", ctypes.c_void_p), ("ulInfoLen", CK_ULONG)]


class CK_STRING_DATA(ctypes.Structure):
    _fields_ = [("pData", ctypes.c_void_p), ("ulLen", CK_ULONG)]


class CK_DES_CBC_ENCRYPT_DATA_PARAMS(ctypes.Structure):
    _fields_ = [("iv", ctypes.c_ubyte * 8), ("pData", ctypes.c_void_p), ("length", CK_ULONG)]


KEEP: list = []  # buffers raw parameters point into


def cbuf(data: bytes):
    buf = ctypes.create_string_buffer(data, max(len(data), 1))
    KEEP.append(buf)
    return ctypes.cast(buf, ctypes.c_void_p)


def string_data(data: bytes) -> CK_STRING_DATA:
    return CK_STRING_DATA(cbuf(data), len(data))


def hkdf_params(prf: int, *, extract=True, expand=True, salt_type=ck.CKF_HKDF_SALT_NULL, salt=b"", salt_key=0,
                info=b"") -> CK_HKDF_PARAMS:
    return CK_HKDF_PARAMS(int(extract), int(expand), prf, salt_type, cbuf(salt) if salt else None, len(salt),
                          salt_key, cbuf(info) if info else None, len(info))


# ------------------------------------------------------------------ registry and command table


def test_every_mechanism_operation_has_a_catalog_command():
    from vhsm.commands.catalog import BY_CODE
    fn_for = {"encrypt": "C_EncryptInit", "decrypt": "C_DecryptInit", "sign": "C_SignInit",
              "verify": "C_VerifyInit", "wrap": "C_WrapKey", "unwrap": "C_UnwrapKey", "derive": "C_DeriveKey",
              "generate": "C_GenerateKey", "generate_pair": "C_GenerateKeyPair",
              "sign_recover": "C_SignRecoverInit", "verify_recover": "C_VerifyRecoverInit"}
    for m in mechs.REGISTRY.values():
        for op, code in m.commands.items():
            assert code in BY_CODE, (hex(m.code), code)
            assert fn_for[op] in BY_CODE[code].pkcs11, (hex(m.code), op, code)
        if m.flags & ck.CKF_DIGEST:
            assert m.code in mechs.DIGESTS and not m.commands
    assert {"GPKX", "GDSA", "GDHK", "GPDP", "LDSA", "LDHK"} <= mechs.commands() | {"LDSA", "LDHK"}


def test_mechanism_info_of_new_families(lib):
    slot = lib.get_token(token_label="Futurex").slot
    for code, size, flag in [(Mechanism.RSA_PKCS_KEY_PAIR_GEN, (1024, 8192), pkcs11.MechanismFlag.GENERATE_KEY_PAIR),
                             (Mechanism.EDDSA, (255, 448), pkcs11.MechanismFlag.SIGN),
                             (Mechanism.ECDH1_DERIVE, (192, 521), pkcs11.MechanismFlag.DERIVE),
                             (Mechanism.AES_CMAC, (16, 32), pkcs11.MechanismFlag.SIGN),
                             (Mechanism.DES3_CMAC, (16, 24), pkcs11.MechanismFlag.VERIFY),
                             (Mechanism.DSA_SHA256, (1024, 3072), pkcs11.MechanismFlag.SIGN),
                             (Mechanism.DH_PKCS_DERIVE, (1024, 8192), pkcs11.MechanismFlag.DERIVE),
                             (Mechanism.AES_CTR, (16, 32), pkcs11.MechanismFlag.ENCRYPT),
                             (Mechanism.SHA3_256, (0, 0), pkcs11.MechanismFlag.DIGEST)]:
        info = slot.get_mechanism_info(code)
        assert (info.min_key_length, info.max_key_length) == size, code
        assert info.flags & flag, code
    assert ck.CKM_HKDF_DERIVE in mechs.MECHANISM_LIST and ck.CKM_MD5 in mechs.MECHANISM_LIST


# ------------------------------------------------------------------ RSA


@pytest.fixture(scope="module")
def rsa_pair(session):
    return session.generate_keypair(KeyType.RSA, 2048, label=uniq("rsa-more"))


@pytest.fixture(scope="module")
def rsa1024(session):
    """A 1024-bit pair imported from cryptography (generation needs the device minimum lowered)."""
    key = rsa.generate_private_key(65537, 1024)
    n = key.private_numbers()
    b = lambda v: v.to_bytes((v.bit_length() + 7) // 8, "big")  # noqa: E731
    priv = session.create_object({
        Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.RSA, Attribute.LABEL: uniq("rsa1024"),
        Attribute.MODULUS: b(n.public_numbers.n), Attribute.PUBLIC_EXPONENT: b(n.public_numbers.e),
        Attribute.PRIVATE_EXPONENT: b(n.d), Attribute.PRIME_1: b(n.p), Attribute.PRIME_2: b(n.q),
        Attribute.SIGN: True, Attribute.DECRYPT: True})
    pub = session.create_object({
        Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA, Attribute.LABEL: uniq("rsa1024"),
        Attribute.MODULUS: b(n.public_numbers.n), Attribute.PUBLIC_EXPONENT: b(n.public_numbers.e),
        Attribute.VERIFY: True, Attribute.ENCRYPT: True})
    return key, pub, priv


def rsa_public(pub) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big"),
                                int.from_bytes(pub[Attribute.MODULUS], "big")).public_key()


@pytest.mark.parametrize("hash_mech", list(SHA))
@pytest.mark.parametrize("mgf", list(MGFS))
def test_rsa_oaep_every_hash_and_mgf_with_label(rsa_pair, hash_mech, mgf):
    pub, priv = rsa_pair
    label = b"label:" + os.urandom(5)
    pad = padding.OAEP(padding.MGF1(MGFS[mgf]()), SHA[hash_mech](), label)
    ct = pub.encrypt(b"oaep data", mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=(hash_mech, mgf, label))
    # decrypt what the device made, and the device decrypts what the library made
    assert priv.decrypt(ct, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=(hash_mech, mgf, label)) == b"oaep data"
    theirs = rsa_public(pub).encrypt(b"from outside", pad)
    assert priv.decrypt(theirs, mechanism=Mechanism.RSA_PKCS_OAEP,
                        mechanism_param=(hash_mech, mgf, label)) == b"from outside"
    with pytest.raises(E.PKCS11Error):  # a different label does not decrypt
        priv.decrypt(theirs, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=(hash_mech, mgf, b"other"))


@pytest.mark.parametrize("hash_mech", list(SHA))
@pytest.mark.parametrize("mgf", [MGF.SHA1, MGF.SHA224, MGF.SHA512])
def test_rsa_pss_raw_every_hash_and_mgf(rsa_pair, hash_mech, mgf):
    pub, priv = rsa_pair
    alg = SHA[hash_mech]
    digest = hashlib.new(alg.name, b"pss message").digest()
    sig = priv.sign(digest, mechanism=Mechanism.RSA_PKCS_PSS, mechanism_param=(hash_mech, mgf, alg.digest_size))
    rsa_public(pub).verify(sig, b"pss message", padding.PSS(padding.MGF1(MGFS[mgf]()), alg.digest_size), alg())
    assert pub.verify(digest, sig, mechanism=Mechanism.RSA_PKCS_PSS,
                      mechanism_param=(hash_mech, mgf, alg.digest_size))


@pytest.mark.parametrize("mech,hash_mech,mgf", [
    (Mechanism.SHA224_RSA_PKCS_PSS, Mechanism.SHA224, MGF.SHA224),
    (Mechanism.SHA224_RSA_PKCS_PSS, Mechanism.SHA224, MGF.SHA512),
    (Mechanism.SHA256_RSA_PKCS_PSS, Mechanism.SHA256, MGF.SHA1),
    (Mechanism.SHA512_RSA_PKCS_PSS, Mechanism.SHA512, MGF.SHA256),
])
def test_rsa_hashed_pss_mixed_mgf(rsa_pair, mech, hash_mech, mgf):
    pub, priv = rsa_pair
    alg = SHA[hash_mech]
    sig = priv.sign(b"mixed", mechanism=mech, mechanism_param=(hash_mech, mgf, 17))
    rsa_public(pub).verify(sig, b"mixed", padding.PSS(padding.MGF1(MGFS[mgf]()), 17), alg())
    assert pub.verify(b"mixed", sig, mechanism=mech, mechanism_param=(hash_mech, mgf, 17))
    with pytest.raises(E.MechanismParamInvalid):  # the parameter's hash must be the mechanism's
        priv.sign(b"mixed", mechanism=mech, mechanism_param=(Mechanism.SHA384, mgf, 17))


def test_rsa_sha224_pkcs(rsa_pair):
    pub, priv = rsa_pair
    sig = priv.sign(b"sha224", mechanism=Mechanism.SHA224_RSA_PKCS)
    rsa_public(pub).verify(sig, b"sha224", padding.PKCS1v15(), hashes.SHA224())


def test_rsa_1024_keys_work(rsa1024):
    key, pub, priv = rsa1024
    assert pub[Attribute.MODULUS_BITS] == 1024
    sig = priv.sign(b"small", mechanism=Mechanism.SHA256_RSA_PKCS)
    key.public_key().verify(sig, b"small", padding.PKCS1v15(), hashes.SHA256())
    ct = pub.encrypt(b"x" * 20, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=(Mechanism.SHA256, MGF.SHA1, None))
    assert key.decrypt(ct, padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA256(), None)) == b"x" * 20
    raw = priv.sign(bytes(127) + b"\x05", mechanism=Mechanism.RSA_X_509)
    assert pow(int.from_bytes(raw, "big"), 65537, key.public_key().public_numbers().n) == 5


def test_rsa_key_generation_limits():
    from vhsm.crypto import keys as keymat
    from vhsm.excrypt import DeviceError
    assert keymat.new_rsa(1024, 65537, min_bits=1024).key_size == 1024
    for bits, kw in [(1024, {}), (8200, {}), (1536, {"min_bits": 2048})]:
        with pytest.raises(DeviceError) as e:
            keymat.new_rsa(bits, 65537, **kw)
        assert e.value.reason == ck.CKR_KEY_SIZE_RANGE


# ------------------------------------------------------------------ EC: curves, ECDSA, ECDH


def ec_pair(session, params: bytes, **extra):
    return session.generate_keypair(KeyType.EC, public_template={Attribute.EC_PARAMS: params},
                                    private_template={Attribute.DERIVE: True, **extra}, label=uniq("ec-more"))


def ec_public(pub, curve) -> ec.EllipticCurvePublicKey:
    point = pub[Attribute.EC_POINT]
    assert point[0] == 0x04 and point[1] in (len(point) - 2, 0x81)  # a DER OCTET STRING
    raw = point[2:] if point[1] != 0x81 else point[3:]
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, raw)


@pytest.mark.parametrize("name", list(CURVES))
def test_ec_curves_sign_and_verify(session, name):
    pub, priv = ec_pair(session, bytes.fromhex(OID[name]))
    curve = CURVES[name]
    assert pub[Attribute.EC_PARAMS] == bytes.fromhex(OID[name])
    sig = priv.sign(b"curve data", mechanism=Mechanism.ECDSA_SHA256)
    n = (curve.key_size + 7) // 8
    der = utils.encode_dss_signature(int.from_bytes(sig[:n], "big"), int.from_bytes(sig[n:], "big"))
    ec_public(pub, curve).verify(der, b"curve data", ec.ECDSA(hashes.SHA256()))
    raw = priv.sign(hashlib.sha384(b"x").digest(), mechanism=Mechanism.ECDSA)
    assert pub.verify(hashlib.sha384(b"x").digest(), raw, mechanism=Mechanism.ECDSA)


def test_ec_params_as_curve_name(session):
    name = b"secp256k1"
    pub, priv = ec_pair(session, b"\x13" + bytes([len(name)]) + name)
    assert pub[Attribute.EC_PARAMS] == bytes.fromhex(OID["k256"])
    sig = priv.sign(b"k1", mechanism=Mechanism.ECDSA_SHA1)
    assert pub.verify(b"k1", sig, mechanism=Mechanism.ECDSA_SHA1)


def test_ec_public_import_accepts_raw_point(session):
    key = ec.generate_private_key(ec.SECP384R1())
    raw = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    pub = session.create_object({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.EC,
                                 Attribute.EC_PARAMS: bytes.fromhex(OID["p384"]), Attribute.EC_POINT: raw,
                                 Attribute.VERIFY: True})
    assert pub[Attribute.EC_POINT] == b"\x04" + bytes([len(raw)]) + raw
    r, s = utils.decode_dss_signature(key.sign(b"imported", ec.ECDSA(hashes.SHA384())))
    assert pub.verify(b"imported", r.to_bytes(48, "big") + s.to_bytes(48, "big"), mechanism=Mechanism.ECDSA_SHA384)


@pytest.mark.parametrize("name", ["p256", "p521", "k256"])
@pytest.mark.parametrize("der_point", [False, True])
def test_ecdh_null_kdf(session, name, der_point):
    curve = CURVES[name]
    pub, priv = ec_pair(session, bytes.fromhex(OID[name]))
    other = ec.generate_private_key(curve)
    point = other.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    if der_point:
        point = (b"\x04" + bytes([len(point)]) if len(point) < 128 else b"\x04\x81" + bytes([len(point)])) + point
    z = other.exchange(ec.ECDH(), ec_public(pub, curve))
    key = priv.derive_key(KeyType.GENERIC_SECRET, 8 * len(z), mechanism_param=(KDF.NULL, None, point),
                          template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    assert key[Attribute.VALUE] == z
    assert key[Attribute.CLASS] == ObjectClass.SECRET_KEY and key[Attribute.VALUE_LEN] == len(z)
    short = priv.derive_key(KeyType.AES, 128, mechanism=Mechanism.ECDH1_COFACTOR_DERIVE,
                            mechanism_param=(KDF.NULL, None, point),
                            template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    assert short[Attribute.VALUE] == z[:16]


@pytest.mark.parametrize("kdf,alg", [(KDF.SHA1, hashes.SHA1), (KDF.SHA224, hashes.SHA224), (KDF.SHA256, hashes.SHA256),
                                     (KDF.SHA384, hashes.SHA384), (KDF.SHA512, hashes.SHA512)])
def test_ecdh_x963_kdf(session, kdf, alg):
    pub, priv = ec_pair(session, bytes.fromhex(OID["p256"]))
    other = ec.generate_private_key(ec.SECP256R1())
    point = other.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    shared = b"shared info"
    z = other.exchange(ec.ECDH(), ec_public(pub, ec.SECP256R1()))
    key = priv.derive_key(KeyType.AES, 256, mechanism_param=(kdf, shared, point),
                          template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    assert key[Attribute.VALUE] == X963KDF(alg(), 32, shared).derive(z)
    des = priv.derive_key(KeyType.DES3, 192, mechanism_param=(kdf, None, point),
                          template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    want = X963KDF(alg(), 24, None).derive(z)
    assert bytes(b & 0xFE for b in des[Attribute.VALUE]) == bytes(b & 0xFE for b in want)  # parity set


def test_ecdh_attributes_and_rules(session, ll):
    pub, priv = ec_pair(session, bytes.fromhex(OID["p256"]))
    other = ec.generate_private_key(ec.SECP256R1())
    point = other.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    key = priv.derive_key(KeyType.AES, 128, mechanism_param=(KDF.NULL, None, point),
                          template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False})
    assert key[Attribute.LOCAL] is False
    assert key[Attribute.ALWAYS_SENSITIVE] is True and key[Attribute.NEVER_EXTRACTABLE] is True
    assert value_of(ll, session.handle, key.handle, ck.CKA_KEY_GEN_MECHANISM) == ulong_bytes(
        ck.CK_UNAVAILABLE_INFORMATION)
    open_key = priv.derive_key(KeyType.AES, 128, mechanism_param=(KDF.NULL, None, point),
                               template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    assert open_key[Attribute.ALWAYS_SENSITIVE] is False and open_key[Attribute.NEVER_EXTRACTABLE] is False
    # a base key without CKA_DERIVE
    _, no_derive = session.generate_keypair(KeyType.EC, public_template={Attribute.EC_PARAMS: bytes.fromhex(OID["p256"])},
                                            private_template={Attribute.DERIVE: False})
    rv, _ = raw_derive(ll, session.handle, ck.CKM_ECDH1_DERIVE, ecdh_params(ck.CKD_NULL, b"", point), no_derive.handle,
                       derived_template(ck.CKK_AES, 16))
    assert rv == ck.CKR_KEY_FUNCTION_NOT_PERMITTED
    # a point of another curve, shared data with CKD_NULL, an unknown KDF
    bad = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    for param in [(KDF.NULL, None, bad), (KDF.NULL, b"x", point), (KDF.SHA1_ASN1, None, point)]:
        with pytest.raises(E.MechanismParamInvalid):
            priv.derive_key(KeyType.AES, 128, mechanism_param=param)
    with pytest.raises(E.TemplateInconsistent):  # more than the shared secret holds
        priv.derive_key(KeyType.GENERIC_SECRET, 8 * 40, mechanism_param=(KDF.NULL, None, point))
    rv, _ = raw_derive(ll, session.handle, ck.CKM_ECDH1_DERIVE, None, priv.handle, derived_template(ck.CKK_AES, 16))
    assert rv == ck.CKR_MECHANISM_PARAM_INVALID
    rv, _ = raw_derive(ll, session.handle, ck.CKM_ECDH1_DERIVE, None, 0, derived_template(ck.CKK_AES, 16))
    assert rv in (ck.CKR_KEY_HANDLE_INVALID, ck.CKR_MECHANISM_PARAM_INVALID)


# ------------------------------------------------------------------ EdDSA


def edwards_pair(session, params: bytes):
    return session.generate_keypair(KeyType.EC_EDWARDS, public_template={Attribute.EC_PARAMS: params},
                                    label=uniq("ed"))


@pytest.mark.parametrize("name,params", [
    ("ed25519", bytes.fromhex(OID["ed25519"])), ("ed448", bytes.fromhex(OID["ed448"])),
    ("ed25519", b"\x13\x0cedwards25519"), ("ed448", b"\x13\x0aedwards448"),
])
def test_eddsa_sign_verify(session, name, params):
    pub, priv = edwards_pair(session, params)
    size = 32 if name == "ed25519" else 57
    point = pub[Attribute.EC_POINT]
    assert point[:2] == bytes([4, size]) and len(point) == size + 2
    assert pub[Attribute.EC_PARAMS] == bytes.fromhex(OID[name])
    assert pub[Attribute.KEY_TYPE] == KeyType.EC_EDWARDS
    cls = ed25519.Ed25519PublicKey if name == "ed25519" else ed448.Ed448PublicKey
    theirs = cls.from_public_bytes(point[2:])
    sig = priv.sign(b"edwards", mechanism=Mechanism.EDDSA)
    theirs.verify(sig, b"edwards")
    assert pub.verify(b"edwards", sig, mechanism=Mechanism.EDDSA)
    assert not pub.verify(b"edwardz", sig, mechanism=Mechanism.EDDSA)
    sig2 = priv.sign(b"pure", mechanism=Mechanism.EDDSA, mechanism_param=(False, None))
    theirs.verify(sig2, b"pure")
    for param in [(True, None), (False, b"context")]:
        with pytest.raises(E.MechanismParamInvalid):
            priv.sign(b"x", mechanism=Mechanism.EDDSA, mechanism_param=param)


def test_eddsa_imported_keys(session, ll):
    key = ed25519.Ed25519PrivateKey.generate()
    raw_priv = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
    raw_pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    priv = session.create_object({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.EC_EDWARDS,
                                  Attribute.EC_PARAMS: bytes.fromhex(OID["ed25519"]), Attribute.VALUE: raw_priv,
                                  Attribute.SIGN: True, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    pub = session.create_object({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.EC_EDWARDS,
                                 Attribute.EC_PARAMS: bytes.fromhex(OID["ed25519"]), Attribute.EC_POINT: raw_pub,
                                 Attribute.VERIFY: True})
    assert pub[Attribute.EC_POINT] == b"\x04\x20" + raw_pub
    assert priv[Attribute.VALUE] == raw_priv
    sig = priv.sign(b"imported", mechanism=Mechanism.EDDSA)
    assert sig == key.sign(b"imported")  # Ed25519 is deterministic
    assert pub.verify(b"imported", sig, mechanism=Mechanism.EDDSA)
    eddsa = CK_EDDSA_PARAMS(0, 0, None)
    assert raw_sign(ll, session.handle, ck.CKM_EDDSA, priv.handle, b"raw", eddsa) == key.sign(b"raw")


# ------------------------------------------------------------------ DSA


@pytest.fixture(scope="module")
def dsa_params(session, ll):
    rv, h = raw_generate(ll, session.handle, ck.CKM_DSA_PARAMETER_GEN,
                         {ck.CKA_CLASS: ck.CKO_DOMAIN_PARAMETERS, ck.CKA_KEY_TYPE: ck.CKK_DSA,
                          ck.CKA_PRIME_BITS: 1024})
    assert rv == CKR_OK
    return h


def test_dsa_parameter_generation(session, ll, dsa_params):
    p = int.from_bytes(value_of(ll, session.handle, dsa_params, ck.CKA_PRIME), "big")
    q = int.from_bytes(value_of(ll, session.handle, dsa_params, ck.CKA_SUBPRIME), "big")
    g = int.from_bytes(value_of(ll, session.handle, dsa_params, ck.CKA_BASE), "big")
    assert p.bit_length() == 1024 and q.bit_length() == 160 and (p - 1) % q == 0 and pow(g, q, p) == 1
    assert value_of(ll, session.handle, dsa_params, ck.CKA_PRIME_BITS) == ulong_bytes(1024)
    assert value_of(ll, session.handle, dsa_params, ck.CKA_LOCAL) == b"\x01"


@pytest.mark.parametrize("mech,alg", [(Mechanism.DSA_SHA1, hashes.SHA1), (Mechanism.DSA_SHA224, hashes.SHA224),
                                      (Mechanism.DSA_SHA256, hashes.SHA256), (Mechanism.DSA_SHA512, hashes.SHA512)])
def test_dsa_sign_verify(session, mech, alg):
    params = dsa.generate_parameters(2048).parameter_numbers()
    b = lambda v: v.to_bytes((v.bit_length() + 7) // 8, "big")  # noqa: E731
    dom = session.create_domain_parameters(KeyType.DSA, {Attribute.PRIME: b(params.p), Attribute.SUBPRIME: b(params.q),
                                                         Attribute.BASE: b(params.g)}, local=True)
    pub, priv = dom.generate_keypair(label=uniq("dsa"))
    y = int.from_bytes(pub[Attribute.VALUE], "big")
    theirs = dsa.DSAPublicNumbers(y, params).public_key()
    sig = priv.sign(b"dsa data", mechanism=mech)
    n = len(sig) // 2
    theirs.verify(utils.encode_dss_signature(int.from_bytes(sig[:n], "big"), int.from_bytes(sig[n:], "big")),
                  b"dsa data", alg())
    assert pub.verify(b"dsa data", sig, mechanism=mech)
    digest = hashlib.sha256(b"raw").digest()
    raw = priv.sign(digest, mechanism=Mechanism.DSA)
    theirs.verify(utils.encode_dss_signature(int.from_bytes(raw[:n], "big"), int.from_bytes(raw[n:], "big")),
                  digest, utils.Prehashed(hashes.SHA256()))


def test_dsa_from_generated_parameters_and_import(session, ll, dsa_params):
    m = ll.mechanism(ck.CKM_DSA_KEY_PAIR_GEN)
    tmpl = {ck.CKA_CLASS: ck.CKO_PUBLIC_KEY, ck.CKA_KEY_TYPE: ck.CKK_DSA, ck.CKA_VERIFY: True}
    for a in (ck.CKA_PRIME, ck.CKA_SUBPRIME, ck.CKA_BASE):
        tmpl[a] = value_of(ll, session.handle, dsa_params, a)
    pub_arr, k1 = template_array(tmpl)
    priv_arr, k2 = template_array({ck.CKA_CLASS: ck.CKO_PRIVATE_KEY, ck.CKA_SIGN: True})
    hp, hv = CK_ULONG(), CK_ULONG()
    assert ll.dll.C_GenerateKeyPair(CK_ULONG(session.handle), ctypes.byref(m), pub_arr, CK_ULONG(len(tmpl)),
                                    priv_arr, CK_ULONG(2), ctypes.byref(hp), ctypes.byref(hv)) == CKR_OK
    sig = raw_sign(ll, session.handle, ck.CKM_DSA_SHA1, hv.value, b"from params")
    assert len(sig) == 40
    rv, _ = ll.get_attribute(session.handle, hv.value, ck.CKA_VALUE)
    assert rv == ck.CKR_ATTRIBUTE_SENSITIVE
    # a DSA public key from outside verifies its signatures
    key = dsa.generate_private_key(1024)
    n = key.public_key().public_numbers()
    b = lambda v: v.to_bytes((v.bit_length() + 7) // 8, "big")  # noqa: E731
    pub = session.create_object({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.DSA,
                                 Attribute.PRIME: b(n.parameter_numbers.p), Attribute.SUBPRIME: b(n.parameter_numbers.q),
                                 Attribute.BASE: b(n.parameter_numbers.g), Attribute.VALUE: b(n.y),
                                 Attribute.VERIFY: True})
    r, s = utils.decode_dss_signature(key.sign(b"outside", hashes.SHA256()))
    assert pub.verify(b"outside", r.to_bytes(20, "big") + s.to_bytes(20, "big"), mechanism=Mechanism.DSA_SHA256)
    assert not pub.verify(b"outsidE", r.to_bytes(20, "big") + s.to_bytes(20, "big"), mechanism=Mechanism.DSA_SHA256)


# ------------------------------------------------------------------ Diffie-Hellman

# RFC 3526 group 14 (2048-bit MODP)
MODP2048 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)


def test_dh_derive_matches_the_arithmetic(session):
    p, g = MODP2048, 2
    dom = session.create_domain_parameters(KeyType.DH, {Attribute.PRIME: p.to_bytes(256, "big"),
                                                        Attribute.BASE: b"\x02"}, local=True)
    pub, priv = dom.generate_keypair(label=uniq("dh"))
    y = int.from_bytes(pub[Attribute.VALUE], "big")
    assert 1 < y < p - 1
    x_other = int.from_bytes(os.urandom(32), "big") | 1
    y_other = pow(g, x_other, p)
    z = pow(y, x_other, p).to_bytes(256, "big")
    key = priv.derive_key(KeyType.GENERIC_SECRET, 8 * 256, mechanism_param=y_other.to_bytes(256, "big"),
                          template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    assert key[Attribute.VALUE] == z
    aes = priv.derive_key(KeyType.AES, 256, mechanism_param=y_other.to_bytes(256, "big"),
                          template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    assert aes[Attribute.VALUE] == z[:32]
    with pytest.raises(E.MechanismParamInvalid):
        priv.derive_key(KeyType.AES, 128, mechanism_param=b"\x01")
    # cryptography's view of the same exchange (FFDH is deprecated there, not wrong)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params = cdh.DHParameterNumbers(p, g)
        ours = cdh.DHPrivateNumbers(x_other, cdh.DHPublicNumbers(y_other, params)).private_key()
        theirs = ours.exchange(cdh.DHPublicNumbers(y, params).public_key())
    assert int.from_bytes(theirs, "big") == int.from_bytes(z, "big")


def test_dh_parameter_generation(session, ll):
    rv, h = raw_generate(ll, session.handle, ck.CKM_DH_PKCS_PARAMETER_GEN,
                         {ck.CKA_CLASS: ck.CKO_DOMAIN_PARAMETERS, ck.CKA_PRIME_BITS: 1024})
    assert rv == CKR_OK
    p = int.from_bytes(value_of(ll, session.handle, h, ck.CKA_PRIME), "big")
    assert p.bit_length() == 1024 and value_of(ll, session.handle, h, ck.CKA_BASE) == b"\x02"
    assert value_of(ll, session.handle, h, ck.CKA_KEY_TYPE) == ulong_bytes(ck.CKK_DH)
    assert ll.get_attribute(session.handle, h, ck.CKA_SUBPRIME)[0] == ck.CKR_ATTRIBUTE_TYPE_INVALID


# ------------------------------------------------------------------ AES


@pytest.fixture(scope="module")
def aes(session):
    value = os.urandom(32)
    return secret(session, KeyType.AES, value), value


def test_aes_ecb_cbc_vs_library(aes):
    key, value = aes
    data, iv = os.urandom(64), os.urandom(16)
    enc = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
    assert key.encrypt(data, mechanism=Mechanism.AES_ECB) == enc.update(data) + enc.finalize()
    enc = Cipher(algorithms.AES(value), modes.CBC(iv)).encryptor()
    assert key.encrypt(data, mechanism=Mechanism.AES_CBC, mechanism_param=iv) == enc.update(data) + enc.finalize()
    pad = sympad.PKCS7(128).padder()
    padded = pad.update(data[:50]) + pad.finalize()
    enc = Cipher(algorithms.AES(value), modes.CBC(iv)).encryptor()
    assert key.encrypt(data[:50], mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv) == \
        enc.update(padded) + enc.finalize()


@pytest.mark.parametrize("nonce", [b"", b"\x00" * 8, os.urandom(12), os.urandom(15)])
def test_aes_ctr_vs_library(aes, nonce):
    key, value = aes
    data = os.urandom(100)
    cb = nonce + b"\x00" * (15 - len(nonce)) + b"\x01"
    enc = Cipher(algorithms.AES(value), modes.CTR(cb)).encryptor()
    params = pkcs11.CTRParams(nonce)
    ct = key.encrypt(data, mechanism=Mechanism.AES_CTR, mechanism_param=params)
    assert ct == enc.update(data) + enc.finalize()
    assert key.decrypt(ct, mechanism=Mechanism.AES_CTR, mechanism_param=params) == data
    chunks = list(key.encrypt([data[:7], data[7:40], data[40:]], mechanism=Mechanism.AES_CTR, mechanism_param=params))
    assert b"".join(chunks) == ct


def test_aes_ctr_counter_bits(aes, session, ll):
    key, value = aes
    cb = bytes(15) + b"\xfe"  # two blocks before an 8-bit counter wraps
    param = CK_AES_CTR_PARAMS(8, (ctypes.c_ubyte * 16)(*cb))
    assert ll.init("Encrypt", session.handle, ck.CKM_AES_CTR, key.handle, param) == CKR_OK
    rv, _, out = ll.output_call("C_Encrypt", session.handle, bytes(32), 64)
    assert rv == CKR_OK
    enc = Cipher(algorithms.AES(value), modes.CTR(cb)).encryptor()
    assert out == enc.update(bytes(32))
    assert ll.init("Encrypt", session.handle, ck.CKM_AES_CTR, key.handle, param) == CKR_OK
    assert ll.output_call("C_Encrypt", session.handle, bytes(33), 64)[0] == ck.CKR_DATA_LEN_RANGE
    for bad in (CK_AES_CTR_PARAMS(0, (ctypes.c_ubyte * 16)()), CK_AES_CTR_PARAMS(129, (ctypes.c_ubyte * 16)())):
        assert ll.init("Encrypt", session.handle, ck.CKM_AES_CTR, key.handle, bad) == ck.CKR_MECHANISM_PARAM_INVALID
    assert ll.init("Encrypt", session.handle, ck.CKM_AES_CTR, key.handle, b"short") == ck.CKR_MECHANISM_PARAM_INVALID


class CK_GCM_PARAMS(ctypes.Structure):
    _fields_ = [("pIv", ctypes.c_void_p), ("ulIvLen", CK_ULONG), ("ulIvBits", CK_ULONG),
                ("pAAD", ctypes.c_void_p), ("ulAADLen", CK_ULONG), ("ulTagBits", CK_ULONG)]


def gcm_params(iv: bytes, aad: bytes, tag_bits: int) -> CK_GCM_PARAMS:
    return CK_GCM_PARAMS(cbuf(iv), len(iv), 8 * len(iv), cbuf(aad) if aad else None, len(aad), tag_bits)


@pytest.mark.parametrize("iv_len,tag_bits", [(12, 128), (16, 96), (8, 64), (60, 120), (128, 32)])
def test_aes_gcm_iv_and_tag_lengths(aes, session, ll, iv_len, tag_bits):
    key, value = aes
    iv, aad, data = os.urandom(iv_len), b"header", os.urandom(40)
    enc = Cipher(algorithms.AES(value), modes.GCM(iv)).encryptor()
    enc.authenticate_additional_data(aad)
    want = enc.update(data) + enc.finalize() + enc.tag[: tag_bits // 8]
    assert ll.init("Encrypt", session.handle, ck.CKM_AES_GCM, key.handle, gcm_params(iv, aad, tag_bits)) == CKR_OK
    rv, _, out = ll.output_call("C_Encrypt", session.handle, data, 128)
    assert rv == CKR_OK and out == want
    assert ll.init("Decrypt", session.handle, ck.CKM_AES_GCM, key.handle, gcm_params(iv, aad, tag_bits)) == CKR_OK
    rv, _, back = ll.output_call("C_Decrypt", session.handle, want, 128)
    assert rv == CKR_OK and back == data
    if iv_len == 12:
        assert key.decrypt(want, mechanism=Mechanism.AES_GCM,
                           mechanism_param=pkcs11.GCMParams(iv, aad, tag_bits)) == data


@pytest.mark.parametrize("iv_len", [1, 7, 129, 256])
def test_aes_gcm_ivs_the_crypto_library_refuses(aes, session, ll, iv_len):
    """Short and long IVs go through the device's own GHASH: checked against the SP 800-38D
    construction (gcm.py is itself checked against the library where both apply)."""
    from vhsm.crypto import gcm
    key, value = aes
    iv, aad, data = os.urandom(iv_len), b"hdr", os.urandom(37)
    want = gcm.encrypt(value, iv, aad, data, 16)
    assert ll.init("Encrypt", session.handle, ck.CKM_AES_GCM, key.handle, gcm_params(iv, aad, 128)) == CKR_OK
    rv, _, out = ll.output_call("C_Encrypt", session.handle, data, 128)
    assert rv == CKR_OK and out == want
    assert ll.init("Decrypt", session.handle, ck.CKM_AES_GCM, key.handle, gcm_params(iv, aad, 128)) == CKR_OK
    rv, _, back = ll.output_call("C_Decrypt", session.handle, want, 128)
    assert rv == CKR_OK and back == data
    tampered = want[:-1] + bytes([want[-1] ^ 1])
    assert ll.init("Decrypt", session.handle, ck.CKM_AES_GCM, key.handle, gcm_params(iv, aad, 128)) == CKR_OK
    assert ll.output_call("C_Decrypt", session.handle, tampered, 128)[0] == ck.CKR_ENCRYPTED_DATA_INVALID


def test_aes_gcm_parameter_limits(aes, session, ll):
    key, _ = aes
    for iv_len, tag in [(16, 128), (128, 96), (7, 128), (129, 128), (0, 128), (257, 128), (12, 100), (12, 0),
                        (12, 136)]:
        p = gcm_params(bytes(iv_len), b"", tag)
        rv = ll.init("Encrypt", session.handle, ck.CKM_AES_GCM, key.handle, p)
        ok = 1 <= iv_len <= 256 and tag in (32, 64, 96, 104, 112, 120, 128)
        assert rv == (CKR_OK if ok else ck.CKR_MECHANISM_PARAM_INVALID), (iv_len, tag)
        if ok:
            assert ll.output_call("C_Encrypt", session.handle, b"abc", 64)[0] == CKR_OK


def cbc_mac(algorithm, block: int, data: bytes) -> bytes:
    padded = data + bytes(-len(data) % block) if data else bytes(block)
    enc = Cipher(algorithm, modes.CBC(bytes(block))).encryptor()
    return (enc.update(padded) + enc.finalize())[-block:]


@pytest.mark.parametrize("data", [b"", b"short", os.urandom(16), os.urandom(45)])
def test_aes_cmac_and_cbc_mac(aes, session, ll, data):
    key, value = aes
    c = cmac.CMAC(algorithms.AES(value))
    c.update(data)
    full = c.finalize()
    if data:
        assert key.sign(data, mechanism=Mechanism.AES_CMAC) == full
        assert key.verify(data, full, mechanism=Mechanism.AES_CMAC)
        assert key.sign(data, mechanism=Mechanism.AES_MAC) == cbc_mac(algorithms.AES(value), 16, data)[:8]
        assert key.verify(data, cbc_mac(algorithms.AES(value), 16, data)[:8], mechanism=Mechanism.AES_MAC)
        assert not key.verify(data, full[:8], mechanism=Mechanism.AES_MAC)
        stream = key.sign([data[:3], data[3:]], mechanism=Mechanism.AES_CMAC)
        assert stream == full
    assert raw_sign(ll, session.handle, ck.CKM_AES_CMAC_GENERAL, key.handle, data, ulong_bytes(10)) == full[:10]
    assert raw_sign(ll, session.handle, ck.CKM_AES_MAC_GENERAL, key.handle, data, ulong_bytes(12)) == \
        cbc_mac(algorithms.AES(value), 16, data)[:12]
    assert ll.init("Sign", session.handle, ck.CKM_AES_CMAC_GENERAL, key.handle, ulong_bytes(17)) == \
        ck.CKR_MECHANISM_PARAM_INVALID


def test_python_pkcs11_default_aes_sign_is_aes_mac(aes):
    key, value = aes
    assert key.sign(b"HELLO WORLD") == cbc_mac(algorithms.AES(value), 16, b"HELLO WORLD")[:8]
    assert not key.verify(b"HELLO WORLD", b"1234")


# ------------------------------------------------------------------ DES2 / DES3


def test_des2_generate_and_modes(session):
    key = session.generate_key(KeyType.DES2, template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    value = key[Attribute.VALUE]
    assert len(value) == 16 and key[Attribute.KEY_TYPE] == KeyType.DES2
    assert all(bin(b).count("1") % 2 == 1 for b in value)
    data, iv = os.urandom(32), os.urandom(8)
    for mech, mode in [(Mechanism.DES3_ECB, modes.ECB()), (Mechanism.DES3_CBC, modes.CBC(iv))]:
        enc = Cipher(TDES(value), mode).encryptor()
        param = iv if mech == Mechanism.DES3_CBC else None
        assert key.encrypt(data, mechanism=mech, mechanism_param=param) == enc.update(data) + enc.finalize()
    ct = key.encrypt(b"PLAIN TEXT_", mechanism_param=iv)  # python-pkcs11's default: DES3_CBC_PAD
    assert len(ct) == 16 and key.decrypt(ct, mechanism_param=iv) == b"PLAIN TEXT_"


@pytest.mark.parametrize("key_type,size", [(KeyType.DES3, 24), (KeyType.DES2, 16)])
def test_des3_cmac_and_mac(session, ll, key_type, size):
    key = session.generate_key(key_type, template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True,
                                                   Attribute.SIGN: True, Attribute.VERIFY: True})
    value = key[Attribute.VALUE]
    assert len(value) == size
    data = b"triple des mac data"
    c = cmac.CMAC(TDES(value))
    c.update(data)
    full = c.finalize()
    assert key.sign(data, mechanism=Mechanism.DES3_CMAC) == full
    assert key.verify(data, full, mechanism=Mechanism.DES3_CMAC)
    assert raw_sign(ll, session.handle, ck.CKM_DES3_CMAC_GENERAL, key.handle, data, ulong_bytes(5)) == full[:5]
    mac = cbc_mac(TDES(value), 8, data)
    assert key.sign(data) == mac[:4]  # python-pkcs11's default for DES keys: DES3_MAC, half a block
    assert raw_sign(ll, session.handle, ck.CKM_DES3_MAC_GENERAL, key.handle, data, ulong_bytes(8)) == mac


# ------------------------------------------------------------------ HMAC and digests


HMACS = [(Mechanism.SHA_1_HMAC, "sha1"), (Mechanism.SHA224_HMAC, "sha224"), (Mechanism.SHA256_HMAC, "sha256"),
         (Mechanism.SHA384_HMAC, "sha384"), (Mechanism.SHA512_HMAC, "sha512"),
         (Mechanism.SHA3_224_HMAC, "sha3_224"), (Mechanism.SHA3_256_HMAC, "sha3_256"),
         (Mechanism.SHA3_384_HMAC, "sha3_384"), (Mechanism.SHA3_512_HMAC, "sha3_512")]


@pytest.mark.parametrize("mech,name", HMACS)
def test_hmac_and_general(session, ll, mech, name):
    value = os.urandom(40)
    key = secret(session, KeyType.GENERIC_SECRET, value)
    want = hmac.new(value, b"hmac data", name).digest()
    assert key.sign(b"hmac data", mechanism=mech) == want
    assert key.verify(b"hmac data", want, mechanism=mech)
    general = Mechanism(int(mech) + 1)
    assert raw_sign(ll, session.handle, general, key.handle, b"hmac data", ulong_bytes(12)) == want[:12]
    assert ll.init("Sign", session.handle, general, key.handle, ulong_bytes(len(want) + 1)) == \
        ck.CKR_MECHANISM_PARAM_INVALID
    assert ll.init("Sign", session.handle, general, key.handle, ulong_bytes(0)) == ck.CKR_MECHANISM_PARAM_INVALID


def test_hmac_key_types(session, ll):
    value = os.urandom(32)
    typed = secret(session, KeyType.SHA256_HMAC, value)
    assert typed.sign(b"typed", mechanism=Mechanism.SHA256_HMAC) == hmac.new(value, b"typed", "sha256").digest()
    with pytest.raises(E.KeyTypeInconsistent):
        typed.sign(b"typed", mechanism=Mechanism.SHA512_HMAC)
    aes_key = secret(session, KeyType.AES, os.urandom(16))
    with pytest.raises(E.KeyTypeInconsistent):
        aes_key.sign(b"x", mechanism=Mechanism.SHA256_HMAC)
    rv, h = raw_generate(ll, session.handle, ck.CKM_SHA256_KEY_GEN,
                         {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_VALUE_LEN: 48, ck.CKA_SIGN: True,
                          ck.CKA_SENSITIVE: False})
    assert rv == CKR_OK
    assert value_of(ll, session.handle, h, ck.CKA_KEY_TYPE) == ulong_bytes(ck.CKK_SHA256_HMAC)
    mac = raw_sign(ll, session.handle, ck.CKM_SHA256_HMAC, h, b"generated")
    assert mac == hmac.new(value_of(ll, session.handle, h), b"generated", "sha256").digest()


@pytest.mark.parametrize("mech,name", [(ck.CKM_SHA3_224, "sha3_224"), (ck.CKM_SHA3_256, "sha3_256"),
                                       (ck.CKM_SHA3_384, "sha3_384"), (ck.CKM_SHA3_512, "sha3_512"),
                                       (ck.CKM_MD5, "md5"), (ck.CKM_SHA224, "sha224")])
def test_more_digests(session, ll, mech, name):
    data = os.urandom(300)
    assert raw_digest(ll, session.handle, mech, data) == hashlib.new(name, data).digest()


# ------------------------------------------------------------------ derivation from secret keys


@pytest.mark.parametrize("bits,data_len", [(128, 16), (128, 32), (256, 32), (256, 64)])
def test_aes_ecb_encrypt_data(session, bits, data_len):
    value = os.urandom(bits // 8)
    base = secret(session, KeyType.AES, value)
    data = os.urandom(data_len)
    key = base.derive_key(KeyType.AES, bits, mechanism=Mechanism.AES_ECB_ENCRYPT_DATA, mechanism_param=data,
                          template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    enc = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
    assert key[Attribute.VALUE] == (enc.update(data) + enc.finalize())[: bits // 8]


def test_aes_cbc_encrypt_data_and_errors(session):
    value = os.urandom(16)
    base = secret(session, KeyType.AES, value)
    iv, data = os.urandom(16), os.urandom(32)
    key = base.derive_key(KeyType.GENERIC_SECRET, 256, mechanism=Mechanism.AES_CBC_ENCRYPT_DATA,
                          mechanism_param=(iv, data), template={Attribute.SENSITIVE: False,
                                                                Attribute.EXTRACTABLE: True})
    enc = Cipher(algorithms.AES(value), modes.CBC(iv)).encryptor()
    assert key[Attribute.VALUE] == enc.update(data) + enc.finalize()
    for mech, param in [(Mechanism.AES_CBC_ENCRYPT_DATA, (iv, data[:31])), (Mechanism.AES_ECB_ENCRYPT_DATA, data[:15])]:
        with pytest.raises(E.MechanismParamInvalid):
            base.derive_key(KeyType.AES, 128, mechanism=mech, mechanism_param=param)
    with pytest.raises(E.MechanismParamInvalid):  # 16 bytes of data cannot make a 32-byte key
        base.derive_key(KeyType.AES, 256, mechanism=Mechanism.AES_ECB_ENCRYPT_DATA, mechanism_param=data[:16])


@pytest.mark.parametrize("key_type,size", [(KeyType.DES3, 24), (KeyType.DES2, 16)])
def test_des3_encrypt_data(session, ll, key_type, size):
    base = session.generate_key(key_type, template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True,
                                                    Attribute.DERIVE: True})
    value = base[Attribute.VALUE]
    data = os.urandom(24)
    rv, h = raw_derive(ll, session.handle, ck.CKM_DES3_ECB_ENCRYPT_DATA, string_data(data), base.handle,
                       derived_template(ck.CKK_GENERIC_SECRET, 24))
    assert rv == CKR_OK
    enc = Cipher(TDES(value), modes.ECB()).encryptor()
    assert value_of(ll, session.handle, h) == enc.update(data) + enc.finalize()
    iv = os.urandom(8)
    p = CK_DES_CBC_ENCRYPT_DATA_PARAMS((ctypes.c_ubyte * 8)(*iv), cbuf(data), len(data))
    rv, h = raw_derive(ll, session.handle, ck.CKM_DES3_CBC_ENCRYPT_DATA, p, base.handle,
                       derived_template(ck.CKK_DES3, None))
    assert rv == CKR_OK
    enc = Cipher(TDES(value), modes.CBC(iv)).encryptor()
    want = enc.update(data) + enc.finalize()
    got = value_of(ll, session.handle, h)
    assert bytes(b & 0xFE for b in got) == bytes(b & 0xFE for b in want)


def test_concatenate_and_xor(session, ll):
    a, b = os.urandom(16), os.urandom(24)
    ka = secret(session, KeyType.GENERIC_SECRET, a)
    kb = secret(session, KeyType.GENERIC_SECRET, b)
    data = os.urandom(20)
    cases = [(ck.CKM_CONCATENATE_BASE_AND_KEY, ulong_bytes(kb.handle), a + b),
             (ck.CKM_CONCATENATE_BASE_AND_DATA, string_data(data), a + data),
             (ck.CKM_CONCATENATE_DATA_AND_BASE, string_data(data), data + a),
             (ck.CKM_XOR_BASE_AND_DATA, string_data(data), bytes(x ^ y for x, y in zip(a, data)))]
    for mech, param, want in cases:
        rv, h = raw_derive(ll, session.handle, mech, param, ka.handle, derived_template(ck.CKK_GENERIC_SECRET, None))
        assert rv == CKR_OK, hex(mech)
        assert value_of(ll, session.handle, h) == want
        rv, h = raw_derive(ll, session.handle, mech, param, ka.handle, derived_template(ck.CKK_AES, 16))
        assert rv == CKR_OK and value_of(ll, session.handle, h) == want[:16]
    rv, _ = raw_derive(ll, session.handle, ck.CKM_CONCATENATE_BASE_AND_KEY, ulong_bytes(0), ka.handle,
                       derived_template(ck.CKK_GENERIC_SECRET, None))
    assert rv == ck.CKR_MECHANISM_PARAM_INVALID
    rv, _ = raw_derive(ll, session.handle, ck.CKM_CONCATENATE_BASE_AND_DATA, string_data(data), ka.handle,
                       derived_template(ck.CKK_AES, None))  # 36 bytes is no AES key length
    assert rv == ck.CKR_TEMPLATE_INCOMPLETE


def test_derived_keys_inherit_sensitivity(session, ll):
    hidden = session.generate_key(KeyType.GENERIC_SECRET, 256, template={
        Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.DERIVE: True})
    assert hidden[Attribute.ALWAYS_SENSITIVE] and hidden[Attribute.NEVER_EXTRACTABLE]
    rv, h = raw_derive(ll, session.handle, ck.CKM_CONCATENATE_BASE_AND_DATA, string_data(b"tail"), hidden.handle,
                       derived_template(ck.CKK_GENERIC_SECRET, None))
    assert rv == CKR_OK
    assert value_of(ll, session.handle, h, ck.CKA_SENSITIVE) == b"\x01"
    assert value_of(ll, session.handle, h, ck.CKA_EXTRACTABLE) == b"\x00"
    assert value_of(ll, session.handle, h, ck.CKA_ALWAYS_SENSITIVE) == b"\x01"
    assert value_of(ll, session.handle, h, ck.CKA_NEVER_EXTRACTABLE) == b"\x01"
    assert value_of(ll, session.handle, h, ck.CKA_LOCAL) == b"\x00"
    assert ll.get_attribute(session.handle, h, ck.CKA_VALUE)[0] == ck.CKR_ATTRIBUTE_SENSITIVE
    # a known base key: ALWAYS_SENSITIVE stays false whatever the template says
    known = secret(session, KeyType.GENERIC_SECRET, os.urandom(32))
    rv, h = raw_derive(ll, session.handle, ck.CKM_XOR_BASE_AND_DATA, string_data(os.urandom(32)), known.handle,
                       derived_template(ck.CKK_GENERIC_SECRET, None, {ck.CKA_SENSITIVE: True}))
    assert rv == CKR_OK
    assert value_of(ll, session.handle, h, ck.CKA_ALWAYS_SENSITIVE) == b"\x00"
    # no CKA_DERIVE on the base key
    no = secret(session, KeyType.GENERIC_SECRET, os.urandom(32), {Attribute.DERIVE: False})
    rv, _ = raw_derive(ll, session.handle, ck.CKM_XOR_BASE_AND_DATA, string_data(b"12"), no.handle,
                       derived_template(ck.CKK_GENERIC_SECRET, None))
    assert rv == ck.CKR_KEY_FUNCTION_NOT_PERMITTED


# ------------------------------------------------------------------ HKDF


@pytest.mark.parametrize("prf,alg", [(ck.CKM_SHA256, hashes.SHA256), (ck.CKM_SHA384, hashes.SHA384),
                                     (ck.CKM_SHA_1, hashes.SHA1), (ck.CKM_SHA512, hashes.SHA512)])
def test_hkdf_salt_kinds(session, ll, prf, alg):
    ikm, salt, info = os.urandom(32), os.urandom(13), b"hkdf info"
    base = secret(session, KeyType.GENERIC_SECRET, ikm)
    salt_key = secret(session, KeyType.GENERIC_SECRET, salt)
    cases = [(hkdf_params(prf, info=info), HKDF(alg(), 42, None, info).derive(ikm)),
             (hkdf_params(prf, salt_type=ck.CKF_HKDF_SALT_DATA, salt=salt, info=info),
              HKDF(alg(), 42, salt, info).derive(ikm)),
             (hkdf_params(prf, salt_type=ck.CKF_HKDF_SALT_KEY, salt_key=salt_key.handle, info=info),
              HKDF(alg(), 42, salt, info).derive(ikm)),
             (hkdf_params(prf, extract=False, info=info), HKDFExpand(alg(), 42, info).derive(ikm))]
    for param, want in cases:
        rv, h = raw_derive(ll, session.handle, ck.CKM_HKDF_DERIVE, param, base.handle,
                           derived_template(ck.CKK_GENERIC_SECRET, 42))
        assert rv == CKR_OK
        assert value_of(ll, session.handle, h) == want
    # extract only: the PRK
    rv, h = raw_derive(ll, session.handle, ck.CKM_HKDF_DERIVE, hkdf_params(prf, expand=False, salt_type=ck.CKF_HKDF_SALT_DATA,
                                                                           salt=salt), base.handle,
                       derived_template(ck.CKK_HKDF, None))
    assert rv == CKR_OK
    assert value_of(ll, session.handle, h) == hmac.new(salt, ikm, alg.name).digest()
    assert value_of(ll, session.handle, h, ck.CKA_KEY_TYPE) == ulong_bytes(ck.CKK_HKDF)


def test_hkdf_errors_and_key_types(session, ll):
    rv, base = raw_generate(ll, session.handle, ck.CKM_HKDF_KEY_GEN,
                            {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_VALUE_LEN: 32, ck.CKA_DERIVE: True,
                             ck.CKA_SENSITIVE: False})
    assert rv == CKR_OK
    ikm = value_of(ll, session.handle, base)
    rv, h = raw_derive(ll, session.handle, ck.CKM_HKDF_DERIVE, hkdf_params(ck.CKM_SHA256, info=b"aes"), base,
                       derived_template(ck.CKK_AES, 32))
    assert rv == CKR_OK and value_of(ll, session.handle, h) == HKDF(hashes.SHA256(), 32, None, b"aes").derive(ikm)
    bad = [hkdf_params(ck.CKM_SHA256, extract=False, expand=False), hkdf_params(ck.CKM_MD5),
           hkdf_params(ck.CKM_SHA256, salt_type=7), hkdf_params(ck.CKM_SHA256, salt_type=ck.CKF_HKDF_SALT_DATA)]
    for param in bad:
        rv, _ = raw_derive(ll, session.handle, ck.CKM_HKDF_DERIVE, param, base, derived_template(ck.CKK_AES, 16))
        assert rv == ck.CKR_MECHANISM_PARAM_INVALID
    rv, _ = raw_derive(ll, session.handle, ck.CKM_HKDF_DERIVE, hkdf_params(ck.CKM_SHA256), base,
                       derived_template(ck.CKK_GENERIC_SECRET, None))
    assert rv == ck.CKR_TEMPLATE_INCOMPLETE
    aes_key = secret(session, KeyType.AES, os.urandom(16))
    rv, _ = raw_derive(ll, session.handle, ck.CKM_HKDF_DERIVE, hkdf_params(ck.CKM_SHA256), aes_key.handle,
                       derived_template(ck.CKK_AES, 16))
    assert rv == ck.CKR_KEY_TYPE_INCONSISTENT


# ------------------------------------------------------------------ wrapping


@pytest.mark.parametrize("mech,param_len,key_type,size", [
    (Mechanism.AES_ECB, 0, KeyType.AES, 32), (Mechanism.AES_CBC, 16, KeyType.AES, 32),
    (Mechanism.AES_CBC_PAD, 16, KeyType.GENERIC_SECRET, 20), (Mechanism.AES_KEY_WRAP_PAD, 0, KeyType.GENERIC_SECRET, 20),
    (Mechanism.DES3_ECB, 0, KeyType.DES3, 24), (Mechanism.DES3_CBC_PAD, 8, KeyType.GENERIC_SECRET, 11),
])
def test_wrap_secret_keys_with_block_modes(session, mech, param_len, key_type, size):
    kek_type = KeyType.DES3 if "DES3" in mech.name else KeyType.AES
    kek = session.generate_key(kek_type, 256 if kek_type == KeyType.AES else None,
                               template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    value = os.urandom(size) if key_type != KeyType.DES3 else \
        bytes(b & 0xFE | (bin(b >> 1).count("1") + 1) % 2 for b in os.urandom(24))
    target = secret(session, key_type, value)
    param = os.urandom(param_len) if param_len else None
    blob = kek.wrap_key(target, mechanism=mech, mechanism_param=param)
    kv = kek[Attribute.VALUE]
    if mech in (Mechanism.AES_CBC_PAD, Mechanism.DES3_CBC_PAD):
        cipher = algorithms.AES(kv) if kek_type == KeyType.AES else TDES(kv)
        dec = Cipher(cipher, modes.CBC(param)).decryptor()
        unpad = sympad.PKCS7(cipher.block_size).unpadder()
        assert unpad.update(dec.update(blob) + dec.finalize()) + unpad.finalize() == value
    back = kek.unwrap_key(ObjectClass.SECRET_KEY, key_type, blob, mechanism=mech, mechanism_param=param,
                          template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True,
                                    **({Attribute.VALUE_LEN: size} if key_type == KeyType.GENERIC_SECRET else {})})
    assert back[Attribute.VALUE] == value


def test_wrap_zero_pads_without_padding(session):
    kek = secret(session, KeyType.AES, os.urandom(16))
    target = secret(session, KeyType.GENERIC_SECRET, os.urandom(20))
    blob = kek.wrap_key(target, mechanism=Mechanism.AES_ECB)
    assert len(blob) == 32
    dec = Cipher(algorithms.AES(kek[Attribute.VALUE]), modes.ECB()).decryptor()
    assert dec.update(blob) + dec.finalize() == target[Attribute.VALUE] + bytes(12)


def private_keys(session, sensitive: bool = False):
    t = {Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: sensitive}
    rsa_pub, rsa_priv = session.generate_keypair(KeyType.RSA, 2048, private_template=t, label=uniq("wrap-rsa"))
    ec_pub, ec_priv = session.generate_keypair(KeyType.EC, public_template={Attribute.EC_PARAMS: bytes.fromhex(OID["p384"])},
                                               private_template=t, label=uniq("wrap-ec"))
    ed_pub, ed_priv = session.generate_keypair(KeyType.EC_EDWARDS,
                                               public_template={Attribute.EC_PARAMS: bytes.fromhex(OID["ed25519"])},
                                               private_template=t, label=uniq("wrap-ed"))
    return [(KeyType.RSA, rsa_pub, rsa_priv, Mechanism.SHA256_RSA_PKCS), (KeyType.EC, ec_pub, ec_priv, Mechanism.ECDSA_SHA256),
            (KeyType.EC_EDWARDS, ed_pub, ed_priv, Mechanism.EDDSA)]


@pytest.mark.parametrize("mech,param_len", [(Mechanism.AES_KEY_WRAP_PAD, 0), (Mechanism.AES_KEY_WRAP_KWP, 0),
                                            (Mechanism.AES_CBC_PAD, 16)])
def test_wrap_private_keys_as_pkcs8(session, ll, mech, param_len):
    kek = session.generate_key(KeyType.AES, 256, template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    kv = kek[Attribute.VALUE]
    for kt, pub, priv, sign_mech in private_keys(session):
        param = os.urandom(param_len) if param_len else None
        blob = kek.wrap_key(priv, mechanism=mech, mechanism_param=param)
        if mech == Mechanism.AES_CBC_PAD:
            dec = Cipher(algorithms.AES(kv), modes.CBC(param)).decryptor()
            unpad = sympad.PKCS7(128).unpadder()
            der = unpad.update(dec.update(blob) + dec.finalize()) + unpad.finalize()
        elif mech == Mechanism.AES_KEY_WRAP_KWP:
            from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding
            der = aes_key_unwrap_with_padding(kv, blob)
        else:
            der = None
        if der is not None:
            loaded = serialization.load_der_private_key(der, None)
            assert loaded.public_key().public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo) \
                == value_of(ll, session.handle, pub.handle, ck.CKA_PUBLIC_KEY_INFO)
        tmpl = {ck.CKA_CLASS: ck.CKO_PRIVATE_KEY, ck.CKA_KEY_TYPE: int(kt), ck.CKA_SIGN: True}
        rv, h = raw_unwrap(ll, session.handle, mech, param, kek.handle, blob, tmpl)
        assert rv == CKR_OK
        assert value_of(ll, session.handle, h, ck.CKA_LOCAL) == b"\x00"
        sig = raw_sign(ll, session.handle, sign_mech, h, b"unwrapped")
        assert pub.verify(b"unwrapped", sig, mechanism=sign_mech)
        tmpl[ck.CKA_KEY_TYPE] = ck.CKK_DSA  # the template's key type must be the key's
        assert raw_unwrap(ll, session.handle, mech, param, kek.handle, blob, tmpl)[0] == ck.CKR_TEMPLATE_INCONSISTENT


def test_wrap_key_type_mismatch(session):
    des = session.generate_key(KeyType.DES3)
    target = secret(session, KeyType.AES, os.urandom(16))
    with pytest.raises(E.WrappingKeyTypeInconsistent):
        des.wrap_key(target, mechanism=Mechanism.AES_ECB)


def test_wrap_sensitive_private_keys_round_trip(session, ll):
    """Sensitive keys need a wrap-only, never-known wrapping key; they come back and still sign."""
    kek = session.generate_key(KeyType.AES, 256, template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                                                           Attribute.ENCRYPT: False, Attribute.DECRYPT: False})
    for kt, pub, priv, sign_mech in private_keys(session, sensitive=True):
        for mech, param in [(Mechanism.AES_KEY_WRAP_KWP, None), (Mechanism.AES_CBC_PAD, os.urandom(16))]:
            blob = kek.wrap_key(priv, mechanism=mech, mechanism_param=param)
            rv, h = raw_unwrap(ll, session.handle, mech, param, kek.handle, blob,
                               {ck.CKA_CLASS: ck.CKO_PRIVATE_KEY, ck.CKA_KEY_TYPE: int(kt), ck.CKA_SIGN: True})
            assert rv == CKR_OK
            assert value_of(ll, session.handle, h, ck.CKA_SENSITIVE) == b"\x01"  # the default for private keys
            sig = raw_sign(ll, session.handle, sign_mech, h, b"again")
            assert pub.verify(b"again", sig, mechanism=sign_mech)


def test_stored_domain_parameters_and_imported_dh_key(session, ll):
    b = lambda v: v.to_bytes((v.bit_length() + 7) // 8, "big")  # noqa: E731
    dh_dom = session.create_domain_parameters(KeyType.DH, {Attribute.PRIME: b(MODP2048), Attribute.BASE: b"\x02"})
    assert isinstance(dh_dom, pkcs11.DomainParameters)
    assert dh_dom[Attribute.PRIME_BITS] == 2048 and dh_dom[Attribute.KEY_TYPE] == KeyType.DH
    pub, priv = dh_dom.generate_keypair(label=uniq("dh-stored"))
    assert pub[Attribute.PRIME] == b(MODP2048)
    params = dsa.generate_parameters(1024).parameter_numbers()
    dsa_dom = session.create_domain_parameters(KeyType.DSA, {Attribute.PRIME: b(params.p),
                                                             Attribute.SUBPRIME: b(params.q),
                                                             Attribute.BASE: b(params.g)})
    assert dsa_dom[Attribute.SUBPRIME_BITS] == 160
    dpub, dpriv = dsa_dom.generate_keypair(label=uniq("dsa-stored"))
    assert dpub.verify(b"stored", dpriv.sign(b"stored", mechanism=Mechanism.DSA_SHA256),
                       mechanism=Mechanism.DSA_SHA256)
    with pytest.raises(E.PKCS11Error):  # DSA sizes are checked
        session.create_domain_parameters(KeyType.DSA, {Attribute.PRIME: b(params.p), Attribute.SUBPRIME: b"\x07",
                                                       Attribute.BASE: b(params.g)})
    # an imported DH private key derives what the arithmetic says
    x = int.from_bytes(os.urandom(40), "big")
    mine = session.create_object({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.DH,
                                  Attribute.PRIME: b(MODP2048), Attribute.BASE: b"\x02", Attribute.VALUE: b(x),
                                  Attribute.DERIVE: True})
    y_other = int.from_bytes(pub[Attribute.VALUE], "big")
    key = mine.derive_key(KeyType.GENERIC_SECRET, 2048, mechanism_param=pub[Attribute.VALUE],
                          template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    assert key[Attribute.VALUE] == pow(y_other, x, MODP2048).to_bytes(256, "big")
    assert ll.get_attribute(session.handle, mine.handle, ck.CKA_VALUE)[0] == ck.CKR_ATTRIBUTE_SENSITIVE
