"""A small PKCS #11 consumer over the C ABI (ctypes) for the tools: load any module by path,
call its exported C_* functions, build templates and read attributes. Nothing here reaches
into the provider or the device: it works the same against libfxpkcs11.so and SoftHSMv2."""
from __future__ import annotations

import ctypes
import sys
from typing import Any, Iterable

from fxpkcs11 import ck

CK_ULONG = ctypes.c_ulong
ULONG_SIZE = ctypes.sizeof(CK_ULONG)
UNAVAILABLE = (1 << (8 * ULONG_SIZE)) - 1


class CK_VERSION(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]


class CK_INFO(ctypes.Structure):
    _fields_ = [("cryptokiVersion", CK_VERSION), ("manufacturerID", ctypes.c_char * 32), ("flags", CK_ULONG),
                ("libraryDescription", ctypes.c_char * 32), ("libraryVersion", CK_VERSION)]


class CK_SLOT_INFO(ctypes.Structure):
    _fields_ = [("slotDescription", ctypes.c_char * 64), ("manufacturerID", ctypes.c_char * 32),
                ("flags", CK_ULONG), ("hardwareVersion", CK_VERSION), ("firmwareVersion", CK_VERSION)]


class CK_TOKEN_INFO(ctypes.Structure):
    _fields_ = [("label", ctypes.c_char * 32), ("manufacturerID", ctypes.c_char * 32),
                ("model", ctypes.c_char * 16), ("serialNumber", ctypes.c_char * 16), ("flags", CK_ULONG),
                ("ulMaxSessionCount", CK_ULONG), ("ulSessionCount", CK_ULONG),
                ("ulMaxRwSessionCount", CK_ULONG), ("ulRwSessionCount", CK_ULONG),
                ("ulMaxPinLen", CK_ULONG), ("ulMinPinLen", CK_ULONG),
                ("ulTotalPublicMemory", CK_ULONG), ("ulFreePublicMemory", CK_ULONG),
                ("ulTotalPrivateMemory", CK_ULONG), ("ulFreePrivateMemory", CK_ULONG),
                ("hardwareVersion", CK_VERSION), ("firmwareVersion", CK_VERSION), ("utcTime", ctypes.c_char * 16)]


class CK_SESSION_INFO(ctypes.Structure):
    _fields_ = [("slotID", CK_ULONG), ("state", CK_ULONG), ("flags", CK_ULONG), ("ulDeviceError", CK_ULONG)]


class CK_ATTRIBUTE(ctypes.Structure):
    _fields_ = [("type", CK_ULONG), ("pValue", ctypes.c_void_p), ("ulValueLen", CK_ULONG)]


class CK_MECHANISM(ctypes.Structure):
    _fields_ = [("mechanism", CK_ULONG), ("pParameter", ctypes.c_void_p), ("ulParameterLen", CK_ULONG)]


class P11Error(Exception):
    def __init__(self, function: str, rv: int) -> None:
        super().__init__(function, rv)
        self.function, self.rv = function, rv

    def __str__(self) -> str:
        return f"{self.function} failed: {ck.name(self.rv, 'CKR_')} (0x{self.rv:08X})"


def text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").rstrip(" \0")


def ulong(value: int) -> bytes:
    return int(value).to_bytes(ULONG_SIZE, sys.byteorder)


def to_ulong(raw: bytes) -> int:
    return int.from_bytes(raw[:ULONG_SIZE], sys.byteorder)


def boolean(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


# Attributes read as CK_ULONG or CK_BBOOL when a listing decodes them.
ULONG_ATTRS = {ck.CKA_CLASS, ck.CKA_KEY_TYPE, ck.CKA_MODULUS_BITS, ck.CKA_VALUE_LEN, ck.CKA_CERTIFICATE_TYPE}
BOOL_ATTRS = {ck.CKA_TOKEN, ck.CKA_PRIVATE, ck.CKA_SENSITIVE, ck.CKA_MODIFIABLE, ck.CKA_EXTRACTABLE,
              ck.CKA_ENCRYPT, ck.CKA_DECRYPT, ck.CKA_SIGN, ck.CKA_VERIFY, ck.CKA_SIGN_RECOVER,
              ck.CKA_VERIFY_RECOVER, ck.CKA_WRAP, ck.CKA_UNWRAP, ck.CKA_DERIVE}


def encode(attr: int, value: Any) -> bytes:
    if isinstance(value, bool):
        return boolean(value)
    if isinstance(value, int):
        return ulong(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def decode(attr: int, raw: bytes) -> Any:
    if attr in BOOL_ATTRS:
        return raw[:1] not in (b"", b"\x00")
    if attr in ULONG_ATTRS:
        return to_ulong(raw)
    return raw


class Template:
    """A CK_ATTRIBUTE array that keeps its buffers alive."""

    def __init__(self, items: Iterable[tuple[int, Any]]) -> None:
        items = list(items)
        self.array = (CK_ATTRIBUTE * max(len(items), 1))()
        self.count = len(items)
        self._keep = []
        for i, (attr, value) in enumerate(items):
            data = encode(attr, value)
            buf = ctypes.create_string_buffer(data, max(len(data), 1))
            self._keep.append(buf)
            self.array[i] = CK_ATTRIBUTE(attr, ctypes.cast(buf, ctypes.c_void_p), len(data))


class Module:
    """One loaded PKCS #11 module."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.dll = ctypes.CDLL(path)
        self.initialized = False

    def call(self, name: str, *args: Any) -> None:
        fn = getattr(self.dll, name)
        fn.restype = CK_ULONG
        rv = fn(*args)
        if rv:
            raise P11Error(name, rv)

    def initialize(self) -> None:
        self.call("C_Initialize", None)
        self.initialized = True

    def finalize(self) -> None:
        if self.initialized:
            self.initialized = False
            try:
                self.call("C_Finalize", None)
            except P11Error:
                pass

    def info(self) -> CK_INFO:
        info = CK_INFO()
        self.call("C_GetInfo", ctypes.byref(info))
        return info

    def slots(self, token_present: bool = True) -> list[int]:
        n = CK_ULONG()
        self.call("C_GetSlotList", ctypes.c_ubyte(token_present), None, ctypes.byref(n))
        arr = (CK_ULONG * max(n.value, 1))()
        self.call("C_GetSlotList", ctypes.c_ubyte(token_present), arr, ctypes.byref(n))
        return list(arr[: n.value])

    def slot_info(self, slot: int) -> CK_SLOT_INFO:
        info = CK_SLOT_INFO()
        self.call("C_GetSlotInfo", CK_ULONG(slot), ctypes.byref(info))
        return info

    def token_info(self, slot: int) -> CK_TOKEN_INFO:
        info = CK_TOKEN_INFO()
        self.call("C_GetTokenInfo", CK_ULONG(slot), ctypes.byref(info))
        return info

    def open_session(self, slot: int, rw: bool = True) -> int:
        h = CK_ULONG()
        flags = ck.CKF_SERIAL_SESSION | (ck.CKF_RW_SESSION if rw else 0)
        self.call("C_OpenSession", CK_ULONG(slot), CK_ULONG(flags), None, None, ctypes.byref(h))
        return h.value

    def close_session(self, h: int) -> None:
        self.call("C_CloseSession", CK_ULONG(h))

    def session_info(self, h: int) -> CK_SESSION_INFO:
        info = CK_SESSION_INFO()
        self.call("C_GetSessionInfo", CK_ULONG(h), ctypes.byref(info))
        return info

    def login(self, h: int, pin: str, user: int = ck.CKU_USER) -> None:
        data = pin.encode("utf-8")
        self.call("C_Login", CK_ULONG(h), CK_ULONG(user), ctypes.c_char_p(data), CK_ULONG(len(data)))

    def logout(self, h: int) -> None:
        self.call("C_Logout", CK_ULONG(h))

    def find(self, h: int, template: Iterable[tuple[int, Any]] = ()) -> list[int]:
        t = Template(template)
        self.call("C_FindObjectsInit", CK_ULONG(h), t.array, CK_ULONG(t.count))
        found: list[int] = []
        arr = (CK_ULONG * 64)()
        n = CK_ULONG()
        try:
            while True:
                self.call("C_FindObjects", CK_ULONG(h), arr, CK_ULONG(64), ctypes.byref(n))
                if not n.value:
                    break
                found += list(arr[: n.value])
        finally:
            try:
                self.call("C_FindObjectsFinal", CK_ULONG(h))
            except P11Error:
                pass
        return found

    def attribute(self, h: int, obj: int, attr: int) -> bytes | None:
        """One attribute's raw value, or None when the object lacks it or hides it."""
        a = CK_ATTRIBUTE(attr, None, 0)
        try:
            self.call("C_GetAttributeValue", CK_ULONG(h), CK_ULONG(obj), ctypes.byref(a), CK_ULONG(1))
        except P11Error as e:
            if e.rv in (ck.CKR_ATTRIBUTE_TYPE_INVALID, ck.CKR_ATTRIBUTE_SENSITIVE):
                return None
            raise
        if a.ulValueLen == UNAVAILABLE:
            return None
        buf = ctypes.create_string_buffer(max(a.ulValueLen, 1))
        a.pValue = ctypes.cast(buf, ctypes.c_void_p)
        self.call("C_GetAttributeValue", CK_ULONG(h), CK_ULONG(obj), ctypes.byref(a), CK_ULONG(1))
        return buf.raw[: a.ulValueLen]

    def attributes(self, h: int, obj: int, attrs: Iterable[int]) -> dict[int, Any]:
        out: dict[int, Any] = {}
        for attr in attrs:
            raw = self.attribute(h, obj, attr)
            if raw is not None:
                out[attr] = decode(attr, raw)
        return out

    def set_attributes(self, h: int, obj: int, template: Iterable[tuple[int, Any]]) -> None:
        t = Template(template)
        self.call("C_SetAttributeValue", CK_ULONG(h), CK_ULONG(obj), t.array, CK_ULONG(t.count))

    def destroy(self, h: int, obj: int) -> None:
        self.call("C_DestroyObject", CK_ULONG(h), CK_ULONG(obj))

    def random(self, h: int, size: int) -> bytes:
        buf = ctypes.create_string_buffer(max(size, 1))
        self.call("C_GenerateRandom", CK_ULONG(h), buf, CK_ULONG(size))
        return buf.raw[:size]

    @staticmethod
    def mechanism(mech: int, param: bytes | None = None) -> tuple[CK_MECHANISM, Any]:
        m = CK_MECHANISM()
        m.mechanism = mech
        buf = None
        if param:
            buf = ctypes.create_string_buffer(param, len(param))
            m.pParameter, m.ulParameterLen = ctypes.cast(buf, ctypes.c_void_p), len(param)
        return m, buf

    def generate_key(self, h: int, mech: int, template: Iterable[tuple[int, Any]]) -> int:
        m, _keep = self.mechanism(mech)
        t = Template(template)
        key = CK_ULONG()
        self.call("C_GenerateKey", CK_ULONG(h), ctypes.byref(m), t.array, CK_ULONG(t.count), ctypes.byref(key))
        return key.value

    def generate_key_pair(self, h: int, mech: int, public: Iterable[tuple[int, Any]],
                          private: Iterable[tuple[int, Any]]) -> tuple[int, int]:
        m, _keep = self.mechanism(mech)
        pub, priv = Template(public), Template(private)
        hpub, hpriv = CK_ULONG(), CK_ULONG()
        self.call("C_GenerateKeyPair", CK_ULONG(h), ctypes.byref(m), pub.array, CK_ULONG(pub.count),
                  priv.array, CK_ULONG(priv.count), ctypes.byref(hpub), ctypes.byref(hpriv))
        return hpub.value, hpriv.value

    def sign(self, h: int, mech: int, key: int, data: bytes, param: bytes | None = None) -> bytes:
        m, _keep = self.mechanism(mech, param)
        self.call("C_SignInit", CK_ULONG(h), ctypes.byref(m), CK_ULONG(key))
        n = CK_ULONG(0)
        self.call("C_Sign", CK_ULONG(h), ctypes.c_char_p(data), CK_ULONG(len(data)), None, ctypes.byref(n))
        buf = ctypes.create_string_buffer(max(n.value, 1))
        self.call("C_Sign", CK_ULONG(h), ctypes.c_char_p(data), CK_ULONG(len(data)), buf, ctypes.byref(n))
        return buf.raw[: n.value]
