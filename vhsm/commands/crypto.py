"""Encrypt, decrypt, sign, verify and MAC commands, in init / update / final phases.

Init checks the key against the mechanism and keeps a context on the connection; update
and final feed it; final or any error drops it, so a failed step ends the operation.
"""
from __future__ import annotations

from typing import Any, Callable

from fxpkcs11 import ck
from vhsm.commands.keys import resolve
from vhsm.crypto import mechanisms as mechs
from vhsm.excrypt import DeviceError, Phase, Tag
from vhsm.p11 import attributes as rules


def _symmetric(decrypt: bool) -> Callable:
    def make(conn: Any, obj: Any, mech: int, param: Any) -> Any:
        return mechs.symmetric_context(mech, param, conn.objects.load(obj), obj.attrs[ck.CKA_KEY_TYPE], decrypt)
    return make


def _rsa_cipher(decrypt: bool) -> Callable:
    def make(conn: Any, obj: Any, mech: int, param: Any) -> Any:
        if mech not in mechs.RSA_CIPHER_MECHS:
            raise DeviceError(ck.CKR_MECHANISM_INVALID, f"{ck.name(mech, 'CKM_')} is not an RSA cipher")
        if mech == ck.CKM_RSA_PKCS_OAEP:
            mechs._oaep(param)  # a bad OAEP parameter fails the init, not the first data call
        if decrypt:
            key = conn.objects.load(obj)
            return mechs.WholeInput(lambda d: mechs.rsa_decrypt(mech, param, key, d))
        key = conn.objects.public_key(obj)
        return mechs.WholeInput(lambda d: mechs.rsa_encrypt(mech, param, key, d))
    return make


def _sign(conn: Any, obj: Any, mech: int, param: Any) -> Any:
    return mechs.sign_context(mech, param, conn.objects.load(obj), obj.attrs[ck.CKA_KEY_TYPE])


def _verify(conn: Any, obj: Any, mech: int, param: Any) -> Any:
    return mechs.verify_context(mech, param, conn.objects.public_key(obj), obj.attrs[ck.CKA_KEY_TYPE])


def _mac(conn: Any, obj: Any, mech: int, param: Any) -> Any:
    return mechs.mac_context(mech, param, conn.objects.load(obj), obj.attrs[ck.CKA_KEY_TYPE])


# code -> (key class, usage attribute, key type allowed (None: any), context factory, output?)
OPERATIONS: dict[str, tuple[int, int, int | None, Callable, bool]] = {
    "GPSE": (ck.CKO_SECRET_KEY, ck.CKA_ENCRYPT, None, _symmetric(False), True),
    "GPSD": (ck.CKO_SECRET_KEY, ck.CKA_DECRYPT, None, _symmetric(True), True),
    "GPAE": (ck.CKO_PUBLIC_KEY, ck.CKA_ENCRYPT, ck.CKK_RSA, _rsa_cipher(False), True),
    "GPAD": (ck.CKO_PRIVATE_KEY, ck.CKA_DECRYPT, ck.CKK_RSA, _rsa_cipher(True), True),
    "GPAS": (ck.CKO_PRIVATE_KEY, ck.CKA_SIGN, None, _sign, True),
    "GPAV": (ck.CKO_PUBLIC_KEY, ck.CKA_VERIFY, None, _verify, False),
    "GPMC": (ck.CKO_SECRET_KEY, ck.CKA_SIGN, None, _mac, True),
    "GPMV": (ck.CKO_SECRET_KEY, ck.CKA_VERIFY, None, _mac, False),
}


def _init(conn: Any, role: dict, f: dict, code: str) -> dict:
    cls, usage, kt, factory, _ = OPERATIONS[code]
    obj = resolve(conn, role, f.get(Tag.OBJECT), ck.CKR_KEY_HANDLE_INVALID)
    if obj.cls not in (ck.CKO_SECRET_KEY, ck.CKO_PRIVATE_KEY, ck.CKO_PUBLIC_KEY):
        raise DeviceError(ck.CKR_KEY_HANDLE_INVALID, f"object {obj.ref} is not a key")
    mech = f.get(Tag.MECHANISM)
    if obj.cls != cls or (kt is not None and obj.attrs.get(ck.CKA_KEY_TYPE) != kt):
        raise DeviceError(ck.CKR_KEY_TYPE_INCONSISTENT,
                          f"{code} needs a {ck.name(cls, 'CKO_')} for {ck.name(mech or 0, 'CKM_')}")
    rules.require_usage(obj.attrs, usage, mech)
    ctx = factory(conn, obj, mech, f.get(Tag.MECH_PARAM))
    cid = conn.device.next_context_id()
    conn.contexts[cid] = (f.get(Tag.SESSION, 0), code, ctx)
    return {Tag.CONTEXT: cid}


def _context(conn: Any, f: dict, code: str) -> tuple[int, Any]:
    cid = f.get(Tag.CONTEXT)
    entry = conn.contexts.get(cid)
    if entry is None or entry[1] != code:
        raise DeviceError(ck.CKR_OPERATION_NOT_INITIALIZED, f"no {code} operation {cid}")
    return cid, entry[2]


def operation(code: str) -> Callable:
    produces = OPERATIONS[code][4]

    def handle(conn: Any, role: dict, f: dict) -> dict:
        phase = f.get(Tag.PHASE, Phase.INIT)
        if phase == Phase.INIT:
            return _init(conn, role, f, code)
        cid, ctx = _context(conn, f, code)
        if phase == Phase.ABORT:
            conn.contexts.pop(cid, None)
            return {}
        data = f.get(Tag.DATA) or b""
        if type(data) is memoryview and not getattr(ctx, "takes_views", False):
            data = bytes(data)  # an in-process caller's buffer: only some contexts read it as is
        try:
            if phase == Phase.UPDATE:
                out = ctx.update(data)
                return {Tag.RESULT: out} if produces and out is not None else {}
            if phase != Phase.FINAL:
                raise DeviceError(ck.CKR_ARGUMENTS_BAD, f"unknown phase {phase!r}")
            conn.contexts.pop(cid, None)
            if produces:
                return {Tag.RESULT: ctx.final(data)}
            ctx.final(data, f.get(Tag.SIGNATURE) or b"")
            return {}
        except DeviceError:
            conn.contexts.pop(cid, None)
            raise
        except ValueError as e:
            conn.contexts.pop(cid, None)
            raise DeviceError(ck.CKR_FUNCTION_FAILED, f"{code}: {e}") from None
    return handle


HANDLERS = {code: operation(code) for code in OPERATIONS}
