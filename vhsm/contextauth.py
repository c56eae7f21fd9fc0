"""CKA_ALWAYS_AUTHENTICATE, enforced by the device.

An operation started with a private key that has CKA_ALWAYS_AUTHENTICATE true (sign,
decrypt, sign with recovery) is held until the logged-in user gives its PIN again for that
operation (LOGI with CKU_CONTEXT_SPECIFIC and the operation's context); until then its
update and final steps are refused with CKR_USER_NOT_LOGGED_IN and the operation ends.
The dispatcher calls `before` and `after` around every handler.
"""
from __future__ import annotations

from typing import Any

from fxpkcs11 import ck
from vhsm.excrypt import DeviceError, Phase, Tag

GUARDED = frozenset({"GPAS", "GPAD", "GPSR"})


def before(conn: Any, code: str, f: dict) -> None:
    if code not in GUARDED:
        return
    phase = f.get(Tag.PHASE, Phase.INIT)
    cid = f.get(Tag.CONTEXT)
    if phase in (Phase.UPDATE, Phase.FINAL) and cid in conn.pending_auth:
        conn.pending_auth.discard(cid)
        conn.contexts.pop(cid, None)
        raise DeviceError(ck.CKR_USER_NOT_LOGGED_IN,
                          "the key has CKA_ALWAYS_AUTHENTICATE: call C_Login(CKU_CONTEXT_SPECIFIC) after the "
                          "operation's init")
    if phase == Phase.ABORT:
        conn.pending_auth.discard(cid)


def after(conn: Any, code: str, f: dict, reply: dict) -> None:
    if code not in GUARDED or f.get(Tag.PHASE, Phase.INIT) != Phase.INIT:
        return
    cid = reply.get(Tag.CONTEXT)
    ref = f.get(Tag.OBJECT)
    obj = getattr(conn, "last_resolved", None)
    if obj is None or obj.ref != ref:  # not the key the handler resolved: look it up
        obj = conn.objects.get(ref) if isinstance(ref, int) and ref >= 0 else None
    if cid is not None and obj is not None and obj.attrs.get(ck.CKA_ALWAYS_AUTHENTICATE):
        conn.pending_auth.add(cid)
