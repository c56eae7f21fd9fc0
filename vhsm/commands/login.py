"""Session control: log in and out, open and close sessions."""
from __future__ import annotations

from typing import Any

from fxpkcs11 import ck
from vhsm import factory
from vhsm.excrypt import DeviceError, Tag
from vhsm.passwords import verify_password


def login(conn: Any, role: dict, f: dict) -> dict:
    store = conn.device.store
    name, password = f.get(Tag.USER) or "", f.get(Tag.PASSWORD) or ""
    if conn.identity is not None:
        raise DeviceError(ck.CKR_USER_ALREADY_LOGGED_IN, f"identity {conn.identity!r} is already logged in")
    ident = store.get_identity(name)
    if ident is None:
        raise DeviceError(ck.CKR_PIN_INCORRECT, f"no identity named {name!r}")
    target = conn.device.role(ident["role"])
    if target["kind"] != "application":
        raise DeviceError(ck.CKR_PIN_INCORRECT,
                          f"identity {name!r} is in role {target['name']!r}, not an application partition; "
                          "administrators cannot log in through PKCS #11")
    if not verify_password(password, ident["password_hash"]):
        ident["failed_logins"] = ident.get("failed_logins", 0) + 1
        store.put_identity(ident)
        raise DeviceError(ck.CKR_PIN_INCORRECT, f"wrong password for identity {name!r}")
    if ident.get("failed_logins"):
        ident["failed_logins"] = 0
        store.put_identity(ident)
    conn.identity, conn.role_name = name, target["name"]
    return {Tag.ROLE: target["name"]}


def logout(conn: Any, role: dict, f: dict) -> dict:
    if conn.identity is None:
        raise DeviceError(ck.CKR_USER_NOT_LOGGED_IN, "no identity is logged in")
    conn.identity, conn.role_name = None, factory.TRANSACTION_PROCESSING
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
