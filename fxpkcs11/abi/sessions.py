"""Session management and login."""
from __future__ import annotations

from fxpkcs11 import ck, state
from fxpkcs11.abi import marshal as m
from fxpkcs11.errors import CKRError


def C_OpenSession(slot_id, flags, p_application, notify, ph_session) -> int:
    li = state.current()
    token = li.token(slot_id)
    m.need(ph_session, "phSession")
    if not flags & ck.CKF_SERIAL_SESSION:
        return ck.CKR_SESSION_PARALLEL_NOT_SUPPORTED
    s = li.open_session(token, bool(flags & ck.CKF_RW_SESSION))
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


def C_Login(h_session, user_type, p_pin, ul_pin_len) -> int:
    s = state.current().session(h_session)
    pin = m.read_bytes(p_pin, ul_pin_len)
    if user_type == ck.CKU_CONTEXT_SPECIFIC:
        raise CKRError(ck.CKR_OPERATION_NOT_INITIALIZED, "no operation needs context-specific login")
    if user_type != ck.CKU_USER:
        if user_type == ck.CKU_SO:
            raise CKRError(ck.CKR_USER_TYPE_INVALID, "security officer login is not available on this token")
        raise CKRError(ck.CKR_USER_TYPE_INVALID, f"unknown user type {user_type}")
    if s.token.user is not None:
        return ck.CKR_USER_ALREADY_LOGGED_IN
    s.token.login(pin)
    return ck.CKR_OK


def C_Logout(h_session) -> int:
    s = state.current().session(h_session)
    if s.token.user is None:
        return ck.CKR_USER_NOT_LOGGED_IN
    s.token.logout()
    return ck.CKR_OK
