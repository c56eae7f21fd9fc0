"""Session control: log in and out, open and close sessions.

LOGI logs an identity of an application partition in: as its normal user (CKU_USER), as
the partition's security officer (CKU_SO: an identity added with --security-officer), or
again for one operation (CKU_CONTEXT_SPECIFIC: a key with CKA_ALWAYS_AUTHENTICATE). Every
wrong password counts against the identity; after the device's max-login-failures in a
row it is locked (CKR_PIN_LOCKED) until an administrator unlocks it. Failures are audited.
"""
from __future__ import annotations

import threading
from typing import Any

from fxpkcs11 import ck
from vhsm import factory, settings
from vhsm.excrypt import DeviceError, Tag
from vhsm.passwords import verify_password

_COUNT_LOCK = threading.Lock()
SO_FLAG = "security_officer"
PIN_RESET_FLAG = "pin_reset"  # set by C_InitToken: the user PIN must be set again (C_InitPIN)
USER_TYPES = {ck.CKU_USER: "user", ck.CKU_SO: "security officer", ck.CKU_CONTEXT_SPECIFIC: "context-specific"}


def is_so(ident: dict) -> bool:
    return bool((ident.get("flags") or {}).get(SO_FLAG))


def audit(conn: Any, ident: dict | None, name: str, code: str, result: str, text: str) -> None:
    try:
        conn.device.store.append_audit({"identity": name, "role": (ident or {}).get("role") or "-",
                                        "command": code, "result": result, "text": text})
    except Exception:  # StoreError: the refusal stands even when it cannot be written down
        pass


def failures(store: Any, ident: dict | None) -> int:
    return int((ident or {}).get("failed_logins") or 0)


def check_password(conn: Any, name: str, password: str, code: str) -> dict:
    """The identity named, after checking its password against the lockout rule.

    A locked identity is refused before its password is looked at; a wrong password counts
    one failure (audited), the right one clears the count."""
    store = conn.device.store
    ident = store.get_identity(name)
    if ident is None:
        audit(conn, None, name or "-", code, "refused", "no such identity")
        raise DeviceError(ck.CKR_PIN_INCORRECT, f"no identity named {name!r}")
    limit = settings.max_login_failures(store)
    count = failures(store, ident)
    if count >= limit:
        audit(conn, ident, name, code, "refused", f"identity is locked after {count} wrong PINs")
        raise DeviceError(ck.CKR_PIN_LOCKED, f"identity {name!r} is locked after {count} wrong PINs; "
                                             f"an administrator unlocks it (`vhsm identity unlock --name {name}`)")
    if not verify_password(password, ident["password_hash"]):
        with _COUNT_LOCK:  # parallel wrong PINs each count: re-read, then add one
            ident = store.get_identity(name) or ident
            count = failures(store, ident) + 1
            ident["failed_logins"] = count
            store.put_identity(ident)
        locked = count >= limit
        audit(conn, ident, name, code, "refused",
              f"wrong PIN ({count} of {limit})" + ("; identity locked" if locked else ""))
        raise DeviceError(ck.CKR_PIN_INCORRECT, f"wrong password for identity {name!r} ({count} of {limit} "
                                                "failures before it locks)")
    if count:
        with _COUNT_LOCK:
            ident = store.get_identity(name) or ident
            ident["failed_logins"] = 0
            store.put_identity(ident)
    return ident


def partition_of(conn: Any, ident: dict) -> dict:
    target = conn.device.role(ident["role"])
    if target["kind"] != "application":
        raise DeviceError(ck.CKR_PIN_INCORRECT,
                          f"identity {ident['name']!r} is in role {target['name']!r}, not an application "
                          "partition; administrators cannot log in through PKCS #11")
    return target


def login(conn: Any, role: dict, f: dict) -> dict:
    name, password = f.get(Tag.USER) or "", f.get(Tag.PASSWORD) or ""
    user_type = f.get(Tag.USER_TYPE)
    if user_type == ck.CKU_CONTEXT_SPECIFIC:
        return _context_login(conn, f, name, password)
    if user_type not in (None, ck.CKU_USER, ck.CKU_SO):
        raise DeviceError(ck.CKR_USER_TYPE_INVALID, f"unknown user type {user_type}")
    if conn.identity is not None:
        same = user_type is None or (user_type == ck.CKU_SO) == conn.so
        raise DeviceError(ck.CKR_USER_ALREADY_LOGGED_IN if same else ck.CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
                          f"identity {conn.identity!r} is already logged in")
    ident = conn.device.store.get_identity(name)
    if ident is not None:
        partition_of(conn, ident)
        officer = is_so(ident)
        # Without a user type (a re-login after a reconnect) the identity says which it is.
        want_so = officer if user_type is None else user_type == ck.CKU_SO
        if officer != want_so:
            audit(conn, ident, name, "LOGI", "refused", f"not a {USER_TYPES[ck.CKU_SO if want_so else ck.CKU_USER]}")
            raise DeviceError(ck.CKR_PIN_INCORRECT,
                              f"identity {name!r} is {'a security officer' if officer else 'not a security officer'}"
                              f" of its partition; log it in as {'CKU_SO' if officer else 'CKU_USER'}")
    ident = check_password(conn, name, password, "LOGI")
    target = partition_of(conn, ident)
    if not is_so(ident) and (ident.get("flags") or {}).get(PIN_RESET_FLAG):
        raise DeviceError(ck.CKR_USER_PIN_NOT_INITIALIZED,
                          f"the token of partition {target['name']!r} was initialised; the security officer "
                          "sets this identity's PIN again (C_InitPIN)")
    conn.identity, conn.role_name, conn.so = name, target["name"], is_so(ident)
    return {Tag.ROLE: target["name"], Tag.USER_TYPE: ck.CKU_SO if conn.so else ck.CKU_USER}


def _context_login(conn: Any, f: dict, name: str, password: str) -> dict:
    """C_Login(CKU_CONTEXT_SPECIFIC): the logged-in identity gives its password again for the
    operation (context) that needs it."""
    if conn.identity is None:
        raise DeviceError(ck.CKR_USER_NOT_LOGGED_IN, "context-specific login needs a logged-in user")
    if name and name != conn.identity:
        raise DeviceError(ck.CKR_PIN_INCORRECT, f"context-specific login is for {conn.identity!r}, not {name!r}")
    cid = f.get(Tag.CONTEXT)
    if cid not in conn.contexts:
        raise DeviceError(ck.CKR_OPERATION_NOT_INITIALIZED, f"no operation {cid} to authenticate")
    check_password(conn, conn.identity, password, "LOGI")
    conn.pending_auth.discard(cid)
    return {Tag.ROLE: conn.role_name}


def logout(conn: Any, role: dict, f: dict) -> dict:
    if conn.identity is None:
        raise DeviceError(ck.CKR_USER_NOT_LOGGED_IN, "no identity is logged in")
    conn.identity, conn.role_name, conn.so = None, factory.TRANSACTION_PROCESSING, False
    conn.pending_auth.clear()
    return {}


def session_open(conn: Any, role: dict, f: dict) -> dict:
    return {}


def session_close(conn: Any, role: dict, f: dict) -> dict:
    session = f.get(Tag.SESSION, 0)
    if session:
        conn.drop_session(session)
    else:
        conn.reset()
    return {}


HANDLERS = {"LOGI": login, "LOGO": logout, "SESO": session_open, "SESC": session_close}
