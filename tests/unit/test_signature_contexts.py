"""The device's signature contexts against the library they are built on: every signature
they accept is one `cryptography` accepts, and every one they refuse is refused with the
spec's CKR."""
from __future__ import annotations

import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from fxpkcs11 import ck
from vhsm.crypto import mechanisms as mechs
from vhsm.excrypt import DeviceError

RSA_KEY = rsa.generate_private_key(65537, 2048)
DATA = b"the message" * 100


def _verify(mech: int, sig: bytes, data: bytes = DATA, key=None) -> None:
    ctx = mechs.verify_context(mech, None, (key or RSA_KEY).public_key(), ck.CKK_RSA)
    ctx.final(data, sig)


@pytest.mark.parametrize("mech,alg", sorted(mechs.RSA_PKCS_HASHED.items()))
def test_rsa_pkcs_hashed_verify_accepts_the_library_signature(mech, alg):
    sig = RSA_KEY.sign(DATA, padding.PKCS1v15(), alg())
    _verify(mech, sig)
    ctx = mechs.verify_context(mech, None, RSA_KEY.public_key(), ck.CKK_RSA)
    for part in (DATA[:7], memoryview(DATA[7:500]), DATA[500:]):
        ctx.update(part)
    ctx.final(b"", sig)


def _refused(mech: int, sig: bytes, reason: int, data: bytes = DATA) -> None:
    with pytest.raises(DeviceError) as e:
        _verify(mech, sig, data)
    assert e.value.reason == reason


def test_rsa_pkcs_hashed_verify_refuses():
    good = RSA_KEY.sign(DATA, padding.PKCS1v15(), hashes.SHA256())
    flipped = bytes([good[0]]) + bytes([good[1] ^ 1]) + good[2:]
    _refused(ck.CKM_SHA256_RSA_PKCS, flipped, ck.CKR_SIGNATURE_INVALID)
    _refused(ck.CKM_SHA256_RSA_PKCS, good, ck.CKR_SIGNATURE_INVALID, DATA + b"!")
    # a valid signature over the same message with another hash is no SHA-256 signature
    _refused(ck.CKM_SHA256_RSA_PKCS, RSA_KEY.sign(DATA, padding.PKCS1v15(), hashes.SHA1()),
             ck.CKR_SIGNATURE_INVALID)
    # a PSS signature, a value not below the modulus, another key's signature
    pss = RSA_KEY.sign(DATA, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    _refused(ck.CKM_SHA256_RSA_PKCS, pss, ck.CKR_SIGNATURE_INVALID)
    _refused(ck.CKM_SHA256_RSA_PKCS, b"\xff" * 256, ck.CKR_SIGNATURE_INVALID)
    other = rsa.generate_private_key(65537, 2048).sign(DATA, padding.PKCS1v15(), hashes.SHA256())
    _refused(ck.CKM_SHA256_RSA_PKCS, other, ck.CKR_SIGNATURE_INVALID)
    _refused(ck.CKM_SHA256_RSA_PKCS, good[:-1], ck.CKR_SIGNATURE_LEN_RANGE)
    _refused(ck.CKM_SHA256_RSA_PKCS, good + b"\0", ck.CKR_SIGNATURE_LEN_RANGE)
    # the raw DigestInfo signed without its hash step is accepted: that is what the encoding is
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(DATA).digest()
    _verify(ck.CKM_SHA256_RSA_PKCS, RSA_KEY.sign(digest_info[19:], padding.PKCS1v15(),
                                                 utils.Prehashed(hashes.SHA256())))


@pytest.mark.parametrize("curve,size", [(ec.SECP256R1(), 32), (ec.SECP256R1(), 20), (ec.SECP256R1(), 64),
                                        (ec.SECP384R1(), 48), (ec.SECP384R1(), 32), (ec.SECP521R1(), 64)])
def test_ecdsa_sign_is_r_s_over_the_leftmost_order_bits(curve, size):
    key = ec.generate_private_key(curve)
    data = hashlib.sha512(b"input").digest()[:size].ljust(size, b"\x07")
    sig = mechs.sign_context(ck.CKM_ECDSA, None, key, ck.CKK_EC).final(data)
    n = (curve.key_size + 7) // 8
    assert len(sig) == 2 * n
    der = utils.encode_dss_signature(int.from_bytes(sig[:n], "big"), int.from_bytes(sig[n:], "big"))
    # the library truncates a digest to the order's bits itself (FIPS 186); a SHA-512-sized
    # digest of the same leftmost bits therefore checks the same value
    e = int.from_bytes(data, "big")
    if 8 * size > curve.key_size:
        e >>= 8 * size - curve.key_size
    padded = (e << max(512 - curve.key_size, 0)).to_bytes(64, "big")
    key.public_key().verify(der, padded, ec.ECDSA(utils.Prehashed(hashes.SHA512())))
    with pytest.raises(InvalidSignature):
        key.public_key().verify(der, bytes(64), ec.ECDSA(utils.Prehashed(hashes.SHA512())))


def test_ecdsa_sign_p521_refuses_input_past_64_bytes():
    ctx = mechs.sign_context(ck.CKM_ECDSA, None, ec.generate_private_key(ec.SECP521R1()), ck.CKK_EC)
    with pytest.raises(DeviceError) as e:
        ctx.final(b"\x01" * 66)
    assert e.value.reason == ck.CKR_DATA_LEN_RANGE


def test_ecdsa_sign_is_single_part():
    ctx = mechs.sign_context(ck.CKM_ECDSA, None, ec.generate_private_key(ec.SECP256R1()), ck.CKK_EC)
    with pytest.raises(DeviceError) as e:
        ctx.update(b"x" * 32)
    assert e.value.reason == ck.CKR_FUNCTION_NOT_SUPPORTED
