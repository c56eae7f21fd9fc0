"""Pure functions of the device's key derivation and key material code, against known
answers: RFC 5869 vectors, cryptography's X963KDF/HKDF, and DER edge cases."""
from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

from fxpkcs11 import ck
from vhsm.crypto import der, dh, kdf
from vhsm.crypto import keys as keymat
from vhsm.crypto import mechanisms
from vhsm.excrypt import DeviceError

ALGS = {"sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
        "sha512": hashes.SHA512, "sha3_256": hashes.SHA3_256}


def test_hkdf_rfc5869_case_1():
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    prk = kdf.hkdf_extract("sha256", salt, ikm)
    assert prk.hex() == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
    okm = kdf.hkdf_expand("sha256", prk, info, 42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")


def test_hkdf_rfc5869_case_3_no_salt_no_info():
    ikm = bytes.fromhex("0b" * 22)
    okm = kdf.hkdf("sha256", None, ikm, b"", 42)
    assert okm.hex() == ("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
                         "9d201395faa4b61a96c8")


@pytest.mark.parametrize("name", list(ALGS))
@pytest.mark.parametrize("length", [1, 20, 64, 100])
def test_hkdf_matches_cryptography(name, length):
    ikm, salt, info = os.urandom(37), os.urandom(11), os.urandom(9)
    assert kdf.hkdf(name, salt, ikm, info, length) == HKDF(ALGS[name](), length, salt, info).derive(ikm)
    assert kdf.hkdf_expand(name, ikm, info, length) == HKDFExpand(ALGS[name](), length, info).derive(ikm)


def test_hkdf_expand_limit():
    with pytest.raises(ValueError):
        kdf.hkdf_expand("sha256", bytes(32), b"", 255 * 32 + 1)
    assert len(kdf.hkdf_expand("sha256", bytes(32), b"", 255 * 32)) == 255 * 32


@pytest.mark.parametrize("name", list(ALGS))
@pytest.mark.parametrize("length", [16, 32, 77])
def test_x963_matches_cryptography(name, length):
    z, shared = os.urandom(32), os.urandom(15)
    assert kdf.x963(name, z, shared, length) == X963KDF(ALGS[name](), length, shared).derive(z)
    assert kdf.x963(name, z, b"", length) == X963KDF(ALGS[name](), length, None).derive(z)


def test_x963_known_answer():
    # SHA-1, Z = 20 bytes, no shared info, 16 bytes (ANSI X9.63 / SEC 1 style vector from NIST CAVS)
    z = bytes.fromhex("1c7d7b5f0597b03d06a018466ed1a93e30ed4b04dc64ccdd")
    assert kdf.x963("sha1", z, b"", 16).hex() == "bf71dffd8f4d99223936beb46fee8ccc"


def test_kdf_tables_name_pkcs11_constants():
    assert kdf.X963_HASHES[ck.CKD_SHA256_KDF] == "sha256"
    assert kdf.HASH_NAMES[ck.CKM_SHA3_512] == "sha3_512"
    assert ck.CKD_NULL not in kdf.X963_HASHES


# ------------------------------------------------------------------ ECDSA/DSA digest fitting


@pytest.mark.parametrize("curve", [ec.SECP192R1(), ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
@pytest.mark.parametrize("size", [10, 20, 28, 32, 40, 48, 64])
def test_fitted_digest_signs_the_leftmost_bits(curve, size):
    """The raw ECDSA input of any length signs as FIPS 186 says: the leftmost bits of the input."""
    key = ec.generate_private_key(curve)
    data = os.urandom(size)
    digest, alg = mechanisms._ecdsa_digest(curve.key_size, data)
    der_sig = key.sign(digest, ec.ECDSA(utils.Prehashed(alg)))
    # verify against the same input given as a prehashed value of exactly its own size when one exists
    for known in (hashes.SHA1(), hashes.SHA224(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512()):
        if known.digest_size == size:
            key.public_key().verify(der_sig, data, ec.ECDSA(utils.Prehashed(known)))


def test_fitted_digest_too_long_for_p521():
    with pytest.raises(DeviceError):
        mechanisms._ecdsa_digest(521, b"\xff" * 66)
    assert mechanisms._ecdsa_digest(521, b"\x01" * 64)[0] == b"\x01" * 64


# ------------------------------------------------------------------ points, DER, DH keys


def test_ec_point_raw_or_der_never_confused():
    for _ in range(50):
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        raw = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        assert keymat.ec_point(ec.SECP256R1(), raw) == raw
        assert keymat.ec_point(ec.SECP256R1(), der.octet_string(raw)) == raw
    raw521 = ec.generate_private_key(ec.SECP521R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    assert keymat.ec_point(ec.SECP521R1(), der.octet_string(raw521)) == raw521
    with pytest.raises(ValueError):
        keymat.ec_point(ec.SECP384R1(), raw)


def test_curve_names_and_oids():
    assert keymat.curve_for(bytes.fromhex("06052b8104000a")).name == "secp256k1"
    assert keymat.curve_for(b"\x13\x0aprime256v1").name == "secp256r1"
    assert keymat.edwards_for(b"\x13\x0cedwards25519") == "ed25519"
    assert keymat.edwards_for(bytes.fromhex("06032b6571")) == "ed448"
    with pytest.raises(DeviceError) as e:
        keymat.curve_for(bytes.fromhex("06032b6570"))
    assert e.value.reason == ck.CKR_CURVE_NOT_SUPPORTED


def test_der_trim_and_integers():
    body = der.sequence(der.integer(0), der.integer(255), der.integer(1 << 64))
    assert der.trim(body + bytes(7)) == body
    assert [der.to_int(v) for _, v in der.items(der.read(body)[1])] == [0, 255, 1 << 64]
    with pytest.raises(der.DERError):
        der.read(body[:-1])


def test_dh_keys_round_trip():
    p = int("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
            "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
            "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF", 16)  # RFC 2409 group 2 (1024-bit)
    a, b = dh.new_private(p, 2), dh.new_private(p, 2, value_bits=256)
    assert b.x.bit_length() == 256
    assert a.exchange(b.public_key().y) == b.exchange(a.public_key().y)
    again = keymat.load_private(keymat.private_der(a) + bytes(5))  # block padding after the DER is ignored
    assert again == a
    spki = keymat.public_key_info(a.public_key())
    assert dh.DH_OID in spki
    with pytest.raises(ValueError):
        a.exchange(1)
    with pytest.raises(ValueError):
        dh.new_private(p - 1, 2)
