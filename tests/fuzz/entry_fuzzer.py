"""Coverage-guided fuzzing of the provider's entry layer with atheris (libFuzzer).

    .venv/bin/python tests/fuzz/entry_fuzzer.py [libFuzzer flags] [CORPUS_DIR | CRASH_FILE ...]

The built libfxpkcs11.so is loaded into this interpreter with ctypes (as python-pkcs11 does),
so its embedded provider runs here and its Python code is instrumented for coverage. Each
input decodes (tests/fuzz/calls.py) into a short sequence of calls on the exported C_*
functions over two slots on two partitions. Invariants, checked after every call:

- the result is a CKR the specification defines, never CKR_GENERAL_ERROR;
- no exception escaped into the entry guard or the device's dispatcher (each would be
  answered with CKR_FUNCTION_FAILED / CKR_DEVICE_ERROR and logged with its traceback);
- a call the decoder knows to be invalid does not return CKR_OK.

A broken invariant raises, which libFuzzer reports as a crash and saves the input; a crash of
the process and a call slower than -timeout are caught by libFuzzer itself. FXPKCS11_CFG may
name a prepared two-slot configuration; otherwise one is made in a temporary directory.
"""
from __future__ import annotations

import collections
import ctypes
import logging
import os
import sys
import tempfile
from typing import Any

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

with atheris.instrument_imports(include=["fxpkcs11", "vhsm"]):
    import fxpkcs11._entry  # noqa: F401  (the provider, imported here so that it is instrumented)
    import vhsm.device  # noqa: F401
    import vhsm.dispatcher  # noqa: F401
    from fxpkcs11 import ck, mechs
    from calls import (ABSURD, HUGE, INIT_ARGS, UL, VP, CKR_NAMES, Arg, Call, Decoder, Pools,  # noqa: E402
                       first)

from abi_env import make_two_slot_env  # noqa: E402
from support import LIB, PIN  # noqa: E402

LIBRARY: ctypes.CDLL | None = None
TRACE = bool(os.environ.get("FUZZ_TRACE"))  # each call on stderr before it is made
POOLS = Pools()
FIXTURE_SESSIONS = ("rw0", "ro0", "rw1")
SLOW = {ck.CKM_RSA_PKCS_KEY_PAIR_GEN, ck.CKM_DSA_PARAMETER_GEN, ck.CKM_DH_PKCS_PARAMETER_GEN,
        ck.CKM_DSA_KEY_PAIR_GEN, ck.CKM_DH_PKCS_KEY_PAIR_GEN}
MESSAGE_FUNCTIONS = ["C_MessageEncryptInit", "C_EncryptMessage", "C_EncryptMessageBegin", "C_EncryptMessageNext",
                     "C_MessageEncryptFinal", "C_MessageDecryptInit", "C_DecryptMessage", "C_DecryptMessageBegin",
                     "C_DecryptMessageNext", "C_MessageDecryptFinal", "C_MessageSignInit", "C_SignMessage",
                     "C_SignMessageBegin", "C_SignMessageNext", "C_MessageSignFinal", "C_MessageVerifyInit",
                     "C_VerifyMessage", "C_VerifyMessageBegin", "C_VerifyMessageNext", "C_MessageVerifyFinal"]


class Escapes(logging.Handler):
    """Log records carrying a traceback: an exception that reached a guard."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


ESCAPES = Escapes()
HISTORY: collections.deque = collections.deque(maxlen=300)  # calls of the latest inputs, for a failure report


def c(name: str, *args) -> int:
    fn = getattr(LIBRARY, name)
    fn.restype = ctypes.c_ulong
    return fn(*[UL(a) if isinstance(a, int) else a for a in args])


def _ok(rv: int, what: str) -> None:
    if rv != 0:
        raise RuntimeError(f"fixture: {what} returned {CKR_NAMES.get(rv, hex(rv))}")


def _attrs(*pairs) -> ctypes.Array:
    from calls import ATTR
    arr = (ATTR * len(pairs))()
    keep = []
    for i, (t, v) in enumerate(pairs):
        data = (b"\x01" if v else b"\x00") if isinstance(v, bool) else (
            v.to_bytes(8, "little") if isinstance(v, int) else v)
        b = ctypes.create_string_buffer(data, len(data))
        keep.append(b)
        arr[i].type, arr[i].pValue, arr[i].ulValueLen = t, ctypes.cast(b, VP), len(data)
    arr._keep = keep  # type: ignore[attr-defined]
    return arr


def _gen(session: int, mech: int, *pairs) -> int:
    from calls import MECH
    m = MECH(mech, None, 0)
    t = _attrs(*pairs)
    h = UL()
    _ok(c("C_GenerateKey", session, ctypes.pointer(m), t, len(pairs), ctypes.pointer(h)), f"C_GenerateKey {mech:#x}")
    return h.value


def _pair(session: int, mech: int, pub: list, priv: list) -> tuple[int, int]:
    from calls import MECH
    m = MECH(mech, None, 0)
    a, b = _attrs(*pub), _attrs(*priv)
    hp, hq = UL(), UL()
    _ok(c("C_GenerateKeyPair", session, ctypes.pointer(m), a, len(pub), b, len(priv), ctypes.pointer(hp),
          ctypes.pointer(hq)), "C_GenerateKeyPair")
    return hp.value, hq.value


def _open(slot: int, rw: bool) -> int:
    h = UL()
    _ok(c("C_OpenSession", slot, 0x4 | (0x2 if rw else 0), None, None, ctypes.pointer(h)), "C_OpenSession")
    POOLS.session_slot[h.value] = slot
    return h.value


def setup() -> None:
    """Load and initialise the library; open the fixture sessions and make the fixture keys."""
    global LIBRARY
    if not os.environ.get("FXPKCS11_CFG"):
        env = make_two_slot_env(tempfile.mkdtemp(prefix="fxp-fuzz-"))
        os.environ["FXPKCS11_CFG"] = env.cfg
    LIBRARY = ctypes.CDLL(LIB)
    _ok(c("C_Initialize", None), "C_Initialize")
    for name in ("fxpkcs11", "vhsm"):
        logging.getLogger(name).addHandler(ESCAPES)
    p = POOLS
    p.sessions = {"rw0": _open(0, True), "ro0": _open(0, False), "rw1": _open(1, True)}
    for name in ("rw0", "rw1"):
        rv = c("C_Login", p.sessions[name], ck.CKU_USER, ctypes.c_char_p(PIN.encode()), len(PIN))
        _ok(0 if rv == ck.CKR_USER_ALREADY_LOGGED_IN else rv, "C_Login")
    s0, s1 = p.sessions["rw0"], p.sessions["rw1"]
    common = [(ck.CKA_TOKEN, False), (ck.CKA_EXTRACTABLE, True)]
    for h in (_gen(s0, ck.CKM_AES_KEY_GEN, (ck.CKA_VALUE_LEN, 16), (ck.CKA_ENCRYPT, True), (ck.CKA_DECRYPT, True),
                   (ck.CKA_WRAP, True), (ck.CKA_UNWRAP, True), (ck.CKA_DERIVE, True), *common),
              _gen(s0, ck.CKM_GENERIC_SECRET_KEY_GEN, (ck.CKA_VALUE_LEN, 32), (ck.CKA_SIGN, True),
                   (ck.CKA_VERIFY, True), (ck.CKA_DERIVE, True), (ck.CKA_SENSITIVE, False), *common),
              _gen(s0, ck.CKM_DES3_KEY_GEN, (ck.CKA_ENCRYPT, True), (ck.CKA_DECRYPT, True), *common),
              _gen(s0, ck.CKM_AES_KEY_GEN, (ck.CKA_VALUE_LEN, 32), (ck.CKA_TOKEN, True), (ck.CKA_SIGN, True),
                   (ck.CKA_ENCRYPT, True))):
        p.objects[h] = 0
    p256 = bytes.fromhex("06082a8648ce3d030107")
    ed = bytes.fromhex("06032b6570")
    for pub, priv in (
            _pair(s0, ck.CKM_EC_KEY_PAIR_GEN, [(ck.CKA_TOKEN, False), (ck.CKA_EC_PARAMS, p256), (ck.CKA_VERIFY, True)],
                  [(ck.CKA_TOKEN, False), (ck.CKA_SIGN, True), (ck.CKA_DERIVE, True)]),
            _pair(s0, ck.CKM_EC_EDWARDS_KEY_PAIR_GEN, [(ck.CKA_TOKEN, False), (ck.CKA_EC_PARAMS, ed)],
                  [(ck.CKA_TOKEN, False), (ck.CKA_SIGN, True)]),
            _pair(s0, ck.CKM_RSA_PKCS_KEY_PAIR_GEN,
                  [(ck.CKA_TOKEN, False), (ck.CKA_MODULUS_BITS, 2048), (ck.CKA_PUBLIC_EXPONENT, b"\x01\x00\x01"),
                   (ck.CKA_ENCRYPT, True), (ck.CKA_VERIFY, True), (ck.CKA_VERIFY_RECOVER, True),
                   (ck.CKA_WRAP, True)],
                  [(ck.CKA_TOKEN, False), (ck.CKA_DECRYPT, True), (ck.CKA_SIGN, True), (ck.CKA_SIGN_RECOVER, True),
                   (ck.CKA_UNWRAP, True)])):
        p.objects[pub] = p.objects[priv] = 0
    for h in (_gen(s1, ck.CKM_AES_KEY_GEN, (ck.CKA_VALUE_LEN, 16), (ck.CKA_ENCRYPT, True), *common),
              _gen(s1, ck.CKM_AES_KEY_GEN, (ck.CKA_VALUE_LEN, 16), (ck.CKA_TOKEN, True))):
        p.objects[h] = 1
    dead = _gen(s0, ck.CKM_AES_KEY_GEN, (ck.CKA_VALUE_LEN, 16), *common)
    _ok(c("C_DestroyObject", s0, dead), "C_DestroyObject")
    p.dead_objects.append(dead)
    gone = _open(0, False)
    _ok(c("C_CloseSession", gone), "C_CloseSession")
    del p.session_slot[gone]
    p.dead_sessions.append(gone)


# ------------------------------------------------------------------ the calls

def _slot(d: Decoder) -> Arg:
    k = d.pick(4)
    if k < 2:
        return Arg(k)
    return Arg([2, 99, HUGE][d.pick(3)], "no such slot")


def _struct_out(d: Decoder, size: int) -> Arg:
    if d.pick(5) == 0:
        return Arg(None, "null output structure")
    b = d.buffer(b"\0" * size)
    return Arg(b)


def _handle_out(d: Decoder) -> Arg:
    if d.pick(6) == 0:
        return Arg(None, "null handle pointer")
    h = UL(0)
    d.keep.append(h)
    return Arg(ctypes.pointer(h))


def _ulong_out(d: Decoder) -> tuple[Any, Any, str]:
    k = d.pick(5)
    if k == 0:
        return None, None, "null count pointer"
    n = UL(0)
    d.keep.append(n)
    if k == 1:
        return None, ctypes.pointer(n), ""
    n.value = d.fdp.ConsumeIntInRange(0, 200)
    arr = (UL * max(n.value, 1))()
    d.keep.append(arr)
    return arr, ctypes.pointer(n), ""


def _new_objects(d: Decoder, session: int, *outs: Arg):
    """Record handles a successful call wrote, for the end-of-input cleanup."""
    def after(rv: int) -> None:
        for o in outs:
            h = ctypes.cast(o.value, ctypes.POINTER(UL))[0] if o.value is not None else 0
            if h:
                POOLS.created.append((session, h))
                POOLS.created_slot[h] = POOLS.session_slot.get(session)
                if session in [POOLS.sessions[n] for n in FIXTURE_SESSIONS]:
                    POOLS.objects[h] = POOLS.session_slot[session]
                if h in POOLS.dead_objects:
                    POOLS.dead_objects.remove(h)
    return after


def _mech_for(d: Decoder) -> Arg:
    m = d.mechanism()
    if m.value is not None:
        code = ctypes.cast(m.value, ctypes.POINTER(UL))[0]
        if code in SLOW:
            return Arg(None, "null mechanism")  # a slow generation is no test of the entry layer
    return m


def build(d: Decoder) -> Call:
    """One call, chosen and filled in by the fuzzer's bytes."""
    k = d.pick(60)
    if k < 6:
        return _general(d, k)
    s = d.session()
    sv = s.value
    if k == 6:
        slot, flags, ph = _slot(d), d.pick(8), _handle_out(d)
        why = first(slot.invalid, "" if flags & 4 else "no CKF_SERIAL_SESSION", ph.invalid)

        def opened(rv: int) -> None:
            h = ctypes.cast(ph.value, ctypes.POINTER(UL))[0]
            POOLS.session_slot[h] = slot.value
            POOLS.sessions[f"t{h}"] = h
        return Call("C_OpenSession", [slot.value, flags, None, None, ph.value], why, opened)
    if k == 7:
        transient = [h for n, h in POOLS.sessions.items() if n not in FIXTURE_SESSIONS]
        if transient and d.pick(2):
            h = transient[d.pick(len(transient))]

            def closed(rv: int) -> None:
                for n, v in list(POOLS.sessions.items()):
                    if v == h:
                        del POOLS.sessions[n]
                POOLS.session_slot.pop(h, None)
                POOLS.dead_sessions.append(h)
            return Call("C_CloseSession", [h], "", closed)
        if s.invalid:
            return Call("C_CloseSession", [sv], s.invalid)
        return Call("C_Logout", [POOLS.dead_sessions[0]], "closed session")
    if k == 8:
        return Call("C_GetSessionInfo", [sv, _struct_out(d, 64).value], first(s.invalid))
    if k == 9:
        info = _struct_out(d, 64)
        return Call("C_GetSessionInfo", [sv, info.value], first(s.invalid, info.invalid))
    if k == 10:
        ptr, n, why = d.blob(40)
        return Call("C_Login", [sv, [0, 1, 2, 3, HUGE][d.pick(5)], ptr, n], first(s.invalid, why))
    if k == 11:
        ptr, n, why = d.blob(40)
        uptr, un, uwhy = d.blob(40)
        return Call("C_LoginUser", [sv, [0, 1, 2, 7][d.pick(4)], ptr, n, uptr, un], first(s.invalid, why, uwhy))
    if k == 12:
        ptr, n, why = d.blob(40)
        return Call("C_InitPIN", [sv, ptr, n], first(s.invalid, why, "not the security officer"))
    if k == 13:
        optr, on, owhy = d.blob(40)
        nptr, nn, nwhy = d.blob(40)
        if optr is not None and optr.raw[:on] == PIN.encode():
            on = 0  # never the right old PIN: the fixture's PIN stays
        return Call("C_SetPIN", [sv, optr, on, nptr, nn], first(s.invalid, owhy, nwhy, "wrong old PIN"))
    if k == 14:
        buf, plen, why = d.out()
        return Call("C_GetOperationState", [sv, buf, plen], first(s.invalid, why))
    if k == 15:
        ptr, n, why = d.blob(120)
        return Call("C_SetOperationState", [sv, ptr, n, d.object(sv).value, d.object(sv).value],
                    first(s.invalid, why))
    if k == 16:
        t, n, why = d.template()
        ph = _handle_out(d)
        return Call("C_CreateObject", [sv, t, n, ph.value], first(s.invalid, why, ph.invalid),
                    _new_objects(d, sv, ph))
    if k == 17:
        o = d.object(sv)
        t, n, why = d.template()
        ph = _handle_out(d)
        return Call("C_CopyObject", [sv, o.value, t, n, ph.value], first(s.invalid, o.invalid, why, ph.invalid),
                    _new_objects(d, sv, ph))
    if k == 18:
        mine = [h for sess, h in POOLS.created if sess == sv]
        if mine and d.pick(2):
            h = mine[d.pick(len(mine))]

            def destroyed(rv: int) -> None:
                POOLS.objects.pop(h, None)
                POOLS.created[:] = [(a, b) for a, b in POOLS.created if b != h]
                POOLS.created_slot.pop(h, None)
                POOLS.dead_objects.append(h)
            return Call("C_DestroyObject", [sv, h], s.invalid, destroyed)
        o = d.object(sv)
        if not o.invalid:
            o = Arg(POOLS.dead_objects[0], "destroyed object")  # the fixture keys stay
        return Call("C_DestroyObject", [sv, o.value], first(s.invalid, o.invalid))
    if k == 19:
        o = d.object(sv)
        size = _handle_out(d)
        return Call("C_GetObjectSize", [sv, o.value, size.value], first(s.invalid, o.invalid, size.invalid))
    if k in (20, 21):
        o = d.object(sv)
        t, n, why = d.template(reading=True)
        return Call("C_GetAttributeValue", [sv, o.value, t, n], first(s.invalid, o.invalid, why))
    if k == 22:
        o = d.object(sv)
        t, n, why = d.template()
        return Call("C_SetAttributeValue", [sv, o.value, t, n], first(s.invalid, o.invalid, why))
    if k == 23:
        t, n, why = d.template()
        dup = why == "duplicate attribute"
        return Call("C_FindObjectsInit", [sv, t, n], first(s.invalid, "" if dup else why))
    if k == 24:
        arr, pn, why = _ulong_out(d)
        mx = ctypes.cast(pn, ctypes.POINTER(UL))[0] if pn is not None else d.fdp.ConsumeIntInRange(0, 9)
        if arr is None and mx:
            why = why or "null handle array"
        return Call("C_FindObjects", [sv, arr, mx, pn], first(s.invalid, why))
    if k == 25:
        return Call("C_FindObjectsFinal", [sv], s.invalid)
    if 26 <= k <= 32:
        kind = ["Encrypt", "Decrypt", "Sign", "Verify", "SignRecover", "VerifyRecover", "Digest"][k - 26]
        m = _mech_for(d)
        if kind == "Digest":
            return Call("C_DigestInit", [sv, m.value], first(s.invalid, m.invalid))
        o = d.object(sv)
        return Call(f"C_{kind}Init", [sv, m.value, o.value], first(s.invalid, m.invalid, o.invalid))
    if 33 <= k <= 38:
        name = ["C_Encrypt", "C_Decrypt", "C_Sign", "C_SignRecover", "C_VerifyRecover", "C_Digest"][k - 33]
        ptr, n, why = d.blob()
        buf, plen, owhy = d.out()
        return Call(name, [sv, ptr, n, buf, plen], first(s.invalid, why, owhy))
    if 39 <= k <= 44:
        name = ["C_EncryptUpdate", "C_DecryptUpdate", "C_DigestEncryptUpdate", "C_DecryptDigestUpdate",
                "C_SignEncryptUpdate", "C_DecryptVerifyUpdate"][k - 39]
        ptr, n, why = d.blob()
        buf, plen, owhy = d.out()
        return Call(name, [sv, ptr, n, buf, plen], first(s.invalid, why, owhy))
    if k == 45:
        name = ["C_SignUpdate", "C_VerifyUpdate", "C_DigestUpdate", "C_SeedRandom"][d.pick(4)]
        ptr, n, why = d.blob()
        return Call(name, [sv, ptr, n], first(s.invalid, why))
    if k == 46:
        name = ["C_EncryptFinal", "C_DecryptFinal", "C_SignFinal", "C_DigestFinal"][d.pick(4)]
        buf, plen, why = d.out()
        return Call(name, [sv, buf, plen], first(s.invalid, why))
    if k == 47:
        ptr, n, why = d.blob()
        if d.pick(2):
            return Call("C_VerifyFinal", [sv, ptr, n], first(s.invalid, why))
        dptr, dn, dwhy = d.blob()
        return Call("C_Verify", [sv, dptr, dn, ptr, n], first(s.invalid, why, dwhy))
    if k == 48:
        o = d.object(sv)
        return Call("C_DigestKey", [sv, o.value], first(s.invalid, o.invalid))
    if k == 49:
        m = _mech_for(d)
        t, n, why = d.template()
        ph = _handle_out(d)
        return Call("C_GenerateKey", [sv, m.value, t, n, ph.value], first(s.invalid, m.invalid, why, ph.invalid),
                    _new_objects(d, sv, ph))
    if k == 50:
        m = _mech_for(d)
        t1, n1, w1 = d.template()
        t2, n2, w2 = d.template()
        h1, h2 = _handle_out(d), _handle_out(d)
        return Call("C_GenerateKeyPair", [sv, m.value, t1, n1, t2, n2, h1.value, h2.value],
                    first(s.invalid, m.invalid, w1, w2, h1.invalid, h2.invalid), _new_objects(d, sv, h1, h2))
    if k == 51:
        m, w, o = _mech_for(d), d.object(sv), d.object(sv)
        buf, plen, why = d.out()
        return Call("C_WrapKey", [sv, m.value, w.value, o.value, buf, plen],
                    first(s.invalid, m.invalid, w.invalid, o.invalid, why))
    if k == 52:
        m, u = _mech_for(d), d.object(sv)
        ptr, n, why = d.blob()
        t, tn, twhy = d.template()
        ph = _handle_out(d)
        return Call("C_UnwrapKey", [sv, m.value, u.value, ptr, n, t, tn, ph.value],
                    first(s.invalid, m.invalid, u.invalid, why, twhy, ph.invalid), _new_objects(d, sv, ph))
    if k == 53:
        m, b = _mech_for(d), d.object(sv)
        t, tn, twhy = d.template()
        ph = _handle_out(d)
        return Call("C_DeriveKey", [sv, m.value, b.value, t, tn, ph.value],
                    first(s.invalid, m.invalid, b.invalid, twhy, ph.invalid), _new_objects(d, sv, ph))
    if k == 54:
        n = [0, 1, 16, 1000, d.fdp.ConsumeIntInRange(0, 1 << 16)][d.pick(5)]
        j = d.pick(4)
        if j == 0:
            return Call("C_GenerateRandom", [sv, None, n], first(s.invalid, "null buffer with a length" if n else ""))
        if j == 1:
            return Call("C_GenerateRandom", [sv, d.buffer(b""), ABSURD[d.pick(len(ABSURD))]],
                        first(s.invalid, "absurd length"))
        return Call("C_GenerateRandom", [sv, d.buffer(b"\0" * n), n], s.invalid)
    if k == 55:
        return Call(["C_GetFunctionStatus", "C_CancelFunction"][d.pick(2)], [sv], "not parallel")
    if k == 56:
        return Call("C_SessionCancel", [sv, d.ulong()], s.invalid)
    if k == 57:
        name = MESSAGE_FUNCTIONS[d.pick(len(MESSAGE_FUNCTIONS))]
        return Call(name, [sv] + [d.ulong() if d.pick(2) else 0 for _ in range(8)], "not supported")
    if k == 58:
        a = INIT_ARGS()
        d.keep.append(a)
        j = d.pick(3)
        if j == 0:
            a.pReserved = ctypes.addressof(a)
        else:
            fields = ["CreateMutex", "DestroyMutex", "LockMutex", "UnlockMutex"]
            for f in fields[: 1 + d.pick(3)]:
                setattr(a, f, ctypes.addressof(a))  # never called: the library must refuse first
        return Call("C_Initialize", [ctypes.pointer(a)], "bad CK_C_INITIALIZE_ARGS")
    return Call("C_Finalize", [ctypes.c_void_p(8)], "pReserved not null")


def _general(d: Decoder, k: int) -> Call:
    if k == 0:
        out = _struct_out(d, 128)
        return Call("C_GetInfo", [out.value], out.invalid)
    if k == 1:
        arr, pn, why = _ulong_out(d)
        return Call("C_GetSlotList", [d.pick(2), arr, pn], why)
    if k == 2:
        slot = _slot(d)
        name = ["C_GetSlotInfo", "C_GetTokenInfo"][d.pick(2)]
        out = _struct_out(d, 256)
        return Call(name, [slot.value, out.value], first(slot.invalid, out.invalid))
    if k == 3:
        slot = _slot(d)
        if d.pick(2):
            arr, pn, why = _ulong_out(d)
            return Call("C_GetMechanismList", [slot.value, arr, pn], first(slot.invalid, why))
        code = [mechs.MECHANISM_LIST[d.pick(len(mechs.MECHANISM_LIST))], 0x7FFF0001, HUGE][d.pick(3)]
        out = _struct_out(d, 24)
        return Call("C_GetMechanismInfo", [slot.value, code, out.value],
                    first(slot.invalid, out.invalid, "" if mechs.get(code) else "unknown mechanism"))
    if k == 4:
        slot = _slot(d)
        ptr, n, why = d.blob(40)
        label = _struct_out(d, 32)
        return Call("C_InitToken", [slot.value, ptr, n, label.value],
                    first(slot.invalid, why, label.invalid, "no security officer PIN"))
    slot = UL(0)
    d.keep.append(slot)
    reserved = d.pick(3) == 0
    return Call("C_WaitForSlotEvent", [1, ctypes.pointer(slot), ctypes.c_void_p(8) if reserved else None],
                "no event" if not reserved else "pReserved not null")


# ------------------------------------------------------------------ one input

def cleanup() -> None:
    p = POOLS
    for sess, h in reversed(p.created):
        rv = _destroy(sess, h, p.created_slot.pop(h, None))
        p.objects.pop(h, None)
        if rv in (ck.CKR_OK, ck.CKR_OBJECT_HANDLE_INVALID):
            if h not in p.dead_objects:
                p.dead_objects.append(h)
        else:
            p.survivors += 1  # e.g. CKA_DESTROYABLE false: it lives on, so it is no "destroyed object"
    p.created.clear()
    del p.dead_objects[64:]
    for name, h in list(p.sessions.items()):
        c("C_SessionCancel", h, (1 << 32) - 1)
        c("C_FindObjectsFinal", h)
        if name not in FIXTURE_SESSIONS:
            c("C_CloseSession", h)
            del p.sessions[name]
            p.session_slot.pop(h, None)
            p.dead_sessions.append(h)
    del p.dead_sessions[16:]


def _destroy(session: int, handle: int, slot: int | None) -> int:
    """Destroy an object the input made; a token object outlives a session the input closed,
    so that one goes through the slot's fixture session."""
    rv = c("C_DestroyObject", session, handle)
    if rv in (ck.CKR_SESSION_HANDLE_INVALID, ck.CKR_SESSION_CLOSED) and slot in (0, 1):
        rv = c("C_DestroyObject", POOLS.sessions[("rw0", "rw1")[slot]], handle)
    return rv


def check(call: Call, rv: int) -> None:
    problems = []
    if rv not in CKR_NAMES and not rv & ck.CKR_VENDOR_DEFINED:
        problems.append(f"returned {rv:#x}, which is no CKR")
    if rv == ck.CKR_GENERAL_ERROR:
        problems.append("returned CKR_GENERAL_ERROR")
    if call.invalid and rv == ck.CKR_OK:
        problems.append(f"returned CKR_OK for an invalid call ({call.invalid})")
    if ESCAPES.records:
        rec = ESCAPES.records[0]
        ESCAPES.records.clear()
        problems.append(f"an exception escaped to a guard in thread {rec.threadName}: {rec.getMessage()}\n"
                        + "".join(logging.Formatter().formatException(rec.exc_info)))
    if problems:
        args = ", ".join(_show(a) for a in call.args)
        raise AssertionError(f"{call.name}({args}) -> {CKR_NAMES.get(rv, hex(rv))}: " + "; ".join(problems))


def _show(a: Any) -> str:
    if isinstance(a, int):
        return hex(a)
    if isinstance(a, ctypes._Pointer) and a._type_.__name__ == "MECH":
        m = a[0]
        return f"{{{ck.name(m.mechanism, 'CKM_')}, {m.pParameter and hex(m.pParameter)}, {m.ulParameterLen:#x}}}"
    return "NULL" if a is None else type(a).__name__


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    HISTORY.append([])
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 12)):
            if fdp.remaining_bytes() == 0:
                break
            d = Decoder(fdp, POOLS)
            call = build(d)
            if TRACE:
                print(f"fuzz: {call.name}({', '.join(_show(a) for a in call.args)}) [{call.invalid}]",
                      file=sys.stderr, flush=True)
            rv = c(call.name, *call.args)
            HISTORY[-1].append((call.name, rv, call.invalid))
            if rv == ck.CKR_OK and call.after is not None:
                call.after(rv)
            check(call, rv)
        cleanup()
    except BaseException:
        _print_history()
        raise


def _print_history() -> None:
    """A failure can depend on what earlier inputs left behind: show their calls first."""
    print(f"=== the last {len(HISTORY)} inputs' calls, oldest first (name -> CKR [why invalid]):", file=sys.stderr)
    for i, calls in enumerate(HISTORY):
        shown = "; ".join(f"{n} -> {CKR_NAMES.get(rv, hex(rv))}" + (f" [{why}]" if why else "")
                          for n, rv, why in calls)
        print(f"  {i - len(HISTORY) + 1}: {shown}", file=sys.stderr)
    print(f"=== pools: {len(POOLS.objects)} objects, {len(POOLS.dead_objects)} destroyed, "
          f"{len(POOLS.sessions)} sessions, {POOLS.survivors} undestroyable objects left by earlier inputs",
          file=sys.stderr, flush=True)


def main() -> None:
    setup()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
