"""GPSR / GPVR: RSA signatures with message recovery (C_SignRecover, C_VerifyRecover).

Raw RSA only: CKM_RSA_PKCS (PKCS #1 v1.5 block type 1 around the data, data at most k-11
bytes) and CKM_RSA_X_509 (the data as a number below the modulus). Single-part: init checks
the key (CKA_SIGN_RECOVER / CKA_VERIFY_RECOVER and CKA_ALLOWED_MECHANISMS), final computes.
"""
from __future__ import annotations

from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric import rsa

from fxpkcs11 import ck
from vhsm.commands.keys import resolve
from vhsm.excrypt import DeviceError, Phase, Tag
from vhsm.p11 import attributes as rules

MECHS = (ck.CKM_RSA_PKCS, ck.CKM_RSA_X_509)


def _size(n: int) -> int:
    return (n.bit_length() + 7) // 8


def _private_op(key: rsa.RSAPrivateKey, m: int) -> int:
    p = key.private_numbers()
    m1 = pow(m, p.dmp1, p.p)
    m2 = pow(m, p.dmq1, p.q)
    h = (p.iqmp * (m1 - m2)) % p.p
    return m2 + h * p.q


def sign_recover(key: rsa.RSAPrivateKey, mech: int, data: bytes) -> bytes:
    n = key.private_numbers().public_numbers.n
    k = _size(n)
    if mech == ck.CKM_RSA_PKCS:
        if len(data) > k - 11:
            raise DeviceError(ck.CKR_DATA_LEN_RANGE, f"CKM_RSA_PKCS signs at most {k - 11} bytes with this key")
        block = b"\x00\x01" + b"\xff" * (k - 3 - len(data)) + b"\x00" + data
    else:
        if len(data) > k:
            raise DeviceError(ck.CKR_DATA_LEN_RANGE, f"CKM_RSA_X_509 signs at most {k} bytes with this key")
        block = data
    m = int.from_bytes(block, "big")
    if m >= n:
        raise DeviceError(ck.CKR_DATA_INVALID, "the data is not below the modulus")
    return _private_op(key, m).to_bytes(k, "big")


def verify_recover(key: rsa.RSAPublicKey, mech: int, signature: bytes) -> bytes:
    pn = key.public_numbers()
    k = _size(pn.n)
    if len(signature) != k:
        raise DeviceError(ck.CKR_SIGNATURE_LEN_RANGE, f"a signature with this key is {k} bytes, not {len(signature)}")
    s = int.from_bytes(signature, "big")
    if s >= pn.n:
        raise DeviceError(ck.CKR_SIGNATURE_INVALID, "the signature is not below the modulus")
    block = pow(s, pn.e, pn.n).to_bytes(k, "big")
    if mech == ck.CKM_RSA_X_509:
        return block
    if block[:2] != b"\x00\x01":
        raise DeviceError(ck.CKR_SIGNATURE_INVALID, "not a PKCS #1 v1.5 signature block")
    end = block.find(b"\x00", 2)
    if end < 10 or any(b != 0xFF for b in block[2:end]):
        raise DeviceError(ck.CKR_SIGNATURE_INVALID, "not a PKCS #1 v1.5 signature block")
    return block[end + 1:]


def _operation(code: str, cls: int, usage: int, run: Callable[[Any, Any, int, bytes], bytes]) -> Callable:
    def handle(conn: Any, role: dict, f: dict) -> dict:
        phase = f.get(Tag.PHASE, Phase.INIT)
        if phase == Phase.INIT:
            obj = resolve(conn, role, f.get(Tag.OBJECT), ck.CKR_KEY_HANDLE_INVALID)
            if obj.cls not in (ck.CKO_SECRET_KEY, ck.CKO_PRIVATE_KEY, ck.CKO_PUBLIC_KEY):
                raise DeviceError(ck.CKR_KEY_HANDLE_INVALID, f"object {obj.ref} is not a key")
            mech = f.get(Tag.MECHANISM)
            if mech not in MECHS:
                raise DeviceError(ck.CKR_MECHANISM_INVALID,
                                  f"{ck.name(mech or 0, 'CKM_')} has no message recovery here")
            if f.get(Tag.MECH_PARAM) not in (None, b"", {}):
                raise DeviceError(ck.CKR_MECHANISM_PARAM_INVALID, "raw RSA takes no parameter")
            if obj.cls != cls or obj.attrs.get(ck.CKA_KEY_TYPE) != ck.CKK_RSA:
                raise DeviceError(ck.CKR_KEY_TYPE_INCONSISTENT,
                                  f"{code} needs an RSA {ck.name(cls, 'CKO_')} for {ck.name(mech, 'CKM_')}")
            rules.require_usage(obj.attrs, usage, mech)
            cid = conn.device.next_context_id()
            conn.contexts[cid] = (f.get(Tag.SESSION, 0), code, (obj, mech))
            return {Tag.CONTEXT: cid}
        cid = f.get(Tag.CONTEXT)
        entry = conn.contexts.get(cid)
        if entry is None or entry[1] != code:
            raise DeviceError(ck.CKR_OPERATION_NOT_INITIALIZED, f"no {code} operation {cid}")
        conn.contexts.pop(cid, None)
        if phase == Phase.ABORT:
            return {}
        if phase != Phase.FINAL:
            raise DeviceError(ck.CKR_FUNCTION_NOT_SUPPORTED, f"{code} is single-part")
        obj, mech = entry[2]
        key = conn.objects.load(obj) if cls == ck.CKO_PRIVATE_KEY else conn.objects.public_key(obj)
        data = f.get(Tag.SIGNATURE) if code == "GPVR" else f.get(Tag.DATA)
        return {Tag.RESULT: run(key, None, mech, data or b"")}
    return handle


HANDLERS = {
    "GPSR": _operation("GPSR", ck.CKO_PRIVATE_KEY, ck.CKA_SIGN_RECOVER, lambda k, _, m, d: sign_recover(k, m, d)),
    "GPVR": _operation("GPVR", ck.CKO_PUBLIC_KEY, ck.CKA_VERIFY_RECOVER, lambda k, _, m, d: verify_recover(k, m, d)),
}
