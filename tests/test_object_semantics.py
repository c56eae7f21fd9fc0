"""Object semantics through the library, every CKR checked: certificates and data objects,
CKA_MODIFIABLE / COPYABLE / DESTROYABLE / PRIVATE, the one-way attributes,
CKA_ALLOWED_MECHANISMS on every path, dates, CKA_PUBLIC_KEY_INFO, C_GetAttributeValue per
attribute and for attribute arrays, template errors, the operation state machine, and the
wrapping policy (trusted keys, wrap/unwrap templates, the known key-extraction attacks)."""
from __future__ import annotations

import ctypes
import datetime
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from fxpkcs11 import ck
from integration_fixtures import CK_ATTRIBUTE, CK_ULONG, CK_UNAVAILABLE_INFORMATION, ulong_bytes, use_config
from p11raw import Raw, SO_PIN, conformance_env, env, h, raw, relogin  # noqa: F401 (fixtures)
from support import PIN

ATTR_SIZE = ctypes.sizeof(CK_ATTRIBUTE)


def make_cert() -> tuple[bytes, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "object semantics")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a test CA")])
    start = datetime.datetime(2025, 3, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(0xC0FFEE).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER), cert


# ------------------------------------------------------------------ certificates and data objects

def test_certificate_fields_follow_its_value(raw, h):
    der, cert = make_cert()
    base = {ck.CKA_CLASS: ck.CKO_CERTIFICATE, ck.CKA_CERTIFICATE_TYPE: ck.CKC_X_509, ck.CKA_VALUE: der,
            ck.CKA_LABEL: "cert"}
    rv, obj = raw.create(h, base)
    assert rv == 0
    assert raw.attr(h, obj, ck.CKA_SUBJECT) == cert.subject.public_bytes()
    assert raw.attr(h, obj, ck.CKA_ISSUER) == cert.issuer.public_bytes()
    assert raw.attr(h, obj, ck.CKA_SERIAL_NUMBER) == b"\x02\x04\x00\xc0\xff\xee"
    assert raw.attr(h, obj, ck.CKA_PUBLIC_KEY_INFO) == cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert raw.attr(h, obj, ck.CKA_START_DATE) == b"20250301"
    assert len(raw.attr(h, obj, ck.CKA_CHECK_VALUE)) == 3
    # consistent values may be given, inconsistent ones are refused
    assert raw.create(h, {**base, ck.CKA_SUBJECT: cert.subject.public_bytes()})[0] == 0
    assert raw.create(h, {**base, ck.CKA_SUBJECT: cert.issuer.public_bytes()})[0] == ck.CKR_TEMPLATE_INCONSISTENT
    assert raw.create(h, {**base, ck.CKA_SERIAL_NUMBER: b"\x02\x01\x05"})[0] == ck.CKR_TEMPLATE_INCONSISTENT
    assert raw.create(h, {**base, ck.CKA_VALUE: b"\x30\x03junk"})[0] == ck.CKR_ATTRIBUTE_VALUE_INVALID
    no_type = dict(base)
    del no_type[ck.CKA_CERTIFICATE_TYPE]
    assert raw.create(h, no_type)[0] == ck.CKR_TEMPLATE_INCOMPLETE
    assert raw.create(h, {**base, ck.CKA_TRUSTED: True})[0] == ck.CKR_ATTRIBUTE_READ_ONLY  # only the SO
    assert raw.create(h, {**base, ck.CKA_PUBLIC_KEY_INFO: b"x"})[0] == ck.CKR_ATTRIBUTE_READ_ONLY
    # its identity fields cannot drift from the value; the label can change
    assert raw.set_attrs(h, obj, {ck.CKA_SUBJECT: b"\x30\x00"}) == ck.CKR_ATTRIBUTE_READ_ONLY
    assert raw.set_attrs(h, obj, {ck.CKA_VALUE: der}) == ck.CKR_ATTRIBUTE_READ_ONLY
    assert raw.set_attrs(h, obj, {ck.CKA_LABEL: "renamed"}) == 0


def test_data_objects_and_private_visibility(raw, h, relogin):
    rv, public = raw.create(h, {ck.CKA_CLASS: ck.CKO_DATA, ck.CKA_APPLICATION: "app", ck.CKA_VALUE: b"v",
                                ck.CKA_OBJECT_ID: b"\x06\x01\x01", ck.CKA_LABEL: "data-public"})
    assert rv == 0
    assert raw.attr(h, public, ck.CKA_APPLICATION) == b"app" and raw.bool_attr(h, public, ck.CKA_PRIVATE) is False
    rv, private = raw.create(h, {ck.CKA_CLASS: ck.CKO_DATA, ck.CKA_VALUE: b"hidden", ck.CKA_PRIVATE: True,
                                 ck.CKA_LABEL: "data-private", ck.CKA_TOKEN: True})
    assert rv == 0
    assert raw.logout(h) == 0
    assert raw.get_attribute(h, private, ck.CKA_VALUE)[0] == ck.CKR_OBJECT_HANDLE_INVALID
    assert raw.find(h, {ck.CKA_LABEL: b"data-private"})[1] == []
    assert raw.find(h, {ck.CKA_LABEL: b"data-public"})[1] == [public]
    assert raw.create(h, {ck.CKA_CLASS: ck.CKO_DATA, ck.CKA_PRIVATE: True})[0] == ck.CKR_USER_NOT_LOGGED_IN
    assert raw.login(h, PIN) == 0
    assert raw.find(h, {ck.CKA_LABEL: b"data-private"})[1] == [private]
    assert raw.destroy(h, private) == 0


def test_modifiable_copyable_destroyable(raw, h):
    rv, fixed = raw.create(h, {ck.CKA_CLASS: ck.CKO_DATA, ck.CKA_MODIFIABLE: False, ck.CKA_DESTROYABLE: False,
                               ck.CKA_COPYABLE: False})
    assert rv == 0
    assert raw.set_attrs(h, fixed, {ck.CKA_LABEL: "x"}) == ck.CKR_ACTION_PROHIBITED
    assert raw.destroy(h, fixed) == ck.CKR_ACTION_PROHIBITED
    assert raw.copy(h, fixed, {})[0] == ck.CKR_ACTION_PROHIBITED
    rv, obj = raw.create(h, {ck.CKA_CLASS: ck.CKO_DATA, ck.CKA_COPYABLE: False})
    assert raw.set_attrs(h, obj, {ck.CKA_COPYABLE: True}) == ck.CKR_ATTRIBUTE_READ_ONLY
    assert raw.set_attrs(h, obj, {ck.CKA_MODIFIABLE: False}) == ck.CKR_ATTRIBUTE_READ_ONLY
    assert raw.destroy(h, obj) == 0


def test_sensitive_and_extractable_are_one_way(raw, h):
    key = raw.aes_value(h, os.urandom(16))
    assert raw.bool_attr(h, key, ck.CKA_ALWAYS_SENSITIVE) is False
    assert raw.set_attrs(h, key, {ck.CKA_SENSITIVE: True}) == 0
    assert raw.get_attribute(h, key, ck.CKA_VALUE)[0] == ck.CKR_ATTRIBUTE_SENSITIVE
    assert raw.set_attrs(h, key, {ck.CKA_SENSITIVE: False}) == ck.CKR_ATTRIBUTE_READ_ONLY
    assert raw.bool_attr(h, key, ck.CKA_ALWAYS_SENSITIVE) is False  # it was not always
    assert raw.set_attrs(h, key, {ck.CKA_EXTRACTABLE: False}) == 0
    assert raw.set_attrs(h, key, {ck.CKA_EXTRACTABLE: True}) == ck.CKR_ATTRIBUTE_READ_ONLY
    assert raw.bool_attr(h, key, ck.CKA_NEVER_EXTRACTABLE) is False
    rv, gen = raw.generate_key(h, ck.CKM_AES_KEY_GEN, {ck.CKA_VALUE_LEN: 16, ck.CKA_SENSITIVE: True,
                                                        ck.CKA_EXTRACTABLE: False})
    assert raw.bool_attr(h, gen, ck.CKA_ALWAYS_SENSITIVE) is True
    assert raw.bool_attr(h, gen, ck.CKA_NEVER_EXTRACTABLE) is True


def test_allowed_mechanisms_on_every_path(raw, h):
    key = raw.aes_value(h, os.urandom(16), {ck.CKA_ALLOWED_MECHANISMS: [ck.CKM_AES_ECB]})
    assert raw.attr(h, key, ck.CKA_ALLOWED_MECHANISMS) == ulong_bytes(ck.CKM_AES_ECB)
    assert raw.init("Encrypt", h, ck.CKM_AES_CBC, key, bytes(16)) == ck.CKR_MECHANISM_INVALID
    assert raw.init("Decrypt", h, ck.CKM_AES_CBC, key, bytes(16)) == ck.CKR_MECHANISM_INVALID
    assert raw.init("Encrypt", h, ck.CKM_AES_ECB, key) == 0
    assert raw.output_call("C_Encrypt", h, bytes(16), 16)[0] == 0
    # wrap and unwrap
    kek = raw.aes_value(h, os.urandom(16), {ck.CKA_ALLOWED_MECHANISMS: [ck.CKM_AES_KEY_WRAP_PAD]})
    target = raw.aes_value(h, os.urandom(16))
    assert raw.wrap(h, ck.CKM_AES_KEY_WRAP, kek, target)[0] == ck.CKR_MECHANISM_INVALID
    rv, blob = raw.wrap(h, ck.CKM_AES_KEY_WRAP_PAD, kek, target)
    assert rv == 0
    new = {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: ck.CKK_AES}
    assert raw.unwrap(h, ck.CKM_AES_KEY_WRAP, kek, blob, new)[0] == ck.CKR_MECHANISM_INVALID
    assert raw.unwrap(h, ck.CKM_AES_KEY_WRAP_PAD, kek, blob, new)[0] == 0
    # signatures
    pub, priv = raw.rsa_pair(h, priv={ck.CKA_ALLOWED_MECHANISMS: [ck.CKM_SHA256_RSA_PKCS]})
    assert raw.init("Sign", h, ck.CKM_RSA_PKCS, priv) == ck.CKR_MECHANISM_INVALID
    assert raw.init("Sign", h, ck.CKM_SHA256_RSA_PKCS, priv) == 0
    assert raw.output_call("C_Sign", h, b"data", 256)[0] == 0


def test_dates(raw, h):
    key = raw.aes_value(h, os.urandom(16), {ck.CKA_START_DATE: b"20240101", ck.CKA_END_DATE: b"20241231"})
    assert raw.attr(h, key, ck.CKA_START_DATE) == b"20240101"
    assert raw.attr(h, key, ck.CKA_END_DATE) == b"20241231"
    base = {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: ck.CKK_AES, ck.CKA_VALUE: bytes(16)}
    assert raw.create(h, {**base, ck.CKA_START_DATE: b"20241301"})[0] == ck.CKR_ATTRIBUTE_VALUE_INVALID
    assert raw.create(h, {**base, ck.CKA_START_DATE: b"2024"})[0] == ck.CKR_ATTRIBUTE_VALUE_INVALID
    assert raw.create(h, {**base, ck.CKA_START_DATE: b"20250101", ck.CKA_END_DATE: b"20240101"})[0] == \
        ck.CKR_TEMPLATE_INCONSISTENT
    assert raw.set_attrs(h, key, {ck.CKA_END_DATE: b"20231231"}) == ck.CKR_TEMPLATE_INCONSISTENT
    assert raw.set_attrs(h, key, {ck.CKA_END_DATE: b"20250630"}) == 0
    assert raw.set_attrs(h, key, {ck.CKA_END_DATE: b""}) == 0
    # dates are for reference only: the key still works after its end date
    assert raw.set_attrs(h, key, {ck.CKA_END_DATE: b"20240102"}) == 0
    assert raw.init("Encrypt", h, ck.CKM_AES_ECB, key) == 0
    assert raw.output_call("C_Encrypt", h, bytes(16), 16)[0] == 0


def test_public_key_info_for_generated_and_imported_keys(raw, h):
    pub, priv = raw.rsa_pair(h)
    spki = raw.attr(h, pub, ck.CKA_PUBLIC_KEY_INFO)
    n = int.from_bytes(raw.attr(h, pub, ck.CKA_MODULUS), "big")
    expected = rsa.RSAPublicNumbers(65537, n).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert spki == expected and raw.attr(h, priv, ck.CKA_PUBLIC_KEY_INFO) == expected
    rv, ep, ev = raw.generate_pair(h, ck.CKM_EC_KEY_PAIR_GEN, {ck.CKA_EC_PARAMS: bytes.fromhex("06082a8648ce3d030107")},
                                   {})
    assert rv == 0 and raw.attr(h, ep, ck.CKA_PUBLIC_KEY_INFO) == raw.attr(h, ev, ck.CKA_PUBLIC_KEY_INFO)
    key = rsa.generate_private_key(65537, 2048)
    p = key.private_numbers()

    def b(i: int) -> bytes:
        return i.to_bytes((i.bit_length() + 7) // 8, "big")
    rv, imported = raw.create(h, {
        ck.CKA_CLASS: ck.CKO_PRIVATE_KEY, ck.CKA_KEY_TYPE: ck.CKK_RSA, ck.CKA_MODULUS: b(p.public_numbers.n),
        ck.CKA_PUBLIC_EXPONENT: b(p.public_numbers.e), ck.CKA_PRIVATE_EXPONENT: b(p.d), ck.CKA_PRIME_1: b(p.p),
        ck.CKA_PRIME_2: b(p.q), ck.CKA_EXPONENT_1: b(p.dmp1), ck.CKA_EXPONENT_2: b(p.dmq1),
        ck.CKA_COEFFICIENT: b(p.iqmp)})
    assert rv == 0
    assert raw.attr(h, imported, ck.CKA_PUBLIC_KEY_INFO) == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# ------------------------------------------------------------------ C_GetAttributeValue

def test_each_attribute_is_answered_on_its_own(raw, h):
    key = raw.aes_value(h, os.urandom(16), {ck.CKA_SENSITIVE: True, ck.CKA_LABEL: "a long label"})
    rv, out = raw.get_attrs(h, key, [(ck.CKA_CLASS, 8), (ck.CKA_VALUE, 64), (ck.CKA_MODULUS, 64),
                                     (ck.CKA_LABEL, 3), (ck.CKA_KEY_TYPE, None), (ck.CKA_TOKEN, 1)])
    assert rv in (ck.CKR_ATTRIBUTE_SENSITIVE, ck.CKR_ATTRIBUTE_TYPE_INVALID, ck.CKR_BUFFER_TOO_SMALL)
    assert out[0] == (8, ulong_bytes(ck.CKO_SECRET_KEY))
    assert out[1][0] == CK_UNAVAILABLE_INFORMATION
    assert out[2][0] == CK_UNAVAILABLE_INFORMATION
    assert out[3][0] == CK_UNAVAILABLE_INFORMATION
    assert out[4][0] == 8  # a null pValue: the length
    assert out[5] == (1, b"\x00")
    # one error kind alone gives that CKR
    assert raw.get_attrs(h, key, [(ck.CKA_VALUE, 64), (ck.CKA_CLASS, 8)])[0] == ck.CKR_ATTRIBUTE_SENSITIVE
    assert raw.get_attrs(h, key, [(ck.CKA_MODULUS, 64), (ck.CKA_CLASS, 8)])[0] == ck.CKR_ATTRIBUTE_TYPE_INVALID
    assert raw.get_attrs(h, key, [(ck.CKA_LABEL, 2), (ck.CKA_CLASS, 8)])[0] == ck.CKR_BUFFER_TOO_SMALL


def test_attribute_arrays(raw, h):
    wrap_template = {ck.CKA_KEY_TYPE: ck.CKK_AES, ck.CKA_EXTRACTABLE: True}
    key = raw.aes_value(h, os.urandom(16), {ck.CKA_WRAP_TEMPLATE: wrap_template})
    rv, out = raw.get_attrs(h, key, [(ck.CKA_WRAP_TEMPLATE, None)])
    assert rv == 0 and out[0][0] == 2 * ATTR_SIZE
    # the caller's array: first with null values (lengths), then with buffers
    inner = (CK_ATTRIBUTE * 2)()
    outer = CK_ATTRIBUTE(ck.CKA_WRAP_TEMPLATE, ctypes.cast(inner, ctypes.c_void_p), 2 * ATTR_SIZE)
    assert raw.dll.C_GetAttributeValue(CK_ULONG(h), CK_ULONG(key), ctypes.byref(outer), CK_ULONG(1)) == 0
    got = {inner[i].type: inner[i].ulValueLen for i in range(2)}
    assert got == {ck.CKA_KEY_TYPE: 8, ck.CKA_EXTRACTABLE: 1}
    bufs = [ctypes.create_string_buffer(inner[i].ulValueLen) for i in range(2)]
    for i in range(2):
        inner[i].pValue = ctypes.cast(bufs[i], ctypes.c_void_p)
    assert raw.dll.C_GetAttributeValue(CK_ULONG(h), CK_ULONG(key), ctypes.byref(outer), CK_ULONG(1)) == 0
    values = {inner[i].type: bufs[i].raw[:inner[i].ulValueLen] for i in range(2)}
    assert values == {ck.CKA_KEY_TYPE: ulong_bytes(ck.CKK_AES), ck.CKA_EXTRACTABLE: b"\x01"}
    # too small, outside and inside
    outer.ulValueLen = ATTR_SIZE
    assert raw.dll.C_GetAttributeValue(CK_ULONG(h), CK_ULONG(key), ctypes.byref(outer),
                                       CK_ULONG(1)) == ck.CKR_BUFFER_TOO_SMALL
    assert outer.ulValueLen == CK_UNAVAILABLE_INFORMATION
    outer.ulValueLen = 2 * ATTR_SIZE
    for i in range(2):
        inner[i].ulValueLen = 0
    assert raw.dll.C_GetAttributeValue(CK_ULONG(h), CK_ULONG(key), ctypes.byref(outer),
                                       CK_ULONG(1)) == ck.CKR_BUFFER_TOO_SMALL
    assert all(inner[i].ulValueLen == CK_UNAVAILABLE_INFORMATION for i in range(2))


def test_template_errors(raw, h):
    assert raw.create(h, {ck.CKA_LABEL: "no class"})[0] == ck.CKR_TEMPLATE_INCOMPLETE
    assert raw.create(h, {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: ck.CKK_AES})[0] == \
        ck.CKR_TEMPLATE_INCOMPLETE
    assert raw.create(h, {ck.CKA_CLASS: ck.CKO_SECRET_KEY})[0] == ck.CKR_TEMPLATE_INCOMPLETE
    assert raw.create(h, {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: ck.CKK_RSA,
                          ck.CKA_VALUE: bytes(16)})[0] == ck.CKR_TEMPLATE_INCONSISTENT
    base = {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: ck.CKK_AES, ck.CKA_VALUE: bytes(16)}
    assert raw.create(h, {**base, ck.CKA_LOCAL: True})[0] == ck.CKR_ATTRIBUTE_READ_ONLY
    assert raw.create(h, {**base, ck.CKA_MODULUS: b"\x01"})[0] == ck.CKR_ATTRIBUTE_TYPE_INVALID
    assert raw.create(h, {**base, ck.CKA_ENCRYPT: b"\x01\x01"})[0] == ck.CKR_ATTRIBUTE_VALUE_INVALID
    assert raw.create(h, {**base, ck.CKA_VALUE_LEN: 24})[0] == ck.CKR_TEMPLATE_INCONSISTENT
    assert raw.generate_key(h, ck.CKM_AES_KEY_GEN, {ck.CKA_VALUE_LEN: 16, ck.CKA_VALUE: bytes(16)})[0] == \
        ck.CKR_TEMPLATE_INCONSISTENT
    key = raw.aes_value(h, bytes(16))
    assert raw.set_attrs(h, key, {ck.CKA_CLASS: ck.CKO_DATA}) == ck.CKR_ATTRIBUTE_READ_ONLY
    assert raw.set_attrs(h, key, {ck.CKA_KEY_GEN_MECHANISM: 0}) == ck.CKR_ATTRIBUTE_READ_ONLY


# ------------------------------------------------------------------ operation state machine

def test_operation_state_machine(raw, h):
    key = raw.aes_value(h, os.urandom(16))
    assert raw.init("Encrypt", h, ck.CKM_AES_ECB, key) == 0
    assert raw.init("Encrypt", h, ck.CKM_AES_ECB, key) == ck.CKR_OPERATION_ACTIVE
    rv, _, _ = raw.output_call("C_EncryptUpdate", h, bytes(16), 16)
    assert rv == 0
    assert raw.output_call("C_Encrypt", h, bytes(16), 16)[0] == ck.CKR_OPERATION_ACTIVE  # multi-part started
    assert raw.output_call("C_EncryptFinal", h, None, 16)[0] == 0
    assert raw.init("Encrypt", h, ck.CKM_AES_ECB, key) == 0
    assert raw.output_call("C_Encrypt", h, bytes(16), None)[0] == 0  # a length query starts single-part
    assert raw.output_call("C_EncryptUpdate", h, bytes(16), 16)[0] == ck.CKR_OPERATION_ACTIVE
    assert raw.output_call("C_Encrypt", h, bytes(16), 16)[0] == 0
    no_encrypt = raw.aes_value(h, os.urandom(16), {ck.CKA_ENCRYPT: False})
    assert raw.init("Encrypt", h, ck.CKM_AES_ECB, no_encrypt) == ck.CKR_KEY_FUNCTION_NOT_PERMITTED
    pub, priv = raw.rsa_pair(h)
    assert raw.init("Encrypt", h, ck.CKM_AES_ECB, pub) == ck.CKR_KEY_TYPE_INCONSISTENT
    assert raw.init("Sign", h, ck.CKM_SHA256_HMAC, priv) == ck.CKR_KEY_TYPE_INCONSISTENT
    assert raw.init("Encrypt", h, ck.CKM_AES_CBC, key, bytes(8)) == ck.CKR_MECHANISM_PARAM_INVALID


def gcm_params(iv: bytes, tag_bits: int) -> tuple[bytes, list]:
    ivbuf = ctypes.create_string_buffer(iv, len(iv))

    class GCM(ctypes.Structure):
        _fields_ = [("pIv", ctypes.c_void_p), ("ulIvLen", CK_ULONG), ("ulIvBits", CK_ULONG),
                    ("pAAD", ctypes.c_void_p), ("ulAADLen", CK_ULONG), ("ulTagBits", CK_ULONG)]
    g = GCM(ctypes.cast(ivbuf, ctypes.c_void_p), len(iv), len(iv) * 8, None, 0, tag_bits)
    return bytes(g), [ivbuf]


def test_bad_gcm_tag_length(raw, h):
    key = raw.aes_value(h, os.urandom(16))
    param, keep = gcm_params(os.urandom(12), 7)
    assert raw.init("Encrypt", h, ck.CKM_AES_GCM, key, param) == ck.CKR_MECHANISM_PARAM_INVALID
    param, keep = gcm_params(os.urandom(12), 128)
    assert raw.init("Encrypt", h, ck.CKM_AES_GCM, key, param) == 0
    assert raw.output_call("C_Encrypt", h, b"x", 64)[0] == 0


# ------------------------------------------------------------------ wrapping policy

AES = {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: ck.CKK_AES}


def test_wrap_then_decrypt_is_blocked(raw, h):
    secret = raw.aes_value(h, os.urandom(16), {ck.CKA_SENSITIVE: True})
    # a wrapping key that can also decrypt never wraps a sensitive key ...
    both = raw.aes(h, 16, {ck.CKA_SENSITIVE: True, ck.CKA_WRAP: True, ck.CKA_DECRYPT: True})
    assert raw.wrap(h, ck.CKM_AES_KEY_WRAP, both, secret)[0] == ck.CKR_KEY_NOT_WRAPPABLE
    # ... and a good wrapping key cannot gain CKA_DECRYPT afterwards
    kek = raw.aes(h, 16, {ck.CKA_SENSITIVE: True, ck.CKA_WRAP: True, ck.CKA_UNWRAP: True,
                            ck.CKA_DECRYPT: False})
    rv, blob = raw.wrap(h, ck.CKM_AES_KEY_WRAP, kek, secret)
    assert rv == 0
    assert raw.set_attrs(h, kek, {ck.CKA_DECRYPT: True}) == ck.CKR_TEMPLATE_INCONSISTENT
    assert raw.copy(h, kek, {ck.CKA_DECRYPT: True})[0] == ck.CKR_TEMPLATE_INCONSISTENT
    # nor unwrap it into the clear: a key that wraps sensitive keys unwraps only sensitive ones
    assert raw.unwrap(h, ck.CKM_AES_KEY_WRAP, kek, blob, {**AES, ck.CKA_SENSITIVE: False})[0] == \
        ck.CKR_TEMPLATE_INCONSISTENT
    rv, back = raw.unwrap(h, ck.CKM_AES_KEY_WRAP, kek, blob, dict(AES))
    assert rv == 0 and raw.bool_attr(h, back, ck.CKA_SENSITIVE) is True
    # non-sensitive keys wrap under any wrapping key
    plain = raw.aes_value(h, os.urandom(16))
    assert raw.wrap(h, ck.CKM_AES_KEY_WRAP, both, plain)[0] == 0


def test_known_wrapping_keys_cannot_wrap_sensitive_keys(raw, h):
    secret = raw.aes_value(h, os.urandom(16), {ck.CKA_SENSITIVE: True})
    # a wrapping key of known value (imported), or one unwrapped (its value came from outside)
    known = raw.aes_value(h, os.urandom(16), {ck.CKA_SENSITIVE: True, ck.CKA_DECRYPT: False})
    assert raw.wrap(h, ck.CKM_AES_KEY_WRAP, known, secret)[0] == ck.CKR_KEY_NOT_WRAPPABLE
    enc = raw.aes(h, 16, {ck.CKA_ENCRYPT: True, ck.CKA_UNWRAP: True})
    rv, blob = raw.wrap(h, ck.CKM_AES_KEY_WRAP, enc, raw.aes_value(h, os.urandom(16)))
    assert rv == 0
    rv, injected = raw.unwrap(h, ck.CKM_AES_KEY_WRAP, enc, blob, {**AES, ck.CKA_WRAP: True,
                                                                  ck.CKA_DECRYPT: False, ck.CKA_SENSITIVE: True})
    assert rv == 0
    assert raw.wrap(h, ck.CKM_AES_KEY_WRAP, injected, secret)[0] == ck.CKR_KEY_NOT_WRAPPABLE
    # an untrusted public key (anyone may hold its private half)
    pub, _ = raw.rsa_pair(h)
    assert raw.wrap(h, ck.CKM_RSA_PKCS, pub, secret)[0] == ck.CKR_KEY_NOT_WRAPPABLE


def test_wrap_and_unwrap_templates(raw, h):
    kek = raw.aes_value(h, os.urandom(16), {ck.CKA_WRAP_TEMPLATE: {ck.CKA_KEY_TYPE: ck.CKK_AES,
                                                                   ck.CKA_EXTRACTABLE: True},
                                            ck.CKA_UNWRAP_TEMPLATE: {ck.CKA_SENSITIVE: True,
                                                                     ck.CKA_EXTRACTABLE: False}})
    rv, generic = raw.create(h, {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: ck.CKK_GENERIC_SECRET,
                                 ck.CKA_VALUE: os.urandom(16)})
    assert rv == 0
    assert raw.wrap(h, ck.CKM_AES_KEY_WRAP, kek, generic)[0] == ck.CKR_KEY_NOT_WRAPPABLE
    rv, blob = raw.wrap(h, ck.CKM_AES_KEY_WRAP, kek, raw.aes_value(h, os.urandom(16)))
    assert rv == 0
    assert raw.unwrap(h, ck.CKM_AES_KEY_WRAP, kek, blob, {**AES, ck.CKA_EXTRACTABLE: True})[0] == \
        ck.CKR_TEMPLATE_INCONSISTENT
    rv, new = raw.unwrap(h, ck.CKM_AES_KEY_WRAP, kek, blob, dict(AES))
    assert rv == 0
    assert raw.bool_attr(h, new, ck.CKA_SENSITIVE) is True and raw.bool_attr(h, new, ck.CKA_EXTRACTABLE) is False
    assert raw.set_attrs(h, kek, {ck.CKA_WRAP_TEMPLATE: {}}) == ck.CKR_ATTRIBUTE_READ_ONLY


def test_trusted_keys_are_set_by_the_security_officer(raw, h, relogin):
    rv, pub, priv = raw.generate_pair(h, ck.CKM_RSA_PKCS_KEY_PAIR_GEN, {ck.CKA_MODULUS_BITS: 2048,
                                                                        ck.CKA_TOKEN: True}, {ck.CKA_TOKEN: True})
    assert rv == 0
    secret = raw.aes_value(h, os.urandom(16), {ck.CKA_SENSITIVE: True, ck.CKA_TOKEN: True})
    guarded = raw.aes_value(h, os.urandom(16), {ck.CKA_WRAP_WITH_TRUSTED: True, ck.CKA_TOKEN: True})
    assert raw.set_attrs(h, pub, {ck.CKA_TRUSTED: True}) == ck.CKR_ATTRIBUTE_READ_ONLY
    assert raw.wrap(h, ck.CKM_RSA_PKCS, pub, guarded)[0] == ck.CKR_KEY_NOT_WRAPPABLE
    assert raw.set_attrs(h, guarded, {ck.CKA_WRAP_WITH_TRUSTED: False}) == ck.CKR_ATTRIBUTE_READ_ONLY
    assert raw.logout(h) == 0
    assert raw.login(h, SO_PIN, ck.CKU_SO) == 0
    assert raw.set_attrs(h, pub, {ck.CKA_TRUSTED: True}) == 0
    assert raw.logout(h) == 0
    assert raw.login(h, PIN) == 0
    assert raw.bool_attr(h, pub, ck.CKA_TRUSTED) is True
    assert raw.wrap(h, ck.CKM_RSA_PKCS, pub, guarded)[0] == 0
    assert raw.wrap(h, ck.CKM_RSA_PKCS, pub, secret)[0] == 0  # a trusted key may wrap sensitive keys
    rv, copy = raw.copy(h, pub, {ck.CKA_LABEL: "trusted copy"})
    assert rv == 0 and raw.bool_attr(h, copy, ck.CKA_TRUSTED) is True  # a copy keeps the SO's trust
    for obj in (pub, priv, secret, guarded):
        raw.destroy(h, obj)
