"""GPDG: a digest that runs in the device, so a secret key's value can be part of it.

The library digests data itself (no key is involved); C_DigestKey moves the operation here:
init carries the data digested so far, an update may name a secret key whose value is fed
into the digest inside the device (sensitive keys too: the value never leaves), and final
returns the digest. Phases as the other operation commands: I, U, F, A.
"""
from __future__ import annotations

import hashlib
from typing import Any

from fxpkcs11 import ck
from vhsm.commands.keys import resolve
from vhsm.excrypt import DeviceError, Phase, Tag

DIGESTS = {ck.CKM_SHA_1: "sha1", ck.CKM_SHA224: "sha224", ck.CKM_SHA256: "sha256", ck.CKM_SHA384: "sha384",
           ck.CKM_SHA512: "sha512"}
for _name, _algo in (("CKM_SHA512_224", "sha512_224"), ("CKM_SHA512_256", "sha512_256"),
                     ("CKM_SHA3_224", "sha3_224"), ("CKM_SHA3_256", "sha3_256"), ("CKM_SHA3_384", "sha3_384"),
                     ("CKM_SHA3_512", "sha3_512"), ("CKM_MD5", "md5")):
    if hasattr(ck, _name) and _algo in hashlib.algorithms_available:
        DIGESTS[getattr(ck, _name)] = _algo


def digest_key_value(conn: Any, role: dict, ref: Any) -> bytes:
    """The value a key contributes to C_DigestKey: secret keys only."""
    obj = resolve(conn, role, ref, ck.CKR_KEY_HANDLE_INVALID)
    if obj.cls not in (ck.CKO_SECRET_KEY, ck.CKO_PRIVATE_KEY, ck.CKO_PUBLIC_KEY):
        raise DeviceError(ck.CKR_KEY_HANDLE_INVALID, f"object {obj.ref} is not a key")
    if obj.cls != ck.CKO_SECRET_KEY:
        raise DeviceError(ck.CKR_KEY_INDIGESTIBLE, "only secret keys can be digested (C_DigestKey)")
    return conn.objects.load(obj)


def digest(conn: Any, role: dict, f: dict) -> dict:
    phase = f.get(Tag.PHASE, Phase.INIT)
    if phase == Phase.INIT:
        name = DIGESTS.get(f.get(Tag.MECHANISM))
        if name is None:
            raise DeviceError(ck.CKR_MECHANISM_INVALID, f"{ck.name(f.get(Tag.MECHANISM) or 0, 'CKM_')} is not a digest")
        h = hashlib.new(name)
        h.update(f.get(Tag.DATA) or b"")
        cid = conn.device.next_context_id()
        conn.contexts[cid] = (f.get(Tag.SESSION, 0), "GPDG", h)
        return {Tag.CONTEXT: cid}
    cid = f.get(Tag.CONTEXT)
    entry = conn.contexts.get(cid)
    if entry is None or entry[1] != "GPDG":
        raise DeviceError(ck.CKR_OPERATION_NOT_INITIALIZED, f"no digest operation {cid}")
    h = entry[2]
    if phase == Phase.ABORT:
        conn.contexts.pop(cid, None)
        return {}
    try:
        if phase == Phase.UPDATE:
            if f.get(Tag.OBJECT) is not None:
                h.update(digest_key_value(conn, role, f.get(Tag.OBJECT)))
            h.update(f.get(Tag.DATA) or b"")
            return {}
        if phase != Phase.FINAL:
            raise DeviceError(ck.CKR_ARGUMENTS_BAD, f"unknown phase {phase!r}")
        h.update(f.get(Tag.DATA) or b"")
        conn.contexts.pop(cid, None)
        return {Tag.RESULT: h.digest()}
    except DeviceError:
        conn.contexts.pop(cid, None)
        raise


HANDLERS = {"GPDG": digest}
