"""The one dispatcher: policy first, then the command's handler, errors as replies."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fxpkcs11 import ck
from vhsm import contextauth, policy
from vhsm.commands import copying, crypto, derive, digest, dlog, info, keys, login, recover, token
from vhsm.commands.catalog import BY_CODE, CommandInfo
from vhsm.excrypt import DeviceError
from vhsm.store import StoreError, StoreFull

if TYPE_CHECKING:
    from vhsm.device import Connection

log = logging.getLogger("vhsm")

HANDLERS = {**info.HANDLERS, **login.HANDLERS, **keys.HANDLERS, **crypto.HANDLERS, **token.HANDLERS,
            **copying.HANDLERS, **digest.HANDLERS, **recover.HANDLERS,
            **derive.HANDLERS, **dlog.HANDLERS}
assert set(HANDLERS) == set(BY_CODE), sorted(set(HANDLERS) ^ set(BY_CODE))


def run(conn: "Connection", code: str, f: dict) -> dict:
    """A command's reply fields; a refusal or failure raises DeviceError (logged here)."""
    info = BY_CODE.get(code)
    if info is None:
        raise DeviceError(ck.CKR_FUNCTION_NOT_SUPPORTED, f"unknown command {code!r}")
    try:
        role = _admit(conn, info)
        guarded = code in contextauth.GUARDED
        if guarded:
            contextauth.before(conn, code, f)
        fields = HANDLERS[code](conn, role, f)
        if guarded:
            contextauth.after(conn, code, f, fields)
        return fields
    except DeviceError as e:
        log.info("%s refused for role %r: %s", code, conn.role_name, e.text)
        raise
    except StoreError as e:
        log.error("%s: store failure: %s", code, e)
        full = isinstance(e, StoreFull)  # CKR_DEVICE_MEMORY: "the token has insufficient memory"
        raise DeviceError(ck.CKR_DEVICE_MEMORY if full else ck.CKR_DEVICE_ERROR, f"key table: {e}") from None
    except Exception:
        # One bad command must not take the device down for everyone else.
        log.exception("%s: internal error", code)
        raise DeviceError(ck.CKR_DEVICE_ERROR, f"{code}: internal error in the device") from None


def _admit(conn: "Connection", info: CommandInfo) -> dict:
    """The policy check every command passes: the role's whitelist and the FTK. A command
    admitted once is admitted again without the lookups while the store's generation (which
    every change of roles, settings and secure memory bumps) and the connection's role stay
    the same; a partition in learn mode records each command, so it is never cached."""
    device = conn.device
    key = (device.store.generation(), conn.role_name)
    admitted = conn.admitted
    if admitted is not None and admitted[0] == key and info.code in admitted[1]:
        return admitted[2]
    device.refresh()
    try:
        role = device.role(conn.role_name)
    except DeviceError:
        if not info.session_control:
            raise
        # The connection's role was deleted meanwhile: it may still log out and close
        # its sessions (releasing their objects), as session control runs for every role.
        return {"name": conn.role_name, "kind": "deleted", "perms": [], "key_ranges": [],
                "commands": [], "settings": {}}
    policy.authorize(role, info, device, conn.identity)
    if info.needs_ftk:
        device.require_ftk()
    if not policy.learning(role):
        if admitted is not None and admitted[0] == key and admitted[2] is role:
            admitted[1].add(info.code)
        else:
            conn.admitted = (key, {info.code}, role)
    return role
