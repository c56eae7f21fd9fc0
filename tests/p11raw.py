"""Raw C calls for the conformance tests: templates built by hand, every CKR returned as is.

`Raw` extends integration_fixtures.LowLevel (the same loaded library) with the functions
python-pkcs11 does not expose or hides behind exceptions: token and PIN functions, copy and
size, digest keys and operation state, recovery, the dual functions and the 3.0 additions.
`conformance_env` makes a device with a security officer for the test partition.
"""
from __future__ import annotations

import ctypes
import os
from typing import Any

import pytest

from fxpkcs11 import ck
from support import PIN
from integration_fixtures import CK_ATTRIBUTE, CK_ULONG, LowLevel, P11Env, make_env, ulong_bytes, use_config

SO_NAME = "crypto1-so"
SO_PIN = "so-secret"


def add_security_officer(state_dir: str, name: str = SO_NAME, password: str = SO_PIN,
                         partition: str = "App") -> None:
    from vhsm.device import VirtualHSM
    from vhsm.passwords import hash_password
    dev = VirtualHSM(state_dir)
    try:
        dev.store.put_identity({"name": name, "role": partition, "password_hash": hash_password(password),
                                "flags": {"security_officer": True}, "failed_logins": 0})
    finally:
        dev.close()


def set_device_setting(state_dir: str, name: str, value: int) -> None:
    from vhsm import settings
    from vhsm.device import VirtualHSM
    dev = VirtualHSM(state_dir)
    try:
        settings.put(dev.store, name, value)
    finally:
        dev.close()


def conformance_env(base: str) -> P11Env:
    env = make_env(base)
    add_security_officer(env.state)
    return env


def encode(t: int, v: Any) -> bytes:
    if isinstance(v, bool):
        return b"\x01" if v else b"\x00"
    if isinstance(v, int):
        return ulong_bytes(v)
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, (list, tuple)):
        return b"".join(ulong_bytes(x) for x in v)
    return bytes(v)


class Template:
    """A CK_ATTRIBUTE array (nested arrays for dict values) kept alive with its buffers."""

    def __init__(self, attrs: dict[int, Any]) -> None:
        self.keep: list = []
        self.array = self._build(attrs)
        self.count = len(attrs)

    def _build(self, attrs: dict[int, Any]) -> Any:
        arr = (CK_ATTRIBUTE * max(len(attrs), 1))()
        for i, (t, v) in enumerate(attrs.items()):
            if isinstance(v, dict):
                inner = self._build(v)
                arr[i] = CK_ATTRIBUTE(t, ctypes.cast(inner, ctypes.c_void_p), len(v) * ctypes.sizeof(CK_ATTRIBUTE))
                continue
            data = encode(t, v)
            buf = ctypes.create_string_buffer(data, max(len(data), 1))
            self.keep.append(buf)
            arr[i] = CK_ATTRIBUTE(t, ctypes.cast(buf, ctypes.c_void_p) if data else None, len(data))
        self.keep.append(arr)
        return arr


def U(v: int) -> CK_ULONG:
    return CK_ULONG(v)


class Raw(LowLevel):
    # ------------------------------------------------------------ objects
    def create(self, h: int, attrs: dict[int, Any]) -> tuple[int, int]:
        t = Template(attrs)
        out = CK_ULONG()
        rv = self.dll.C_CreateObject(U(h), t.array, U(t.count), ctypes.byref(out))
        return rv, out.value

    def copy(self, h: int, obj: int, attrs: dict[int, Any]) -> tuple[int, int]:
        t = Template(attrs)
        out = CK_ULONG()
        rv = self.dll.C_CopyObject(U(h), U(obj), t.array, U(t.count), ctypes.byref(out))
        return rv, out.value

    def size(self, h: int, obj: int) -> tuple[int, int]:
        out = CK_ULONG()
        rv = self.dll.C_GetObjectSize(U(h), U(obj), ctypes.byref(out))
        return rv, out.value

    def set_attrs(self, h: int, obj: int, attrs: dict[int, Any]) -> int:
        t = Template(attrs)
        return self.dll.C_SetAttributeValue(U(h), U(obj), t.array, U(t.count))

    def destroy(self, h: int, obj: int) -> int:
        return self.dll.C_DestroyObject(U(h), U(obj))

    def get_attrs(self, h: int, obj: int, spec: list[tuple[int, int | None]]) -> tuple[int, list]:
        """spec: (type, buffer size or None for a null pValue). Returns the CKR and, per
        attribute, (ulValueLen, bytes or None)."""
        arr = (CK_ATTRIBUTE * len(spec))()
        bufs = []
        for i, (t, size) in enumerate(spec):
            buf = ctypes.create_string_buffer(max(size or 0, 1)) if size is not None else None
            bufs.append(buf)
            arr[i] = CK_ATTRIBUTE(t, ctypes.cast(buf, ctypes.c_void_p) if buf is not None else None, size or 0)
        rv = self.dll.C_GetAttributeValue(U(h), U(obj), arr, U(len(spec)))
        out = []
        for i, buf in enumerate(bufs):
            n = arr[i].ulValueLen
            data = buf.raw[:n] if buf is not None and n != ck.CK_UNAVAILABLE_INFORMATION else None
            out.append((n, data))
        return rv, out

    def attr(self, h: int, obj: int, t: int) -> bytes | None:
        rv, data = self.get_attribute(h, obj, t)
        return data if rv == 0 else None

    def bool_attr(self, h: int, obj: int, t: int) -> bool | None:
        data = self.attr(h, obj, t)
        return None if data is None else data != b"\x00"

    def generate_key(self, h: int, mech: int, attrs: dict[int, Any]) -> tuple[int, int]:
        t = Template(attrs)
        m = self.mechanism(mech)
        out = CK_ULONG()
        rv = self.dll.C_GenerateKey(U(h), ctypes.byref(m), t.array, U(t.count), ctypes.byref(out))
        return rv, out.value

    def generate_pair(self, h: int, mech: int, pub: dict, priv: dict) -> tuple[int, int, int]:
        tp, tv = Template(pub), Template(priv)
        m = self.mechanism(mech)
        hp, hv = CK_ULONG(), CK_ULONG()
        rv = self.dll.C_GenerateKeyPair(U(h), ctypes.byref(m), tp.array, U(tp.count), tv.array, U(tv.count),
                                        ctypes.byref(hp), ctypes.byref(hv))
        return rv, hp.value, hv.value

    def rsa_pair(self, h: int, bits: int = 2048, pub: dict | None = None, priv: dict | None = None):
        rv, p, v = self.generate_pair(h, ck.CKM_RSA_PKCS_KEY_PAIR_GEN,
                                      {ck.CKA_MODULUS_BITS: bits, **(pub or {})}, dict(priv or {}))
        assert rv == 0, hex(rv)
        return p, v

    def aes(self, h: int, length: int = 16, attrs: dict | None = None) -> int:
        rv, k = self.generate_key(h, ck.CKM_AES_KEY_GEN, {ck.CKA_VALUE_LEN: length, **(attrs or {})})
        assert rv == 0, hex(rv)
        return k

    def aes_value(self, h: int, value: bytes, extra: dict | None = None) -> int:
        rv, k = self.create(h, {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: ck.CKK_AES, ck.CKA_VALUE: value,
                                ck.CKA_SENSITIVE: False, ck.CKA_EXTRACTABLE: True, **(extra or {})})
        assert rv == 0, hex(rv)
        return k

    def wrap(self, h: int, mech: int, wkey: int, key: int, param: bytes | None = None) -> tuple[int, bytes]:
        m = self.mechanism(mech, param)
        n = CK_ULONG(4096)
        buf = ctypes.create_string_buffer(4096)
        rv = self.dll.C_WrapKey(U(h), ctypes.byref(m), U(wkey), U(key), buf, ctypes.byref(n))
        return rv, buf.raw[:n.value] if rv == 0 else b""

    def unwrap(self, h: int, mech: int, ukey: int, blob: bytes, attrs: dict[int, Any]) -> tuple[int, int]:
        m = self.mechanism(mech)
        t = Template(attrs)
        out = CK_ULONG()
        rv = self.dll.C_UnwrapKey(U(h), ctypes.byref(m), U(ukey), ctypes.c_char_p(blob), U(len(blob)),
                                  t.array, U(t.count), ctypes.byref(out))
        return rv, out.value

    # ------------------------------------------------------------ digest, state, recovery
    def digest_init(self, h: int, mech: int = ck.CKM_SHA256) -> int:
        m = self.mechanism(mech)
        return self.dll.C_DigestInit(U(h), ctypes.byref(m))

    def digest_key(self, h: int, key: int) -> int:
        return self.dll.C_DigestKey(U(h), U(key))

    def digest_final(self, h: int) -> tuple[int, bytes]:
        rv, _, out = self.output_call("C_DigestFinal", h, None, 64)
        return rv, out

    def get_state(self, h: int) -> tuple[int, bytes]:
        n = CK_ULONG()
        rv = self.dll.C_GetOperationState(U(h), None, ctypes.byref(n))
        if rv:
            return rv, b""
        buf = ctypes.create_string_buffer(max(n.value, 1))
        rv = self.dll.C_GetOperationState(U(h), buf, ctypes.byref(n))
        return rv, buf.raw[:n.value]

    def set_state(self, h: int, blob: bytes, enc_key: int = 0, auth_key: int = 0) -> int:
        return self.dll.C_SetOperationState(U(h), ctypes.c_char_p(blob), U(len(blob)), U(enc_key), U(auth_key))

    def recover(self, name: str, h: int, data: bytes, size: int | None = 1024) -> tuple[int, int, bytes]:
        return self.output_call(name, h, data, size)

    def dual(self, name: str, h: int, data: bytes, size: int | None = 4096) -> tuple[int, int, bytes]:
        return self.output_call(name, h, data, size)

    # ------------------------------------------------------------ tokens, PINs, 3.0
    def init_token(self, slot: int, pin: str | None, label: str) -> int:
        raw = label.encode().ljust(32, b" ")
        p = pin.encode() if pin is not None else None
        return self.dll.C_InitToken(U(slot), ctypes.c_char_p(p) if p is not None else None, U(len(p or b"")),
                                    ctypes.c_char_p(raw))

    def init_pin(self, h: int, pin: str) -> int:
        p = pin.encode()
        return self.dll.C_InitPIN(U(h), ctypes.c_char_p(p), U(len(p)))

    def set_pin(self, h: int, old: str, new: str) -> int:
        o, n = old.encode(), new.encode()
        return self.dll.C_SetPIN(U(h), ctypes.c_char_p(o), U(len(o)), ctypes.c_char_p(n), U(len(n)))

    def login_user(self, h: int, user: int, pin: str, username: str | None) -> int:
        p = pin.encode()
        u = username.encode() if username is not None else None
        return self.dll.C_LoginUser(U(h), U(user), ctypes.c_char_p(p), U(len(p)),
                                    ctypes.c_char_p(u) if u is not None else None, U(len(u or b"")))

    def token_flags(self, slot: int = 0) -> int:
        rv, info = self.token_info(slot)
        assert rv == 0
        return info.flags

    def close_all(self, slot: int = 0) -> int:
        return self.dll.C_CloseAllSessions(U(slot))


def uniq(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"


# ------------------------------------------------------------------ fixtures shared by the conformance tests

@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return conformance_env(str(tmp_path_factory.mktemp("conformance")))


@pytest.fixture(scope="module")
def raw(env):
    use_config(env.cfg)
    return Raw()


@pytest.fixture(scope="module")
def h(raw):
    rv, handle = raw.open_session(rw=True)
    assert rv == 0
    assert raw.login(handle, PIN) in (0, ck.CKR_USER_ALREADY_LOGGED_IN)
    yield handle
    raw.close_session(handle)


@pytest.fixture
def relogin(raw, h):
    yield
    raw.logout(h)
    assert raw.login(h, PIN) == 0
