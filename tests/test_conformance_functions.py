"""The PKCS #11 functions beyond the basic families, called raw with every CKR checked:
C_CopyObject, C_GetObjectSize, C_DigestKey, C_Get/SetOperationState, C_SignRecover,
C_VerifyRecover, the four dual-function updates, C_WaitForSlotEvent, the parallel-function
stubs, and the 3.0 additions (C_LoginUser, C_SessionCancel, the message-based functions)."""
from __future__ import annotations

import ctypes
import hashlib
import hmac
import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fxpkcs11 import ck
from integration_fixtures import CK_ULONG, use_config
from p11raw import Raw, SO_NAME, SO_PIN, conformance_env, env, h, raw, relogin, uniq  # noqa: F401 (fixtures)
from support import PIN


def rsa_public_numbers(raw, h, pub):
    n = int.from_bytes(raw.attr(h, pub, ck.CKA_MODULUS), "big")
    e = int.from_bytes(raw.attr(h, pub, ck.CKA_PUBLIC_EXPONENT), "big")
    return n, e


# ------------------------------------------------------------------ C_CopyObject / C_GetObjectSize

def test_copy_object_keeps_the_value_and_applies_changes(raw, h):
    value = os.urandom(16)
    key = raw.aes_value(h, value, {ck.CKA_LABEL: "original"})
    rv, copy = raw.copy(h, key, {ck.CKA_TOKEN: True, ck.CKA_LABEL: "the copy"})
    assert rv == 0 and copy != key
    assert raw.attr(h, copy, ck.CKA_VALUE) == value
    assert raw.attr(h, copy, ck.CKA_LABEL) == b"the copy"
    assert raw.bool_attr(h, copy, ck.CKA_TOKEN) is True
    assert raw.attr(h, key, ck.CKA_LABEL) == b"original"
    assert raw.bool_attr(h, key, ck.CKA_TOKEN) is False
    assert raw.destroy(h, copy) == 0


def test_copy_object_refusals(raw, h):
    value = os.urandom(16)
    fixed = raw.aes_value(h, value, {ck.CKA_COPYABLE: False})
    assert raw.copy(h, fixed, {})[0] == ck.CKR_ACTION_PROHIBITED
    sensitive = raw.aes_value(h, value, {ck.CKA_SENSITIVE: True, ck.CKA_EXTRACTABLE: False})
    assert raw.copy(h, sensitive, {ck.CKA_SENSITIVE: False})[0] == ck.CKR_ATTRIBUTE_READ_ONLY
    assert raw.copy(h, sensitive, {ck.CKA_EXTRACTABLE: True})[0] == ck.CKR_ATTRIBUTE_READ_ONLY
    plain = raw.aes_value(h, value)
    rv, tightened = raw.copy(h, plain, {ck.CKA_SENSITIVE: True, ck.CKA_EXTRACTABLE: False})
    assert rv == 0
    assert raw.get_attribute(h, tightened, ck.CKA_VALUE)[0] == ck.CKR_ATTRIBUTE_SENSITIVE
    assert raw.copy(h, plain, {ck.CKA_MODULUS: b"\x01"})[0] == ck.CKR_ATTRIBUTE_TYPE_INVALID
    assert raw.copy(h, plain, {ck.CKA_VALUE: b"\x00" * 16})[0] == ck.CKR_ATTRIBUTE_READ_ONLY
    assert raw.copy(h, plain, {ck.CKA_TRUSTED: True})[0] == ck.CKR_ATTRIBUTE_READ_ONLY  # only the SO
    assert raw.copy(h, 0, {})[0] == ck.CKR_OBJECT_HANDLE_INVALID
    assert raw.copy(h, 0x7FFFFFF, {})[0] == ck.CKR_OBJECT_HANDLE_INVALID
    # wrap and decrypt are not turned on together by a copy
    wrapper = raw.aes_value(h, value, {ck.CKA_WRAP: True, ck.CKA_DECRYPT: False})
    assert raw.copy(h, wrapper, {ck.CKA_DECRYPT: True})[0] == ck.CKR_TEMPLATE_INCONSISTENT


def test_copy_of_an_unmodifiable_object(raw, h):
    key = raw.aes_value(h, os.urandom(16), {ck.CKA_MODIFIABLE: False, ck.CKA_DECRYPT: False})
    assert raw.copy(h, key, {ck.CKA_LABEL: "x"})[0] == ck.CKR_ATTRIBUTE_READ_ONLY
    assert raw.copy(h, key, {ck.CKA_DECRYPT: True})[0] == ck.CKR_ATTRIBUTE_READ_ONLY
    assert raw.copy(h, key, {ck.CKA_MODIFIABLE: True})[0] == ck.CKR_ATTRIBUTE_READ_ONLY
    rv, copy = raw.copy(h, key, {ck.CKA_TOKEN: True, ck.CKA_COPYABLE: False, ck.CKA_DESTROYABLE: True})
    assert rv == 0
    assert raw.bool_attr(h, copy, ck.CKA_COPYABLE) is False
    assert raw.copy(h, copy, {})[0] == ck.CKR_ACTION_PROHIBITED
    assert raw.destroy(h, copy) == 0


def test_copy_needs_rw_for_token_objects_and_login_for_private(raw, h):
    key = raw.aes_value(h, os.urandom(16))
    rv, ro = raw.open_session(rw=False)
    assert rv == 0
    try:
        assert raw.copy(ro, key, {ck.CKA_TOKEN: True})[0] == ck.CKR_SESSION_READ_ONLY
        assert raw.copy(ro, key, {})[0] == 0  # a session object copy is fine in a R/O session
    finally:
        raw.close_session(ro)


def test_get_object_size(raw, h):
    key = raw.aes_value(h, os.urandom(32))
    rv, size = raw.size(h, key)
    assert rv == 0 and 32 < size < 10000
    rv, data = raw.create(h, {ck.CKA_CLASS: ck.CKO_DATA, ck.CKA_VALUE: b"x" * 1000, ck.CKA_TOKEN: True})
    assert rv == 0
    rv, size = raw.size(h, data)
    assert rv == 0 and size > 1000
    assert raw.size(h, 0)[0] == ck.CKR_OBJECT_HANDLE_INVALID
    assert raw.size(h, 0x7FFFFFF)[0] == ck.CKR_OBJECT_HANDLE_INVALID
    assert raw.size(0xDEAD, key)[0] == ck.CKR_SESSION_HANDLE_INVALID
    assert raw.destroy(h, data) == 0


# ------------------------------------------------------------------ C_DigestKey

def test_digest_key_runs_in_the_device(raw, h):
    value = os.urandom(16)
    key = raw.aes_value(h, value)
    assert raw.digest_init(h) == 0
    assert raw.update("C_DigestUpdate", h, b"before") == 0
    assert raw.digest_key(h, key) == 0
    assert raw.update("C_DigestUpdate", h, b"after") == 0
    rv, out = raw.digest_final(h)
    assert rv == 0 and out == hashlib.sha256(b"before" + value + b"after").digest()


def test_digest_key_of_a_sensitive_key(raw, h):
    value = os.urandom(32)
    key = raw.aes_value(h, value, {ck.CKA_SENSITIVE: True, ck.CKA_EXTRACTABLE: False})
    assert raw.get_attribute(h, key, ck.CKA_VALUE)[0] == ck.CKR_ATTRIBUTE_SENSITIVE
    assert raw.digest_init(h, ck.CKM_SHA_1) == 0
    assert raw.digest_key(h, key) == 0
    rv, out = raw.digest_final(h)
    assert rv == 0 and out == hashlib.sha1(value).digest()


def test_digest_key_refusals(raw, h):
    pub, priv = raw.rsa_pair(h)
    for key in (pub, priv):
        assert raw.digest_init(h) == 0
        assert raw.digest_key(h, key) == ck.CKR_KEY_INDIGESTIBLE
        # the error ended the operation
        assert raw.update("C_DigestUpdate", h, b"x") == ck.CKR_OPERATION_NOT_INITIALIZED
    rv, data = raw.create(h, {ck.CKA_CLASS: ck.CKO_DATA, ck.CKA_VALUE: b"d"})
    assert raw.digest_init(h) == 0
    assert raw.digest_key(h, data) == ck.CKR_KEY_HANDLE_INVALID
    assert raw.digest_init(h) == 0
    assert raw.digest_key(h, 0) == ck.CKR_KEY_HANDLE_INVALID
    assert raw.digest_key(h, pub) == ck.CKR_OPERATION_NOT_INITIALIZED
    # a single-part digest cannot follow a key
    key = raw.aes_value(h, os.urandom(16))
    assert raw.digest_init(h) == 0
    assert raw.digest_key(h, key) == 0
    assert raw.output_call("C_Digest", h, b"data", 64)[0] == ck.CKR_OPERATION_ACTIVE
    assert raw.digest_final(h)[0] == 0


# ------------------------------------------------------------------ operation state

def test_digest_state_saved_and_restored(raw, h):
    assert raw.digest_init(h, ck.CKM_SHA384) == 0
    assert raw.update("C_DigestUpdate", h, b"first part ") == 0
    rv, blob = raw.get_state(h)
    assert rv == 0 and blob
    assert raw.update("C_DigestUpdate", h, b"one way") == 0
    rv, a = raw.digest_final(h)
    assert a == hashlib.sha384(b"first part one way").digest()
    rv, other = raw.open_session(rw=True)
    try:
        assert raw.set_state(other, blob) == 0
        assert raw.update("C_DigestUpdate", other, b"another way") == 0
        rv, b = raw.digest_final(other)
        assert rv == 0 and b == hashlib.sha384(b"first part another way").digest()
    finally:
        raw.close_session(other)


def test_operation_state_refusals(raw, h):
    assert raw.get_state(h)[0] == ck.CKR_OPERATION_NOT_INITIALIZED
    # length query and a short buffer
    assert raw.digest_init(h) == 0
    n = CK_ULONG()
    assert raw.dll.C_GetOperationState(CK_ULONG(h), None, ctypes.byref(n)) == 0 and n.value > 0
    n.value -= 1
    buf = ctypes.create_string_buffer(n.value + 1)
    assert raw.dll.C_GetOperationState(CK_ULONG(h), buf, ctypes.byref(n)) == ck.CKR_BUFFER_TOO_SMALL
    rv, blob = raw.get_state(h)
    assert rv == 0
    assert raw.set_state(h, blob, enc_key=5) == ck.CKR_KEY_NOT_NEEDED
    assert raw.set_state(h, b"garbage of no kind") == ck.CKR_SAVED_STATE_INVALID
    assert raw.set_state(h, blob[:5]) == ck.CKR_SAVED_STATE_INVALID
    assert raw.digest_final(h)[0] == 0
    # any other operation: unsaveable
    key = raw.aes_value(h, os.urandom(16))
    assert raw.init("Encrypt", h, ck.CKM_AES_ECB, key) == 0
    assert raw.get_state(h)[0] == ck.CKR_STATE_UNSAVEABLE
    assert raw.digest_init(h) == 0
    assert raw.get_state(h)[0] == ck.CKR_STATE_UNSAVEABLE  # digest and encrypt together
    assert raw.output_call("C_Encrypt", h, bytes(16), 16)[0] == 0
    # a digest that took a key: its state holds key material
    assert raw.digest_key(h, key) == 0
    assert raw.get_state(h)[0] == ck.CKR_STATE_UNSAVEABLE
    assert raw.digest_final(h)[0] == 0
    # more data than the library keeps for saving
    from fxpkcs11.digest import STATE_LIMIT
    assert raw.digest_init(h) == 0
    big = os.urandom(STATE_LIMIT // 2 + 1)
    assert raw.update("C_DigestUpdate", h, big) == 0
    assert raw.get_state(h)[0] == 0
    assert raw.update("C_DigestUpdate", h, big) == 0
    assert raw.get_state(h)[0] == ck.CKR_STATE_UNSAVEABLE
    rv, out = raw.digest_final(h)
    assert out == hashlib.sha256(big + big).digest()


# ------------------------------------------------------------------ sign / verify with recovery

def test_sign_and_verify_recover_rsa_pkcs(raw, h):
    pub, priv = raw.rsa_pair(h)
    n, e = rsa_public_numbers(raw, h, pub)
    data = b"recoverable message"
    assert raw.init("SignRecover", h, ck.CKM_RSA_PKCS, priv) == 0
    rv, size, _ = raw.recover("C_SignRecover", h, data, None)
    assert rv == 0 and size == 256
    rv, _, sig = raw.recover("C_SignRecover", h, data, 256)
    assert rv == 0 and len(sig) == 256
    block = pow(int.from_bytes(sig, "big"), e, n).to_bytes(256, "big")
    assert block == b"\x00\x01" + b"\xff" * (256 - 3 - len(data)) + b"\x00" + data
    assert raw.init("VerifyRecover", h, ck.CKM_RSA_PKCS, pub) == 0
    rv, _, got = raw.recover("C_VerifyRecover", h, sig, 256)
    assert rv == 0 and got == data
    # a tampered signature
    bad = bytearray(sig)
    bad[-1] ^= 1
    assert raw.init("VerifyRecover", h, ck.CKM_RSA_PKCS, pub) == 0
    assert raw.recover("C_VerifyRecover", h, bytes(bad), 256)[0] == ck.CKR_SIGNATURE_INVALID
    assert raw.init("VerifyRecover", h, ck.CKM_RSA_PKCS, pub) == 0
    assert raw.recover("C_VerifyRecover", h, sig[:-1], 256)[0] == ck.CKR_SIGNATURE_LEN_RANGE
    assert raw.init("SignRecover", h, ck.CKM_RSA_PKCS, priv) == 0
    assert raw.recover("C_SignRecover", h, bytes(246), 256)[0] == ck.CKR_DATA_LEN_RANGE


def test_sign_and_verify_recover_rsa_x509(raw, h):
    pub, priv = raw.rsa_pair(h)
    n, e = rsa_public_numbers(raw, h, pub)
    data = b"\x00\x12raw block"
    assert raw.init("SignRecover", h, ck.CKM_RSA_X_509, priv) == 0
    rv, _, sig = raw.recover("C_SignRecover", h, data, 256)
    assert rv == 0 and pow(int.from_bytes(sig, "big"), e, n) == int.from_bytes(data, "big")
    assert raw.init("VerifyRecover", h, ck.CKM_RSA_X_509, pub) == 0
    rv, _, got = raw.recover("C_VerifyRecover", h, sig, 256)
    assert rv == 0 and got == data.rjust(256, b"\x00")


def test_recover_refusals(raw, h):
    pub, priv = raw.rsa_pair(h, priv={ck.CKA_SIGN_RECOVER: False})
    assert raw.init("SignRecover", h, ck.CKM_RSA_PKCS, priv) == ck.CKR_KEY_FUNCTION_NOT_PERMITTED
    assert raw.init("SignRecover", h, ck.CKM_SHA256_RSA_PKCS, priv) == ck.CKR_MECHANISM_INVALID
    assert raw.init("SignRecover", h, ck.CKM_RSA_PKCS, pub) == ck.CKR_KEY_TYPE_INCONSISTENT
    aes = raw.aes_value(h, os.urandom(16))
    assert raw.init("SignRecover", h, ck.CKM_RSA_PKCS, aes) == ck.CKR_KEY_TYPE_INCONSISTENT
    assert raw.init("VerifyRecover", h, ck.CKM_RSA_PKCS, priv) == ck.CKR_KEY_TYPE_INCONSISTENT
    assert raw.recover("C_SignRecover", h, b"x", 256)[0] == ck.CKR_OPERATION_NOT_INITIALIZED
    # CKA_ALLOWED_MECHANISMS holds here too
    pub2, priv2 = raw.rsa_pair(h, priv={ck.CKA_ALLOWED_MECHANISMS: [ck.CKM_RSA_X_509]})
    assert raw.init("SignRecover", h, ck.CKM_RSA_PKCS, priv2) == ck.CKR_MECHANISM_INVALID
    assert raw.init("SignRecover", h, ck.CKM_RSA_X_509, priv2) == 0
    assert raw.init("SignRecover", h, ck.CKM_RSA_X_509, priv2) == ck.CKR_OPERATION_ACTIVE
    assert raw.recover("C_SignRecover", h, b"x", 256)[0] == 0


# ------------------------------------------------------------------ dual-function updates

def aes_ecb(value: bytes, data: bytes, decrypt: bool = False) -> bytes:
    c = Cipher(algorithms.AES(value), modes.ECB())
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


def test_digest_encrypt_and_decrypt_digest(raw, h):
    value = os.urandom(16)
    key = raw.aes_value(h, value)
    parts = [os.urandom(32), os.urandom(16), os.urandom(48)]
    assert raw.init("Encrypt", h, ck.CKM_AES_ECB, key) == 0
    assert raw.digest_init(h) == 0
    cipher = b""
    for p in parts:
        rv, size, _ = raw.dual("C_DigestEncryptUpdate", h, p, None)  # a length query digests nothing
        assert rv == 0 and size == len(p)
        rv, _, out = raw.dual("C_DigestEncryptUpdate", h, p)
        assert rv == 0
        cipher += out
    assert raw.output_call("C_EncryptFinal", h, None, 16)[0] == 0
    rv, digest = raw.digest_final(h)
    assert digest == hashlib.sha256(b"".join(parts)).digest()
    assert cipher == aes_ecb(value, b"".join(parts))
    # and back
    assert raw.init("Decrypt", h, ck.CKM_AES_ECB, key) == 0
    assert raw.digest_init(h, ck.CKM_SHA_1) == 0
    rv, _, plain = raw.dual("C_DecryptDigestUpdate", h, cipher)
    assert rv == 0 and plain == b"".join(parts)
    assert raw.output_call("C_DecryptFinal", h, None, 16)[0] == 0
    assert raw.digest_final(h)[1] == hashlib.sha1(plain).digest()


def test_sign_encrypt_and_decrypt_verify(raw, h):
    value, mac_key = os.urandom(16), os.urandom(32)
    key = raw.aes_value(h, value)
    rv, mk = raw.create(h, {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: ck.CKK_GENERIC_SECRET,
                            ck.CKA_VALUE: mac_key, ck.CKA_SIGN: True, ck.CKA_VERIFY: True})
    assert rv == 0
    data = os.urandom(64)
    assert raw.init("Sign", h, ck.CKM_SHA256_HMAC, mk) == 0
    assert raw.init("Encrypt", h, ck.CKM_AES_ECB, key) == 0
    rv, _, cipher = raw.dual("C_SignEncryptUpdate", h, data)
    assert rv == 0 and cipher == aes_ecb(value, data)
    assert raw.output_call("C_EncryptFinal", h, None, 16)[0] == 0
    rv, _, mac = raw.output_call("C_SignFinal", h, None, 64)
    assert rv == 0 and mac == hmac.new(mac_key, data, "sha256").digest()
    assert raw.init("Decrypt", h, ck.CKM_AES_ECB, key) == 0
    assert raw.init("Verify", h, ck.CKM_SHA256_HMAC, mk) == 0
    rv, _, plain = raw.dual("C_DecryptVerifyUpdate", h, cipher)
    assert rv == 0 and plain == data
    assert raw.output_call("C_DecryptFinal", h, None, 16)[0] == 0
    assert raw.dll.C_VerifyFinal(CK_ULONG(h), ctypes.c_char_p(mac), CK_ULONG(len(mac))) == 0


def test_dual_functions_need_both_operations(raw, h):
    key = raw.aes_value(h, os.urandom(16))
    assert raw.dual("C_DigestEncryptUpdate", h, bytes(16))[0] == ck.CKR_OPERATION_NOT_INITIALIZED
    assert raw.init("Encrypt", h, ck.CKM_AES_ECB, key) == 0
    assert raw.dual("C_DigestEncryptUpdate", h, bytes(16))[0] == ck.CKR_OPERATION_NOT_INITIALIZED
    assert raw.dual("C_SignEncryptUpdate", h, bytes(16))[0] == ck.CKR_OPERATION_NOT_INITIALIZED
    assert raw.dual("C_DecryptDigestUpdate", h, bytes(16))[0] == ck.CKR_OPERATION_NOT_INITIALIZED
    assert raw.digest_init(h) == 0
    assert raw.dual("C_DecryptDigestUpdate", h, bytes(16))[0] == ck.CKR_OPERATION_NOT_INITIALIZED
    assert raw.dual("C_DecryptVerifyUpdate", h, bytes(16))[0] == ck.CKR_OPERATION_NOT_INITIALIZED
    # a single-part digest in progress cannot take a dual update
    assert raw.output_call("C_Digest", h, b"x", 1)[0] == ck.CKR_BUFFER_TOO_SMALL
    assert raw.dual("C_DigestEncryptUpdate", h, bytes(16))[0] == ck.CKR_OPERATION_ACTIVE
    assert raw.dll.C_SessionCancel(CK_ULONG(h), CK_ULONG(ck.CKF_DIGEST | ck.CKF_ENCRYPT)) == 0


# ------------------------------------------------------------------ slot events, parallel functions

def test_wait_for_slot_event(raw):
    slot = CK_ULONG()
    assert raw.dll.C_WaitForSlotEvent(CK_ULONG(ck.CKF_DONT_BLOCK), ctypes.byref(slot), None) == ck.CKR_NO_EVENT
    assert raw.dll.C_WaitForSlotEvent(CK_ULONG(0), ctypes.byref(slot), None) == ck.CKR_FUNCTION_NOT_SUPPORTED
    assert raw.dll.C_WaitForSlotEvent(CK_ULONG(ck.CKF_DONT_BLOCK), None, None) == ck.CKR_ARGUMENTS_BAD


def test_parallel_functions(raw, h):
    assert raw.dll.C_GetFunctionStatus(CK_ULONG(h)) == ck.CKR_FUNCTION_NOT_PARALLEL
    assert raw.dll.C_CancelFunction(CK_ULONG(h)) == ck.CKR_FUNCTION_NOT_PARALLEL
    assert raw.dll.C_GetFunctionStatus(CK_ULONG(0xBAD)) == ck.CKR_SESSION_HANDLE_INVALID
    assert raw.dll.C_CancelFunction(CK_ULONG(0xBAD)) == ck.CKR_SESSION_HANDLE_INVALID


# ------------------------------------------------------------------ PKCS #11 3.0

def test_login_user_names_the_identity(raw, h, relogin):
    assert raw.logout(h) == 0
    assert raw.login_user(h, ck.CKU_USER, PIN, "nobody") == ck.CKR_PIN_INCORRECT
    assert raw.login_user(h, ck.CKU_USER, "wrong", "crypto1") == ck.CKR_PIN_INCORRECT
    assert raw.login_user(h, ck.CKU_USER, SO_PIN, SO_NAME) == ck.CKR_PIN_INCORRECT  # an SO is no user
    assert raw.login_user(h, ck.CKU_USER, PIN, "crypto1") == 0
    assert raw.session_info(h)[1].state == ck.CKS_RW_USER_FUNCTIONS
    assert raw.login_user(h, ck.CKU_USER, PIN, "crypto1") == ck.CKR_USER_ALREADY_LOGGED_IN
    assert raw.login_user(h, 77, PIN, "crypto1") == ck.CKR_USER_TYPE_INVALID
    assert raw.logout(h) == 0
    assert raw.login_user(h, ck.CKU_SO, SO_PIN, SO_NAME) == 0
    assert raw.session_info(h)[1].state == ck.CKS_RW_SO_FUNCTIONS
    assert raw.logout(h) == 0
    assert raw.login_user(h, ck.CKU_USER, PIN, None) == 0  # no username: as C_Login
    assert raw.login_user(0xBAD, ck.CKU_USER, PIN, "crypto1") == ck.CKR_SESSION_HANDLE_INVALID


def test_session_cancel(raw, h):
    key = raw.aes_value(h, os.urandom(16))
    assert raw.dll.C_SessionCancel(CK_ULONG(h), CK_ULONG(ck.CKF_DIGEST)) == 0  # nothing active: fine
    assert raw.digest_init(h) == 0
    assert raw.init("Encrypt", h, ck.CKM_AES_ECB, key) == 0
    assert raw.dll.C_SessionCancel(CK_ULONG(h), CK_ULONG(ck.CKF_DIGEST)) == 0
    assert raw.update("C_DigestUpdate", h, b"x") == ck.CKR_OPERATION_NOT_INITIALIZED
    assert raw.output_call("C_Encrypt", h, bytes(16), 16)[0] == 0  # untouched
    assert raw.init("Sign", h, ck.CKM_SHA256_HMAC, raw.aes_value(h, os.urandom(16))) in (0, ck.CKR_KEY_TYPE_INCONSISTENT)
    assert raw.dll.C_SessionCancel(CK_ULONG(h), CK_ULONG(ck.CKF_SIGN | ck.CKF_FIND_OBJECTS)) == 0
    assert raw.dll.C_FindObjectsInit(CK_ULONG(h), None, CK_ULONG(0)) == 0
    assert raw.dll.C_SessionCancel(CK_ULONG(h), CK_ULONG(ck.CKF_FIND_OBJECTS)) == 0
    assert raw.dll.C_FindObjectsFinal(CK_ULONG(h)) == ck.CKR_OPERATION_NOT_INITIALIZED
    assert raw.dll.C_SessionCancel(CK_ULONG(0xBAD), CK_ULONG(ck.CKF_DIGEST)) == ck.CKR_SESSION_HANDLE_INVALID


@pytest.mark.parametrize("name", ["C_MessageEncryptInit", "C_EncryptMessage", "C_EncryptMessageBegin",
                                  "C_EncryptMessageNext", "C_MessageEncryptFinal", "C_MessageDecryptInit",
                                  "C_DecryptMessage", "C_MessageSignInit", "C_SignMessage", "C_SignMessageNext",
                                  "C_MessageSignFinal", "C_MessageVerifyInit", "C_VerifyMessage",
                                  "C_MessageVerifyFinal"])
def test_message_based_functions_are_not_supported(raw, h, name):
    args = [CK_ULONG(h)] + [CK_ULONG(0)] * 8
    assert getattr(raw.dll, name)(*args) == ck.CKR_FUNCTION_NOT_SUPPORTED


def test_the_3_0_interface_lists_the_new_functions(raw):
    class CK_INTERFACE(ctypes.Structure):
        _fields_ = [("pInterfaceName", ctypes.c_char_p), ("pFunctionList", ctypes.c_void_p),
                    ("flags", CK_ULONG)]
    iface = ctypes.POINTER(CK_INTERFACE)()
    version = (ctypes.c_ubyte * 2)(3, 0)
    assert raw.dll.C_GetInterface(ctypes.c_char_p(b"PKCS 11"), version, ctypes.byref(iface), CK_ULONG(0)) == 0
    table = ctypes.cast(iface.contents.pFunctionList, ctypes.POINTER(ctypes.c_void_p))
    # after the version word: 68 v2.40 entries, then C_GetInterfaceList, C_GetInterface, C_LoginUser, ...
    login_user = ctypes.cast(table[1 + 68 + 2], ctypes.c_void_p).value
    assert login_user == ctypes.cast(raw.dll.C_LoginUser, ctypes.c_void_p).value


def test_unique_label_helper():
    assert uniq("a") != uniq("a")


# ------------------------------------------------------------------ a refused data call ends the operation

def test_a_data_call_with_bad_arguments_ends_the_operation(raw, h):
    key = raw.aes(h, 16)
    iv = bytes(16)
    assert raw.init("Encrypt", h, ck.CKM_AES_CBC, key, iv) == 0
    encrypt = raw.fn("C_Encrypt")
    n = CK_ULONG(64)
    out = ctypes.create_string_buffer(64)
    # NULL data with a non-zero length: refused, and the operation is over (PKCS #11: the
    # call always terminates the operation unless it is CKR_OK or CKR_BUFFER_TOO_SMALL)
    assert encrypt(CK_ULONG(h), None, CK_ULONG(16), out, ctypes.byref(n)) == ck.CKR_ARGUMENTS_BAD
    assert raw.output_call("C_Encrypt", h, bytes(16), 64)[0] == ck.CKR_OPERATION_NOT_INITIALIZED
    # a new operation starts cleanly, and a length query keeps it going
    assert raw.init("Encrypt", h, ck.CKM_AES_CBC, key, iv) == 0
    rv, need, _ = raw.output_call("C_Encrypt", h, bytes(16), None)
    assert rv == 0 and need == 16
    assert raw.output_call("C_Encrypt", h, bytes(16), 16)[0] == 0
