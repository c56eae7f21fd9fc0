"""Decode fuzz input into PKCS #11 calls on the exported C functions of the loaded library.

Each decoded argument knows whether the specification makes it invalid (a null pointer
with a non-zero length, a length no buffer can have, a stale or foreign handle, an unknown
mechanism ...): a call carrying one must not return CKR_OK. Pointers and lengths are honest
otherwise (a length never exceeds the buffer behind a real pointer, except the absurd
ones, which the library must refuse without reading), so a crash is the library's fault.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any, Callable

from fxpkcs11 import ck, mechs
from fxpkcs11.abi import params

UL = ctypes.c_ulong
VP = ctypes.c_void_p
HUGE = (1 << 64) - 16
ABSURD = (1 << 33, 1 << 40, (1 << 63) + 5, HUGE, (1 << 64) - 1)  # above every limit


class GCM(ctypes.Structure):
    _fields_ = [("pIv", VP), ("ulIvLen", UL), ("ulIvBits", UL), ("pAAD", VP), ("ulAADLen", UL),
                ("ulTagBits", UL)]


class OAEP(ctypes.Structure):
    _fields_ = [("hashAlg", UL), ("mgf", UL), ("source", UL), ("pSourceData", VP), ("ulSourceDataLen", UL)]


class PSS(ctypes.Structure):
    _fields_ = [("hashAlg", UL), ("mgf", UL), ("sLen", UL)]


class CTR(ctypes.Structure):
    _fields_ = [("ulCounterBits", UL), ("cb", ctypes.c_ubyte * 16)]


class ECDH(ctypes.Structure):
    _fields_ = [("kdf", UL), ("ulSharedDataLen", UL), ("pSharedData", VP), ("ulPublicDataLen", UL),
                ("pPublicData", VP)]


class STRING(ctypes.Structure):
    _fields_ = [("pData", VP), ("ulLen", UL)]


class EDDSA(ctypes.Structure):
    _fields_ = [("phFlag", ctypes.c_ubyte), ("ulContextDataLen", UL), ("pContextData", VP)]


class HKDF(ctypes.Structure):
    _fields_ = [("bExtract", ctypes.c_ubyte), ("bExpand", ctypes.c_ubyte), ("prfHashMechanism", UL),
                ("ulSaltType", UL), ("pSalt", VP), ("ulSaltLen", UL), ("hSaltKey", UL), ("pInfo", VP),
                ("ulInfoLen", UL)]


class AESCBCDATA(ctypes.Structure):
    _fields_ = [("iv", ctypes.c_ubyte * 16), ("pData", VP), ("length", UL)]


class DESCBCDATA(ctypes.Structure):
    _fields_ = [("iv", ctypes.c_ubyte * 8), ("pData", VP), ("length", UL)]


class ATTR(ctypes.Structure):
    _fields_ = [("type", UL), ("pValue", VP), ("ulValueLen", UL)]


class MECH(ctypes.Structure):
    _fields_ = [("mechanism", UL), ("pParameter", VP), ("ulParameterLen", UL)]


class INIT_ARGS(ctypes.Structure):
    _fields_ = [("CreateMutex", VP), ("DestroyMutex", VP), ("LockMutex", VP), ("UnlockMutex", VP),
                ("flags", UL), ("pReserved", VP)]


# (struct, [(pointer field, length field), ...]) per parameter kind of the registry
STRUCTS: dict[str, tuple[type, list[tuple[str, str]]]] = {
    "gcm": (GCM, [("pIv", "ulIvLen"), ("pAAD", "ulAADLen")]),
    "oaep": (OAEP, [("pSourceData", "ulSourceDataLen")]),
    "pss": (PSS, []),
    "ctr": (CTR, []),
    "ecdh": (ECDH, [("pSharedData", "ulSharedDataLen"), ("pPublicData", "ulPublicDataLen")]),
    "string_data": (STRING, [("pData", "ulLen")]),
    "eddsa": (EDDSA, [("pContextData", "ulContextDataLen")]),
    "hkdf": (HKDF, [("pSalt", "ulSaltLen"), ("pInfo", "ulInfoLen")]),
    "aes_cbc_data": (AESCBCDATA, [("pData", "length")]),
    "des_cbc_data": (DESCBCDATA, [("pData", "length")]),
}
# Parameter kinds read as plain bytes or numbers: fuzzed raw bytes cannot hold a pointer.
FLAT_KINDS = {"none", "iv16", "iv8", "optional_iv", "bytes", "mac_general", "key_handle"}
# Every kind the provider reads must be one or the other: raw bytes read as a structure with
# pointers would hold wild pointers, which no C library can tell from good ones (a lie, not a test).
assert set(params.READERS) == set(STRUCTS) | FLAT_KINDS, sorted(set(params.READERS) ^ (set(STRUCTS) | FLAT_KINDS))

MECHANISMS = sorted(mechs.MECHANISM_LIST)
UNKNOWN_MECHANISMS = [0x7FFF0001, 0x80000000, 0xFFFFFFFF, HUGE]
ATTR_TYPES = sorted(ck.ATTR_KIND)
UNKNOWN_ATTRS = [0x7FFF1234, 0x0FFF, HUGE]
CKR_NAMES = {v: n for n, v in vars(ck).items() if n.startswith("CKR_") and isinstance(v, int)}


@dataclass
class Arg:
    value: Any
    invalid: str = ""  # why the spec makes the call fail, "" when it may succeed


@dataclass
class Pools:
    """Handles the harness made, by slot: a handle is valid only on a session of its slot."""
    sessions: dict[str, int] = field(default_factory=dict)        # name -> handle (live)
    session_slot: dict[int, int] = field(default_factory=dict)
    dead_sessions: list[int] = field(default_factory=list)
    objects: dict[int, int] = field(default_factory=dict)         # handle -> slot
    dead_objects: list[int] = field(default_factory=list)
    created: list[tuple[int, int]] = field(default_factory=list)  # (session, handle) this input
    created_slot: dict[int, int] = field(default_factory=dict)    # handle -> slot of its session
    survivors: int = 0  # objects the input made that could not be destroyed (CKA_DESTROYABLE false)


class Decoder:
    """Turns the fuzzer's bytes into arguments; keeps every buffer alive for the call."""

    def __init__(self, fdp: Any, pools: Pools) -> None:
        self.fdp = fdp
        self.pools = pools
        self.keep: list[Any] = []

    # ------------------------------------------------------------ scalars
    def pick(self, n: int) -> int:
        return self.fdp.ConsumeIntInRange(0, n - 1)

    def ulong(self) -> int:
        k = self.pick(4)
        if k == 0:
            return self.fdp.ConsumeIntInRange(0, 64)
        if k == 1:
            return self.fdp.ConsumeIntInRange(0, 1 << 16)
        if k == 2:
            return ABSURD[self.pick(len(ABSURD))]
        return self.fdp.ConsumeIntInRange(0, (1 << 64) - 1)

    def raw(self, most: int = 300) -> bytes:
        return self.fdp.ConsumeBytes(self.fdp.ConsumeIntInRange(0, most))

    def buffer(self, data: bytes) -> Any:
        b = ctypes.create_string_buffer(data, max(len(data), 1))
        self.keep.append(b)
        return b

    # ------------------------------------------------------------ pointer + length
    def blob(self, most: int = 300) -> tuple[Any, int, str]:
        """An input buffer: (pointer, length, why it is invalid)."""
        k = self.pick(8)
        if k == 0:
            return None, 0, ""
        if k == 1:
            return None, self.fdp.ConsumeIntInRange(1, 1 << 20), "null pointer with a length"
        if k == 2:
            data = self.raw(most)
            return self.buffer(data), ABSURD[self.pick(len(ABSURD))], "absurd length"
        data = self.raw(most)
        n = len(data) if k != 3 else self.fdp.ConsumeIntInRange(0, len(data))
        return self.buffer(data), n, ""

    def out(self) -> tuple[Any, Any, str]:
        """An output buffer and its length pointer (honest: *len is the buffer's size)."""
        k = self.pick(6)
        if k == 0:
            return self.buffer(b""), None, "null length pointer"
        n = UL(0)
        self.keep.append(n)
        if k == 1:
            return None, ctypes.pointer(n), ""  # length query
        size = self.fdp.ConsumeIntInRange(0, 600)
        n.value = size
        return self.buffer(b"\0" * size), ctypes.pointer(n), ""

    # ------------------------------------------------------------ handles
    def session(self) -> Arg:
        p = self.pools
        k = self.pick(8)
        live = list(p.sessions.values())
        if k < 5 and live:
            return Arg(live[k % len(live)])
        if k == 5 and p.dead_sessions:
            return Arg(p.dead_sessions[self.pick(len(p.dead_sessions))], "closed session")
        h = [0, 0x5A5A5A5A, HUGE, self.fdp.ConsumeIntInRange(0, (1 << 64) - 1)][self.pick(4)]
        return Arg(h, "" if h in p.session_slot else "no such session")

    def object(self, session: int) -> Arg:
        p = self.pools
        k = self.pick(8)
        slot = p.session_slot.get(session)
        handles = sorted(p.objects)
        if k < 5 and handles:
            h = handles[self.fdp.ConsumeIntInRange(0, len(handles) - 1)]
            return Arg(h, "" if p.objects[h] == slot else "another slot's object")
        if k == 5 and p.dead_objects:
            return Arg(p.dead_objects[self.pick(len(p.dead_objects))], "destroyed object")
        h = [0, 0x5A5A5A5A, HUGE, self.fdp.ConsumeIntInRange(0, (1 << 64) - 1)][self.pick(4)]
        if h in p.objects:
            return Arg(h, "" if p.objects[h] == slot else "another slot's object")
        return Arg(h, "no such object" if h in (0, 0x5A5A5A5A, HUGE) else "")

    # ------------------------------------------------------------ mechanisms
    def mechanism(self) -> Arg:
        k = self.pick(10)
        if k == 0:
            return Arg(None, "null mechanism")
        if k == 1:
            code = UNKNOWN_MECHANISMS[self.pick(len(UNKNOWN_MECHANISMS))]
            why = "unknown mechanism"
        else:
            code = MECHANISMS[self.pick(len(MECHANISMS))]
            why = ""
        m = MECH()
        m.mechanism = code
        kind = mechs.get(code).param if mechs.get(code) else "none"
        p, n, bad = self.param(kind)
        m.pParameter, m.ulParameterLen = p, n
        if why:
            bad = why
        self.keep.append(m)
        return Arg(ctypes.pointer(m), bad)

    def param(self, kind: str) -> tuple[Any, int, str]:
        """A mechanism parameter for the registry's parameter kind: the structure with fuzzed
        fields and honest inner buffers, a short structure, or raw bytes."""
        k = self.pick(6)
        if kind in STRUCTS and k < 4:
            cls, pairs = STRUCTS[kind]
            s = cls()
            skip = {name for pair in pairs for name in pair}
            for name, ctype in cls._fields_:
                if name in skip:
                    continue
                if name in ("cb", "iv"):
                    size = ctypes.sizeof(ctype)
                    ctypes.memmove(getattr(s, name), self.fdp.ConsumeBytes(size).ljust(size, b"\0"), size)
                elif ctype is ctypes.c_ubyte:
                    setattr(s, name, self.pick(3))
                else:
                    setattr(s, name, self.small_or_ulong())
            for pname, lname in pairs:
                ptr, n, _ = self.blob(80)  # a bad inner buffer is refused only if the mechanism reads it
                setattr(s, pname, ctypes.cast(ptr, VP).value if ptr is not None else None)
                setattr(s, lname, n)
            self.keep.append(s)
            if k == 3:
                return ctypes.addressof(s), self.fdp.ConsumeIntInRange(0, ctypes.sizeof(s) - 1), "short parameter"
            return ctypes.addressof(s), ctypes.sizeof(s), ""
        if kind == "none" and k < 3:
            return None, 0, ""
        ptr, n, _ = self.blob(64)
        addr = ctypes.cast(ptr, VP).value if ptr is not None else None
        if kind in STRUCTS:
            size = ctypes.sizeof(STRUCTS[kind][0])
            if addr is not None and n == size:
                n += 1  # raw bytes read as a structure would hold wild pointers: a lie, not a test
            if kind == "eddsa" and addr is None and n == 0:
                return None, 0, ""
            return addr, n, "not the parameter structure"
        if kind == "none":
            return addr, n, "a parameter for a mechanism without one" if n else ""
        return addr, n, ""

    def small_or_ulong(self) -> int:
        k = self.pick(4)
        if k == 0:
            return self.fdp.ConsumeIntInRange(0, 600)
        if k == 1:
            return [ck.CKM_SHA_1, ck.CKM_SHA256, ck.CKM_SHA384, ck.CKM_SHA512, ck.CKG_MGF1_SHA1,
                    ck.CKG_MGF1_SHA256, ck.CKZ_DATA_SPECIFIED, 96, 128, 130, 0][self.pick(11)]
        return self.ulong()

    # ------------------------------------------------------------ templates
    def template(self, reading: bool = False) -> tuple[Any, int, str]:
        k = self.pick(12)
        if k == 0:
            return None, self.fdp.ConsumeIntInRange(1, 8), "null template with a count"
        count = self.fdp.ConsumeIntInRange(0, 7)
        arr = (ATTR * max(count, 1))()
        self.keep.append(arr)
        bad = ""
        seen: set[int] = set()
        for i in range(count):
            a = arr[i]
            if self.pick(10) == 0:
                a.type = UNKNOWN_ATTRS[self.pick(len(UNKNOWN_ATTRS))]
            else:
                a.type = ATTR_TYPES[self.pick(len(ATTR_TYPES))]
            if a.type in seen and not reading:
                bad = bad or "duplicate attribute"
            seen.add(a.type)
            if reading:
                size = [0, 1, 8, 64, 300][self.pick(5)]
                if size:
                    buf = self.buffer(b"\0" * size)
                    a.pValue, a.ulValueLen = ctypes.cast(buf, VP), size
                continue
            kind = ck.ATTR_KIND.get(a.type, "bytes")
            v = self.pick(10)
            if v == 0:
                a.pValue, a.ulValueLen = None, self.fdp.ConsumeIntInRange(1, 64)
                bad = bad or "null attribute value with a length"
            elif v == 1:
                buf = self.buffer(self.raw(8))
                a.pValue, a.ulValueLen = ctypes.cast(buf, VP), ABSURD[self.pick(len(ABSURD))]
                bad = bad or "absurd attribute length"
            else:
                if kind == "bool":
                    data = bytes([self.pick(2)]) if v > 3 else self.raw(3)
                elif kind == "ulong":
                    data = UL(self.small_or_ulong()).value.to_bytes(8, "little") if v > 3 else self.raw(9)
                elif kind == "attrs":
                    data = b""
                else:
                    data = self.raw(80)
                buf = self.buffer(data)
                a.pValue, a.ulValueLen = ctypes.cast(buf, VP), len(data)
        if k == 1:
            return arr, ABSURD[self.pick(len(ABSURD))], "absurd attribute count"
        return arr, count, bad


@dataclass
class Call:
    name: str
    args: list[Any]
    invalid: str
    after: Callable[[int], None] | None = None  # bookkeeping on success


def first(*whys: str) -> str:
    for w in whys:
        if w:
            return w
    return ""
