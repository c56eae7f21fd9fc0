"""Token and PIN functions through the library, each test on a device of its own:
security officer logins and session states, C_InitPIN, C_SetPIN, C_InitToken, the PIN
flags of C_GetTokenInfo along the lockout, and CKA_ALWAYS_AUTHENTICATE."""
from __future__ import annotations

import ctypes
import os

import pytest

from fxpkcs11 import ck
from integration_fixtures import CK_ULONG, make_env, use_config
from p11raw import SO_NAME, SO_PIN, Raw, add_security_officer, set_device_setting
from support import PIN


@pytest.fixture
def env(tmp_path):
    e = make_env(str(tmp_path / "dev"), partitions={"App": (0, 999), "Other": (1000, 1999)})
    add_security_officer(e.state)
    return e


@pytest.fixture
def raw(env):
    use_config(env.cfg)
    r = Raw()
    yield r
    r.close_all()


def session(raw, rw=True) -> int:
    rv, h = raw.open_session(rw=rw)
    assert rv == 0
    return h


def admin(state: str, *argv: str) -> None:
    from vhsm.cli.main import main
    assert main(["--state", state, "--login", "Admin1:safest", "--login", "Admin2:safest", *argv]) == 0


# ------------------------------------------------------------------ the security officer

def test_security_officer_login_and_session_states(raw):
    ro = session(raw, rw=False)
    rw = session(raw)
    assert raw.login(rw, SO_PIN, ck.CKU_SO) == ck.CKR_SESSION_READ_ONLY_EXISTS
    raw.close_session(ro)
    assert raw.login(rw, "wrong-so-pin", ck.CKU_SO) == ck.CKR_PIN_INCORRECT
    assert raw.login(rw, PIN, ck.CKU_SO) == ck.CKR_PIN_INCORRECT  # the user's PIN is not the SO's
    assert raw.login(rw, SO_PIN, ck.CKU_SO) == 0
    assert raw.session_info(rw)[1].state == ck.CKS_RW_SO_FUNCTIONS
    assert raw.open_session(rw=False)[0] == ck.CKR_SESSION_READ_WRITE_SO_EXISTS
    other = session(raw)
    assert raw.session_info(other)[1].state == ck.CKS_RW_SO_FUNCTIONS
    assert raw.login(rw, SO_PIN, ck.CKU_SO) == ck.CKR_USER_ALREADY_LOGGED_IN
    assert raw.login(rw, PIN, ck.CKU_USER) == ck.CKR_USER_ANOTHER_ALREADY_LOGGED_IN
    # the SO works with public objects only
    assert raw.generate_key(rw, ck.CKM_AES_KEY_GEN, {ck.CKA_VALUE_LEN: 16})[0] == ck.CKR_USER_NOT_LOGGED_IN
    rv, public = raw.generate_key(rw, ck.CKM_AES_KEY_GEN, {ck.CKA_VALUE_LEN: 16, ck.CKA_PRIVATE: False})
    assert rv == 0
    assert raw.logout(rw) == 0
    assert raw.session_info(rw)[1].state == ck.CKS_RW_PUBLIC_SESSION
    assert raw.login(rw, PIN) == 0
    rv, private = raw.generate_key(rw, ck.CKM_AES_KEY_GEN, {ck.CKA_VALUE_LEN: 16})
    assert rv == 0
    assert raw.logout(rw) == 0
    assert raw.login(rw, SO_PIN, ck.CKU_SO) == 0
    assert raw.get_attribute(rw, private, ck.CKA_LABEL)[0] == ck.CKR_OBJECT_HANDLE_INVALID
    assert raw.get_attribute(rw, public, ck.CKA_LABEL)[0] == 0


def test_so_opr_config_tag(tmp_path):
    e = make_env(str(tmp_path / "dev"), identity="crypto1")
    add_security_officer(e.state, name="chief", password="chief-pin")
    with open(e.cfg) as f:
        text = f.read()
    with open(e.cfg, "w") as f:
        f.write(text.replace("</HSM>", "  <SO-OPR> chief </SO-OPR>\n</HSM>"))
    use_config(e.cfg)
    raw = Raw()
    h = session(raw)
    try:
        assert raw.login(h, "chief-pin", ck.CKU_SO) == 0
        assert raw.session_info(h)[1].state == ck.CKS_RW_SO_FUNCTIONS
    finally:
        raw.close_all()


# ------------------------------------------------------------------ C_InitPIN, C_SetPIN

def test_init_pin(raw):
    h = session(raw)
    assert raw.init_pin(h, "brand-new") == ck.CKR_USER_NOT_LOGGED_IN  # public session
    assert raw.login(h, PIN) == 0
    assert raw.init_pin(h, "brand-new") == ck.CKR_USER_NOT_LOGGED_IN  # a user is no SO
    assert raw.logout(h) == 0
    assert raw.login(h, SO_PIN, ck.CKU_SO) == 0
    assert raw.init_pin(h, "abc") == ck.CKR_PIN_LEN_RANGE
    assert raw.init_pin(h, "x" * 65) == ck.CKR_PIN_LEN_RANGE
    assert raw.init_pin(h, "brand-new") == 0
    assert raw.logout(h) == 0
    assert raw.login(h, PIN) == ck.CKR_PIN_INCORRECT
    assert raw.login(h, "brand-new") == 0


def test_set_pin(raw):
    ro = session(raw, rw=False)
    assert raw.set_pin(ro, PIN, "second-pin") == ck.CKR_SESSION_READ_ONLY
    raw.close_session(ro)
    h = session(raw)
    assert raw.login(h, PIN) == 0
    assert raw.set_pin(h, "wrong-old", "second-pin") == ck.CKR_PIN_INCORRECT
    assert raw.set_pin(h, PIN, "no") == ck.CKR_PIN_LEN_RANGE
    assert raw.set_pin(h, PIN, "second-pin") == 0
    assert raw.logout(h) == 0
    assert raw.login(h, PIN) == ck.CKR_PIN_INCORRECT
    assert raw.login(h, "second-pin") == 0
    assert raw.logout(h) == 0
    # in a R/W public session C_SetPIN changes the user's PIN (the old one given)
    assert raw.set_pin(h, "second-pin", "third-pin") == 0
    assert raw.login(h, "third-pin") == 0
    assert raw.logout(h) == 0
    # the security officer changes its own
    assert raw.login(h, SO_PIN, ck.CKU_SO) == 0
    assert raw.set_pin(h, SO_PIN, "so-second") == 0
    assert raw.logout(h) == 0
    assert raw.login(h, "so-second", ck.CKU_SO) == 0


def test_set_pin_after_login_user_changes_that_identity(raw):
    h = session(raw)
    assert raw.login_user(h, ck.CKU_USER, PIN, "other1") == 0
    assert raw.set_pin(h, PIN, "other-new") == 0
    assert raw.logout(h) == 0
    assert raw.login_user(h, ck.CKU_USER, "other-new", "other1") == 0
    assert raw.logout(h) == 0
    assert raw.login(h, PIN) == 0  # the configured user's PIN is unchanged


def test_token_info_pin_lengths(raw):
    rv, info = raw.token_info()
    assert rv == 0 and (info.ulMinPinLen, info.ulMaxPinLen) == (4, 64)
    assert info.flags & ck.CKF_USER_PIN_INITIALIZED and info.flags & ck.CKF_TOKEN_INITIALIZED


# ------------------------------------------------------------------ C_InitToken

def test_init_token(raw, env):
    h = session(raw)
    assert raw.login(h, PIN) == 0
    rv, mine = raw.generate_key(h, ck.CKM_AES_KEY_GEN, {ck.CKA_VALUE_LEN: 16, ck.CKA_TOKEN: True,
                                                         ck.CKA_LABEL: "app key"})
    assert rv == 0
    assert raw.logout(h) == 0
    assert raw.login_user(h, ck.CKU_USER, PIN, "other1") == 0  # an identity of the other partition
    rv, theirs = raw.generate_key(h, ck.CKM_AES_KEY_GEN, {ck.CKA_VALUE_LEN: 16, ck.CKA_TOKEN: True,
                                                           ck.CKA_LABEL: "other key"})
    assert rv == 0
    assert raw.init_token(0, SO_PIN, "New Label") == ck.CKR_SESSION_EXISTS
    raw.close_all()
    assert raw.init_token(0, "wrong-so", "New Label") == ck.CKR_PIN_INCORRECT
    assert raw.init_token(0, PIN, "New Label") == ck.CKR_PIN_INCORRECT
    assert raw.dll.C_InitToken(CK_ULONG(0), ctypes.c_char_p(SO_PIN.encode()), CK_ULONG(len(SO_PIN)),
                               None) == ck.CKR_ARGUMENTS_BAD
    assert raw.init_token(7, SO_PIN, "New Label") == ck.CKR_SLOT_ID_INVALID
    assert raw.init_token(0, SO_PIN, "New Label") == 0
    rv, info = raw.token_info()
    assert info.label.rstrip() == b"New Label"
    assert not info.flags & ck.CKF_USER_PIN_INITIALIZED
    h = session(raw)
    assert raw.login(h, PIN) == ck.CKR_USER_PIN_NOT_INITIALIZED
    assert raw.login(h, SO_PIN, ck.CKU_SO) == 0
    assert raw.init_pin(h, PIN) == 0
    assert raw.logout(h) == 0
    assert raw.token_flags() & ck.CKF_USER_PIN_INITIALIZED
    assert raw.login(h, PIN) == 0
    assert raw.find(h, {ck.CKA_LABEL: b"app key"})[1] == []
    assert raw.logout(h) == 0
    assert raw.login_user(h, ck.CKU_USER, PIN, "other1") == 0
    assert len(raw.find(h, {ck.CKA_LABEL: b"other key"})[1]) == 1  # outside the partition: untouched


# ------------------------------------------------------------------ lockout

def test_pin_flags_along_the_lockout(raw, env):
    set_device_setting(env.state, "max-login-failures", 3)
    h = session(raw)
    assert not raw.token_flags() & (ck.CKF_USER_PIN_COUNT_LOW | ck.CKF_USER_PIN_FINAL_TRY | ck.CKF_USER_PIN_LOCKED)
    assert raw.login(h, "wrong") == ck.CKR_PIN_INCORRECT
    flags = raw.token_flags()
    assert flags & ck.CKF_USER_PIN_COUNT_LOW and not flags & ck.CKF_USER_PIN_FINAL_TRY
    assert raw.login(h, "wrong") == ck.CKR_PIN_INCORRECT
    flags = raw.token_flags()
    assert flags & ck.CKF_USER_PIN_FINAL_TRY and not flags & ck.CKF_USER_PIN_LOCKED
    assert raw.login(h, "wrong") == ck.CKR_PIN_INCORRECT
    assert raw.token_flags() & ck.CKF_USER_PIN_LOCKED
    assert raw.login(h, PIN) == ck.CKR_PIN_LOCKED
    assert raw.set_pin(h, PIN, "another-pin") == ck.CKR_PIN_LOCKED
    # the SO's flags are its own
    assert not raw.token_flags() & ck.CKF_SO_PIN_COUNT_LOW
    assert raw.login(h, "wrong", ck.CKU_SO) == ck.CKR_PIN_INCORRECT
    assert raw.token_flags() & ck.CKF_SO_PIN_COUNT_LOW
    assert raw.login(h, SO_PIN, ck.CKU_SO) == 0
    assert not raw.token_flags() & ck.CKF_SO_PIN_COUNT_LOW
    assert raw.logout(h) == 0
    # only an administrator unlocks the user: not the SO's C_InitPIN, not time
    admin(env.state, "identity", "unlock", "--name", "crypto1")
    assert not raw.token_flags() & ck.CKF_USER_PIN_LOCKED
    assert raw.login(h, PIN) == 0
    from vhsm.device import VirtualHSM
    dev = VirtualHSM(env.state)
    try:
        rows = [r for r in dev.store.audit_rows() if r["command"] in ("LOGI", "GPUC") and r["result"] == "refused"]
    finally:
        dev.close()
    assert sum(1 for r in rows if r["identity"] == "crypto1") == 5


# ------------------------------------------------------------------ CKA_ALWAYS_AUTHENTICATE

def test_always_authenticate_needs_a_context_specific_login(raw):
    h = session(raw)
    assert raw.login(h, SO_PIN.replace("so", "no")) == ck.CKR_PIN_INCORRECT
    assert raw.login(h, PIN) == 0
    assert raw.login(h, PIN, ck.CKU_CONTEXT_SPECIFIC) == ck.CKR_OPERATION_NOT_INITIALIZED
    pub, priv = raw.rsa_pair(h, priv={ck.CKA_ALWAYS_AUTHENTICATE: True})
    assert raw.bool_attr(h, priv, ck.CKA_ALWAYS_AUTHENTICATE) is True
    data = b"authorised once"
    # without the login the operation is refused and ends
    assert raw.init("Sign", h, ck.CKM_SHA256_RSA_PKCS, priv) == 0
    assert raw.output_call("C_Sign", h, data, 256)[0] == ck.CKR_USER_NOT_LOGGED_IN
    assert raw.output_call("C_Sign", h, data, 256)[0] == ck.CKR_OPERATION_NOT_INITIALIZED
    # a wrong PIN is refused, the right one authorises this operation only
    assert raw.init("Sign", h, ck.CKM_SHA256_RSA_PKCS, priv) == 0
    assert raw.login(h, "wrong", ck.CKU_CONTEXT_SPECIFIC) == ck.CKR_PIN_INCORRECT
    assert raw.login(h, PIN, ck.CKU_CONTEXT_SPECIFIC) == 0
    rv, _, sig = raw.output_call("C_Sign", h, data, 256)
    assert rv == 0 and len(sig) == 256
    assert raw.init("Verify", h, ck.CKM_SHA256_RSA_PKCS, pub) == 0
    assert raw.verify(h, data, sig) == 0
    # multi-part: one login for the whole operation
    assert raw.init("Sign", h, ck.CKM_SHA256_RSA_PKCS, priv) == 0
    assert raw.login(h, PIN, ck.CKU_CONTEXT_SPECIFIC) == 0
    assert raw.update("C_SignUpdate", h, b"authorised ") == 0
    assert raw.update("C_SignUpdate", h, b"once") == 0
    rv, _, sig2 = raw.output_call("C_SignFinal", h, None, 256)
    assert rv == 0 and sig2 == sig
    # decrypt too
    assert raw.init("Encrypt", h, ck.CKM_RSA_PKCS, pub) == 0
    rv, _, ct = raw.output_call("C_Encrypt", h, b"secret", 256)
    assert rv == 0
    assert raw.init("Decrypt", h, ck.CKM_RSA_PKCS, priv) == 0
    assert raw.output_call("C_Decrypt", h, ct, 256)[0] == ck.CKR_USER_NOT_LOGGED_IN
    assert raw.init("Decrypt", h, ck.CKM_RSA_PKCS, priv) == 0
    assert raw.login(h, PIN, ck.CKU_CONTEXT_SPECIFIC) == 0
    assert raw.output_call("C_Decrypt", h, ct, 256)[2] == b"secret"
    # a key without the attribute needs nothing
    pub2, priv2 = raw.rsa_pair(h)
    assert raw.init("Sign", h, ck.CKM_SHA256_RSA_PKCS, priv2) == 0
    assert raw.output_call("C_Sign", h, data, 256)[0] == 0
    # a context-specific login needs a logged-in user
    assert raw.logout(h) == 0
    assert raw.login(h, PIN, ck.CKU_CONTEXT_SPECIFIC) == ck.CKR_USER_NOT_LOGGED_IN


def test_pin_helpers_are_distinct():
    assert SO_PIN != PIN and SO_NAME != "crypto1" and os.sep
