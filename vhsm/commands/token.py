"""Token and PIN commands: the PKCS #11 token functions mapped onto partitions and identities.

- GPUI (C_InitPIN): the partition's security officer sets the password of a user identity
  of the same partition.
- GPUC (C_SetPIN): an identity changes its own password; the old one must match (a wrong
  one counts toward the lockout like a wrong login).
- GPTI (C_InitToken): the partition's security officer empties the partition's key slots,
  gives the partition's token a label, and marks its user identities "PIN not initialised"
  until the SO sets their PINs again. Nothing outside the partition is touched.
"""
from __future__ import annotations

from typing import Any

from fxpkcs11 import ck
from vhsm.commands.info import MAX_PIN, MIN_PIN
from vhsm.commands.login import PIN_RESET_FLAG, audit, check_password, is_so
from vhsm.excrypt import DeviceError, Tag
from vhsm.passwords import hash_password

LABEL_MAX = 32


def check_pin(password: Any) -> str:
    if not isinstance(password, str):
        raise DeviceError(ck.CKR_PIN_INVALID, "a PIN is UTF-8 text")
    if not MIN_PIN <= len(password) <= MAX_PIN:
        raise DeviceError(ck.CKR_PIN_LEN_RANGE, f"a PIN is {MIN_PIN} to {MAX_PIN} characters, not {len(password)}")
    if any(ord(c) < 32 for c in password):
        raise DeviceError(ck.CKR_PIN_INVALID, "a PIN may not hold control characters")
    return password


def _require_so(conn: Any, what: str) -> None:
    if conn.identity is None or not conn.so:
        raise DeviceError(ck.CKR_USER_NOT_LOGGED_IN, f"{what} needs the partition's security officer logged in")


def init_pin(conn: Any, role: dict, f: dict) -> dict:
    _require_so(conn, "C_InitPIN")
    store = conn.device.store
    name = f.get(Tag.USER) or ""
    password = check_pin(f.get(Tag.PASSWORD))
    ident = store.get_identity(name)
    if ident is None or ident["role"] != conn.role_name or is_so(ident):
        raise DeviceError(ck.CKR_FUNCTION_FAILED, f"{name!r} is not a user identity of partition {conn.role_name!r}")
    ident["password_hash"] = hash_password(password)
    ident["flags"] = {k: v for k, v in (ident.get("flags") or {}).items() if k not in (PIN_RESET_FLAG,
                                                                                       "default_password")}
    store.put_identity(ident)
    audit(conn, ident, conn.identity, "GPUI", "ok", f"PIN of {name} set by the security officer")
    return {}


def set_pin(conn: Any, role: dict, f: dict) -> dict:
    store = conn.device.store
    name = f.get(Tag.USER) or conn.identity or ""
    if conn.identity is not None and name != conn.identity:
        raise DeviceError(ck.CKR_PIN_INCORRECT, f"{conn.identity!r} can change only its own PIN, not {name!r}")
    new = check_pin(f.get(Tag.NEW_PASSWORD))
    ident = store.get_identity(name)
    if ident is not None and conn.identity is None:
        if is_so(ident):
            raise DeviceError(ck.CKR_USER_NOT_LOGGED_IN, "the security officer changes its PIN when logged in")
        if conn.device.role(ident["role"])["kind"] != "application":
            raise DeviceError(ck.CKR_PIN_INCORRECT, f"identity {name!r} is not in an application partition")
    ident = check_password(conn, name, f.get(Tag.PASSWORD) or "", "GPUC")
    ident["password_hash"] = hash_password(new)
    ident["flags"] = {k: v for k, v in (ident.get("flags") or {}).items() if k != "default_password"}
    store.put_identity(ident)
    audit(conn, ident, name, "GPUC", "ok", "PIN changed by its owner")
    return {}


def init_token(conn: Any, role: dict, f: dict) -> dict:
    _require_so(conn, "C_InitToken")
    label = f.get(Tag.TOKEN_LABEL) or ""
    if not isinstance(label, str) or len(label.encode("utf-8")) > LABEL_MAX:
        raise DeviceError(ck.CKR_ARGUMENTS_BAD, f"a token label is at most {LABEL_MAX} bytes of UTF-8")
    store = conn.device.store
    partition = conn.role_name
    deleted = store.delete_keys_in(partition)
    r = store.get_role(partition)
    r["settings"] = {**(r.get("settings") or {}), "token_label": label.rstrip(" ")}
    store.put_role(r)
    for ident in store.list_identities():
        if ident["role"] == partition and not is_so(ident):
            ident["flags"] = {**(ident.get("flags") or {}), PIN_RESET_FLAG: True}
            store.put_identity(ident)
    audit(conn, None, conn.identity, "GPTI", "ok",
          f"token of partition {partition} initialised: {deleted} key slot(s) emptied, label {label.rstrip()!r}")
    return {Tag.DELETED: deleted}


HANDLERS = {"GPUI": init_pin, "GPUC": set_pin, "GPTI": init_token}
