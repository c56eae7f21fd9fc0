"""The new commands over the network transport (`vhsm serve`, mutual TLS): the security
officer, PIN changes, C_InitToken, token flags, C_CopyObject, C_GetObjectSize, C_DigestKey and
recovery travel as Excrypt frames and give the same answers as in process."""
from __future__ import annotations

import os

import pytest

from integration_fixtures import run_child
from net_support import (ServerProcess, identity_config, make_client_identity, make_net_state)
from p11raw import add_security_officer, set_device_setting
from support import build_library


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    build_library()
    base = str(tmp_path_factory.mktemp("tokennet"))
    state = os.path.join(base, "state")
    make_net_state(state)
    add_security_officer(state)
    set_device_setting(state, "max-login-failures", 4)
    ident = make_client_identity(state, os.path.join(base, "pki"))
    server = ServerProcess(state, base, name="tokennet")
    server.start()
    cfg = identity_config(os.path.join(base, "fxpkcs11.cfg"), server, ident)
    yield cfg
    server.stop()


CODE = """
import ctypes, hashlib, os
from fxpkcs11 import ck
from p11raw import Raw, SO_PIN
raw = Raw()
assert raw.dll.C_Initialize(None) == 0
r = {}
rv, h = raw.open_session(rw=True)
r["so_login"] = raw.login(h, SO_PIN, ck.CKU_SO)
r["so_state"] = raw.session_info(h)[1].state
r["ro_open"] = raw.open_session(rw=False)[0]
r["init_pin_short"] = raw.init_pin(h, "abc")
r["init_pin"] = raw.init_pin(h, "net-pin-1")
r["logout"] = raw.logout(h)
r["old_pin"] = raw.login(h, PIN)
r["flags_low"] = bool(raw.token_flags() & ck.CKF_USER_PIN_COUNT_LOW)
r["new_pin"] = raw.login(h, "net-pin-1")
r["flags_cleared"] = not raw.token_flags() & ck.CKF_USER_PIN_COUNT_LOW
r["set_pin"] = raw.set_pin(h, "net-pin-1", "net-pin-2")
value = os.urandom(16)
key = raw.aes_value(h, value, {ck.CKA_SENSITIVE: True})
rv, copy = raw.copy(h, key, {ck.CKA_LABEL: "copied", ck.CKA_TOKEN: True})
r["copy"] = rv
r["copy_refused"] = raw.copy(h, key, {ck.CKA_SENSITIVE: False})[0]
rv, size = raw.size(h, copy)
r["size"] = rv == 0 and size > 16
r["digest_init"] = raw.digest_init(h)
r["digest_update"] = raw.update("C_DigestUpdate", h, b"head")
r["digest_key"] = raw.digest_key(h, copy)
rv, dig = raw.digest_final(h)
r["digest_ok"] = dig == hashlib.sha256(b"head" + value).digest()
pub, priv = raw.rsa_pair(h)
r["sr_init"] = raw.init("SignRecover", h, ck.CKM_RSA_PKCS, priv)
rv, _, sig = raw.recover("C_SignRecover", h, b"net data", 256)
r["vr_init"] = raw.init("VerifyRecover", h, ck.CKM_RSA_PKCS, pub)
rv, _, back = raw.recover("C_VerifyRecover", h, sig, 256)
r["recovered"] = back == b"net data"
r["destroy"] = raw.destroy(h, copy)
r["close"] = raw.close_all()
r["init_token_wrong"] = raw.init_token(0, "wrong", "Net Token")
r["init_token"] = raw.init_token(0, SO_PIN, "Net Token")
rv, info = raw.token_info()
r["label"] = info.label.rstrip().decode()
r["pin_initialized"] = bool(info.flags & ck.CKF_USER_PIN_INITIALIZED)
rv, h = raw.open_session(rw=True)
r["login_after_init"] = raw.login(h, "net-pin-2")
raw.close_all()
raw.dll.C_Finalize(None)
out(**r)
"""


def test_token_functions_over_the_network(net):
    r = run_child(net, CODE)
    from fxpkcs11 import ck
    assert r["so_login"] == 0 and r["so_state"] == ck.CKS_RW_SO_FUNCTIONS
    assert r["ro_open"] == ck.CKR_SESSION_READ_WRITE_SO_EXISTS
    assert r["init_pin_short"] == ck.CKR_PIN_LEN_RANGE and r["init_pin"] == 0
    assert r["old_pin"] == ck.CKR_PIN_INCORRECT and r["flags_low"]
    assert r["new_pin"] == 0 and r["flags_cleared"] and r["set_pin"] == 0
    assert r["copy"] == 0 and r["copy_refused"] == ck.CKR_ATTRIBUTE_READ_ONLY and r["size"]
    assert (r["digest_init"], r["digest_update"], r["digest_key"]) == (0, 0, 0) and r["digest_ok"]
    assert r["sr_init"] == 0 and r["vr_init"] == 0 and r["recovered"]
    assert r["destroy"] == 0
    assert r["init_token_wrong"] == ck.CKR_PIN_INCORRECT and r["init_token"] == 0
    assert r["label"] == "Net Token" and not r["pin_initialized"]
    assert r["login_after_init"] == ck.CKR_USER_PIN_NOT_INITIALIZED
