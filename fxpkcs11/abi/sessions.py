"""Session management, login and PINs, operation state, and the parallel-function stubs."""
from __future__ import annotations

from fxpkcs11 import ck, state
from fxpkcs11.abi import marshal as m
from fxpkcs11.errors import CKRError
from fxpkcs11.library import Session, pin_text
from vhsm.excrypt import Tag


def C_OpenSession(slot_id, flags, p_application, notify, ph_session) -> int:
    li = state.current()
    token = li.token(slot_id)
    m.need(ph_session, "phSession")
    if not flags & ck.CKF_SERIAL_SESSION:
        return ck.CKR_SESSION_PARALLEL_NOT_SUPPORTED
    rw = bool(flags & ck.CKF_RW_SESSION)
    if not rw and token.user == ck.CKU_SO:
        return ck.CKR_SESSION_READ_WRITE_SO_EXISTS
    s = li.open_session(token, rw)
    ph_session[0] = s.handle
    return ck.CKR_OK


def C_CloseSession(h_session) -> int:
    li = state.current()
    li.close_session(li.session(h_session))
    return ck.CKR_OK


def C_CloseAllSessions(slot_id) -> int:
    li = state.current()
    li.close_all(li.token(slot_id))
    return ck.CKR_OK


def C_GetSessionInfo(h_session, p_info) -> int:
    s = state.current().session(h_session)
    m.need(p_info, "pInfo")
    info = p_info[0]
    info.slotID = s.token.slot_id
    info.state = s.state
    info.flags = ck.CKF_SERIAL_SESSION | (ck.CKF_RW_SESSION if s.rw else 0)
    info.ulDeviceError = 0
    return ck.CKR_OK


# ------------------------------------------------------------------ login

def _login(s: Session, user_type: int, pin: bytes, username: str | None = None) -> int:
    if user_type == ck.CKU_CONTEXT_SPECIFIC:
        return _context_login(s, pin)
    if user_type not in (ck.CKU_USER, ck.CKU_SO):
        raise CKRError(ck.CKR_USER_TYPE_INVALID, f"unknown user type {user_type}")
    li = state.current()
    token = s.token
    with token.login_lock:
        if token.user is not None:
            return (ck.CKR_USER_ALREADY_LOGGED_IN if token.user == user_type
                    else ck.CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
        if user_type == ck.CKU_SO and any(not x.rw for h in token.sessions
                                          if (x := li.sessions.get(h)) is not None):
            return ck.CKR_SESSION_READ_ONLY_EXISTS
        token.login(pin, user_type, username)
    return ck.CKR_OK


# The operations a context-specific login can be for (a key with CKA_ALWAYS_AUTHENTICATE).
CONTEXT_KINDS = ("sign", "decrypt", "sign_recover")


def _context_login(s: Session, pin: bytes) -> int:
    """C_Login(CKU_CONTEXT_SPECIFIC): the user's PIN again, for the operation just started."""
    if s.token.user is None:
        raise CKRError(ck.CKR_USER_NOT_LOGGED_IN, "context-specific login needs a logged-in user")
    ops = [op for kind, op in s.ops.items() if kind in CONTEXT_KINDS and op.cid and not op.finished]
    if not ops:
        raise CKRError(ck.CKR_OPERATION_NOT_INITIALIZED, "no sign or decrypt operation needs a login")
    op = ops[-1]
    text = pin_text(pin)
    name = s.token.identity or ""
    prefix = name + ":"
    if not s.token.fixed_identity(s.token.user) and text.startswith(prefix):
        text = text[len(prefix):]  # the IDENTITY:PASSWORD form of the PIN
    s.call("LOGI", {Tag.USER_TYPE: ck.CKU_CONTEXT_SPECIFIC, Tag.USER: name, Tag.PASSWORD: text,
                    Tag.CONTEXT: op.cid})
    return ck.CKR_OK


def C_Login(h_session, user_type, p_pin, ul_pin_len) -> int:
    s = state.current().session(h_session)
    pin = m.read_bytes(p_pin, ul_pin_len)
    return _login(s, user_type, pin)


def C_LoginUser(h_session, user_type, p_pin, ul_pin_len, p_username, ul_username_len) -> int:
    """PKCS #11 3.0: log in naming the identity (the username); without one, as C_Login."""
    s = state.current().session(h_session)
    pin = m.read_bytes(p_pin, ul_pin_len)
    raw = m.read_bytes(p_username, ul_username_len)
    if not raw or user_type == ck.CKU_CONTEXT_SPECIFIC:
        if raw and user_type == ck.CKU_CONTEXT_SPECIFIC and raw.decode("utf-8", "replace") != s.token.identity:
            raise CKRError(ck.CKR_PIN_INCORRECT, "context-specific login is for the identity logged in")
        return _login(s, user_type, pin)
    try:
        username = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CKRError(ck.CKR_ARGUMENTS_BAD, "the username is not UTF-8") from None
    return _login(s, user_type, pin, username)


def C_Logout(h_session) -> int:
    s = state.current().session(h_session)
    with s.token.login_lock:
        if s.token.user is None:
            return ck.CKR_USER_NOT_LOGGED_IN
        s.token.logout()
    return ck.CKR_OK


# ------------------------------------------------------------------ PINs

def C_InitPIN(h_session, p_pin, ul_pin_len) -> int:
    """The security officer sets the normal user's PIN: the password of <CRYPTO-OPR>
    (without one, the PIN is IDENTITY:PASSWORD naming the user identity)."""
    s = state.current().session(h_session)
    pin = m.read_bytes(p_pin, ul_pin_len)
    if s.token.user != ck.CKU_SO:
        raise CKRError(ck.CKR_USER_NOT_LOGGED_IN, "C_InitPIN needs the security officer logged in")
    if not s.rw:
        raise CKRError(ck.CKR_SESSION_READ_ONLY, "C_InitPIN needs a read/write session")
    name, password = s.token.identity_and_password(pin, ck.CKU_USER)
    s.call("GPUI", {Tag.USER: name, Tag.PASSWORD: password})
    return ck.CKR_OK


def C_SetPIN(h_session, p_old, ul_old_len, p_new, ul_new_len) -> int:
    """The PIN of the identity logged in (the user's when no one is): old must match."""
    s = state.current().session(h_session)
    old = m.read_bytes(p_old, ul_old_len)
    new = pin_text(m.read_bytes(p_new, ul_new_len))
    if not s.rw:
        raise CKRError(ck.CKR_SESSION_READ_ONLY, "C_SetPIN needs a read/write session")
    token = s.token
    user_type = token.user if token.user is not None else ck.CKU_USER
    if token.identity:  # logged in (C_LoginUser may have named another identity): its own PIN
        name, old_password = token.identity, pin_text(old)
        if not token.fixed_identity(user_type) and old_password.startswith(name + ":"):
            old_password = old_password[len(name) + 1:]
    else:
        name, old_password = token.identity_and_password(old, user_type)
    if not token.fixed_identity(user_type) and new.startswith(name + ":"):
        new = new[len(name) + 1:]  # IDENTITY:PASSWORD form
    s.call("GPUC", {Tag.USER: name, Tag.PASSWORD: old_password, Tag.NEW_PASSWORD: new})
    if token.identity == name:
        token.transport.password_changed(name, new)
    return ck.CKR_OK


# ------------------------------------------------------------------ operation state

STATE_MAGIC = b"FXOS"
STATE_VERSION = 1


def C_GetOperationState(h_session, p_state, pul_len) -> int:
    """Digests only: the state is the mechanism and the data digested so far (hash objects
    cannot export their internal state, so the data is kept: up to digest.STATE_LIMIT bytes).
    Any other active operation, a digest past that limit or one that took a key
    (C_DigestKey) answers CKR_STATE_UNSAVEABLE."""
    from fxpkcs11.digest import DigestState
    s = state.current().session(h_session)
    m.need(pul_len, "pulOperationStateLen")
    if not s.ops:
        raise CKRError(ck.CKR_OPERATION_NOT_INITIALIZED, "no operation is active")
    if set(s.ops) != {"digest"}:
        raise CKRError(ck.CKR_STATE_UNSAVEABLE, f"the state of {', '.join(sorted(s.ops))} cannot be saved")
    op = s.ops["digest"]
    local = op.local
    if not isinstance(local, DigestState) or not local.saveable:
        raise CKRError(ck.CKR_STATE_UNSAVEABLE, "this digest can no longer be saved (it took a key, or more than "
                                                "the data kept for saving)")
    blob = (STATE_MAGIC + bytes([STATE_VERSION, op.mode]) + op.mech.to_bytes(8, "big") + bytes(local.kept))
    return m.write_out(blob, p_state, pul_len)


def C_SetOperationState(h_session, p_state, ul_len, h_encryption_key, h_authentication_key) -> int:
    from fxpkcs11 import mechs
    from fxpkcs11.digest import DigestState
    from fxpkcs11.operations import Operation
    s = state.current().session(h_session)
    blob = m.read_bytes(p_state, ul_len)
    if len(blob) < 14 or blob[:4] != STATE_MAGIC or blob[4] != STATE_VERSION or blob[5] > 2:
        raise CKRError(ck.CKR_SAVED_STATE_INVALID, "not an operation state saved by this library")
    mech = int.from_bytes(blob[6:14], "big")
    name = mechs.DIGESTS.get(mech)
    if name is None:
        raise CKRError(ck.CKR_SAVED_STATE_INVALID, "the saved state names no digest this library has")
    if h_encryption_key != ck.CK_INVALID_HANDLE or h_authentication_key != ck.CK_INVALID_HANDLE:
        raise CKRError(ck.CKR_KEY_NOT_NEEDED, "a digest state needs no key")
    for kind in list(s.ops):
        s.end(kind)
    op = Operation("", 0, mech, DigestState(name, mech, blob[14:]))
    op.mode = blob[5]
    s.ops["digest"] = op
    return ck.CKR_OK


# ------------------------------------------------------------------ cancelling, parallel functions

CANCEL_KINDS = {ck.CKF_ENCRYPT: ("encrypt",), ck.CKF_DECRYPT: ("decrypt",), ck.CKF_DIGEST: ("digest",),
                ck.CKF_SIGN: ("sign",), ck.CKF_VERIFY: ("verify",), ck.CKF_SIGN_RECOVER: ("sign_recover",),
                ck.CKF_VERIFY_RECOVER: ("verify_recover",)}


def C_SessionCancel(h_session, flags) -> int:
    """PKCS #11 3.0: end the session's operations named by the flags (an operation that is
    not active is no error). Message-based operations are not supported, so none is active."""
    s = state.current().session(h_session)
    for flag, kinds in CANCEL_KINDS.items():
        if flags & flag:
            for kind in kinds:
                s.end(kind)
    if flags & ck.CKF_FIND_OBJECTS:
        s.find = None
    return ck.CKR_OK


def C_GetFunctionStatus(h_session) -> int:
    state.current().session(h_session)
    return ck.CKR_FUNCTION_NOT_PARALLEL


def C_CancelFunction(h_session) -> int:
    state.current().session(h_session)
    return ck.CKR_FUNCTION_NOT_PARALLEL

