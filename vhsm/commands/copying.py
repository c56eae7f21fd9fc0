"""GPKC: copy an object (C_CopyObject), with the changes its template asks for.

The copy gets a new reference (a new key table slot for a token object) and the same key
material. What a copy may change:

- CKA_TOKEN and CKA_PRIVATE (a session object copied to the token, or the other way);
- CKA_MODIFIABLE and CKA_COPYABLE only to false, CKA_DESTROYABLE either way;
- when the object is modifiable, whatever C_SetAttributeValue could change, under the same
  rules (CKA_SENSITIVE only to true, CKA_EXTRACTABLE only to false, CKA_TRUSTED only by the
  security officer, CKA_WRAP and CKA_DECRYPT not turned on together ...); when it is not,
  nothing else (CKR_ATTRIBUTE_READ_ONLY).

An object with CKA_COPYABLE false is not copied (CKR_ACTION_PROHIBITED).
"""
from __future__ import annotations

from typing import Any

from fxpkcs11 import ck
from vhsm import policy
from vhsm.commands.keys import check_writable, resolve
from vhsm.crypto import keys as keymat
from vhsm.excrypt import DeviceError, Tag
from vhsm.p11 import attributes as rules
from vhsm.p11 import objectrules

STORAGE = {ck.CKA_TOKEN, ck.CKA_PRIVATE, ck.CKA_MODIFIABLE, ck.CKA_COPYABLE, ck.CKA_DESTROYABLE}
ONLY_TO_FALSE = {ck.CKA_MODIFIABLE, ck.CKA_COPYABLE}


def check_copy(conn: Any, attrs: dict[int, Any], changes: dict[int, Any]) -> None:
    allowed = rules.allowed_for(attrs[ck.CKA_CLASS], attrs.get(ck.CKA_KEY_TYPE))
    ordinary: dict[int, Any] = {}
    for t, v in changes.items():
        if t not in allowed:
            raise DeviceError(ck.CKR_ATTRIBUTE_TYPE_INVALID, f"attribute {ck.name(t, 'CKA_')} is not valid here")
        if attrs.get(t) == v:
            continue
        if t in STORAGE:
            if t in ONLY_TO_FALSE and v:
                raise DeviceError(ck.CKR_ATTRIBUTE_READ_ONLY, f"a copy cannot set {ck.name(t, 'CKA_')} back to true")
            continue
        ordinary[t] = v
    if not ordinary:
        objectrules.check_change(conn, attrs, changes)
        return
    if not attrs.get(ck.CKA_MODIFIABLE, True):
        raise DeviceError(ck.CKR_ATTRIBUTE_READ_ONLY,
                          "the object is not modifiable: its copy may change only CKA_TOKEN, CKA_PRIVATE, "
                          "CKA_MODIFIABLE, CKA_COPYABLE and CKA_DESTROYABLE")
    objectrules.check_change(conn, attrs, changes)
    rules.check_set(attrs, ordinary, is_so=bool(getattr(conn, "so", False)))


def copy_object(conn: Any, role: dict, f: dict) -> dict:
    obj = resolve(conn, role, f.get(Tag.OBJECT))
    if not obj.attrs.get(ck.CKA_COPYABLE, True):
        raise DeviceError(ck.CKR_ACTION_PROHIBITED, "object is not copyable (CKA_COPYABLE is false)")
    changes = dict(f.get(Tag.TEMPLATE) or {})
    check_copy(conn, obj.attrs, changes)
    attrs = dict(obj.attrs)
    attrs.update(changes)
    attrs.pop(ck.CKA_UNIQUE_ID, None)
    secret: bytes | None = None
    if obj.cls in rules.SECRET_ATTRS:
        material = conn.objects.load(obj)
        secret = material if obj.cls == ck.CKO_SECRET_KEY else keymat.private_der(material)
    # Not store_new: a copy of a key the security officer trusted stays trusted.
    check_writable(conn, f, attrs)
    new = conn.objects.create(attrs, secret, role["name"], policy.slot_ranges(role), f.get(Tag.SESSION, 0))
    return {Tag.OBJECT: new.ref}


HANDLERS = {"GPKC": copy_object}
