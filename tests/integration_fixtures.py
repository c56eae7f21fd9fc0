"""Shared helpers for the PKCS #11 integration tests.

python-pkcs11 keeps one `lib` object per library path for the whole process (pkcs11._loaded)
and our library reads FXPKCS11_CFG only at C_Initialize, so every in-process test of a pytest
run shares one configuration. `p11_env` builds that configuration once per session;
`use_config()` makes sure the loaded library runs with it (C_Finalize + C_Initialize when
another module left it on a different one). Anything needing another configuration or a
fresh process runs a child process (`run_child`).

`LowLevel` calls the library's exported C_* functions directly (ctypes, the same loaded
library as python-pkcs11's), for what python-pkcs11 does not expose: C_GetSessionInfo,
exact return codes of the operation state machine, length queries, raw attributes.
"""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from support import LIB, PIN, ROOT, build_library, child_env, make_state, write_config  # noqa: E402

from fxpkcs11.tools.p11 import CK_ULONG  # noqa: E402
CK_UNAVAILABLE_INFORMATION = (1 << (8 * ctypes.sizeof(CK_ULONG))) - 1


@dataclass
class P11Env:
    dir: str
    state: str
    cfg: str
    log: str

    def log_text(self) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


def make_env(base: str, *, ftk: bool = True, partitions: dict | None = None, commands: list | None = None,
             identity: str | None = "crypto1", state_dir: str | None = None, log_mode: str = "INFO",
             make: bool = True) -> P11Env:
    """A state directory (unless `make` is false and `state_dir` exists) and a config file for it."""
    os.makedirs(base, exist_ok=True)
    state = state_dir or os.path.join(base, "state")
    if make:
        make_state(state, ftk=ftk, partitions=partitions, commands=commands)
    log = os.path.join(base, "fxpkcs11.log")
    cfg = write_config(os.path.join(base, "fxpkcs11.cfg"), state, identity=identity, log_file=log,
                       log_mode=log_mode)
    return P11Env(base, state, cfg, log)


# ------------------------------------------------------------------ in-process library

def use_config(cfg: str):
    """The process's python-pkcs11 `lib` for our library, running with configuration `cfg`."""
    import pkcs11
    from fxpkcs11 import state as fxstate

    build_library()
    os.environ["FXPKCS11_CFG"] = cfg
    try:
        lib = pkcs11.lib(LIB)  # the cached object; initialises it on first use or when finalised since
    except pkcs11.PKCS11Error:
        # someone initialised the library behind python-pkcs11's back (CKR_CRYPTOKI_ALREADY_INITIALIZED)
        ctypes.CDLL(LIB).C_Finalize(None)
        lib = pkcs11.lib(LIB)
    current = fxstate.lib  # the library runs in this interpreter: its state is visible here
    if current is None or os.path.abspath(current.config.path or "") != os.path.abspath(cfg):
        try:
            lib.finalize()  # closes every session of the other configuration
        except pkcs11.PKCS11Error:
            pass  # finalised behind python-pkcs11's back; it now knows
        lib.initialize()
    current = fxstate.lib
    assert current is not None and os.path.abspath(current.config.path) == os.path.abspath(cfg), \
        "the loaded library did not take our configuration"
    return lib


@pytest.fixture(scope="session")
def p11_env(tmp_path_factory) -> P11Env:
    build_library()
    return make_env(str(tmp_path_factory.mktemp("p11")))


# ------------------------------------------------------------------ child processes

def run_child(cfg: str, code: str, *, timeout: float = 180, check: bool = True, **extra_env: str) -> dict:
    """Run `code` in a fresh interpreter with child_env(cfg) from cwd="/"; the code prints
    one JSON object as its last line, which is returned (with the exit status under "_rc")."""
    prelude = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {ROOT!r})
        sys.path.insert(0, {HERE!r})
        import pkcs11
        from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
        LIB = {LIB!r}
        PIN = {PIN!r}
        def out(**kw):
            print(json.dumps(kw))
    """)
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd="/",
                          env=child_env(cfg, **extra_env), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"child failed ({proc.returncode}):\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    result["_rc"] = proc.returncode
    result["_stderr"] = proc.stderr
    return result


# ------------------------------------------------------------------ direct C calls

# The C structs come from the project's one ctypes declaration of them (PKCS11Manager's).
from fxpkcs11.tools.p11 import (CK_ATTRIBUTE, CK_MECHANISM, CK_SESSION_INFO, CK_TOKEN_INFO,  # noqa: E402,F401
                                CK_VERSION)


class LowLevel:
    """The exported C_* entry points of the already loaded library, returning raw CKRs."""

    def __init__(self, path: str = LIB) -> None:
        self.dll = ctypes.CDLL(path)  # same path: the same loaded library and state
        self._keep: list = []

    def fn(self, name: str):
        return getattr(self.dll, name)

    # sessions and login
    def open_session(self, rw: bool = True, slot: int = 0) -> tuple[int, int]:
        h = CK_ULONG()
        flags = 0x4 | (0x2 if rw else 0)
        rv = self.dll.C_OpenSession(CK_ULONG(slot), CK_ULONG(flags), None, None, ctypes.byref(h))
        return rv, h.value

    def token_info(self, slot: int = 0) -> tuple[int, CK_TOKEN_INFO]:
        info = CK_TOKEN_INFO()
        rv = self.dll.C_GetTokenInfo(CK_ULONG(slot), ctypes.byref(info))
        return rv, info

    def close_session(self, h: int) -> int:
        return self.dll.C_CloseSession(CK_ULONG(h))

    def session_info(self, h: int) -> tuple[int, CK_SESSION_INFO]:
        info = CK_SESSION_INFO()
        rv = self.dll.C_GetSessionInfo(CK_ULONG(h), ctypes.byref(info))
        return rv, info

    def login(self, h: int, pin: str, user: int = 1) -> int:
        data = pin.encode()
        return self.dll.C_Login(CK_ULONG(h), CK_ULONG(user), ctypes.c_char_p(data), CK_ULONG(len(data)))

    def logout(self, h: int) -> int:
        return self.dll.C_Logout(CK_ULONG(h))

    # mechanisms
    def mechanism(self, mech: int, param: bytes | ctypes.Structure | None = None) -> CK_MECHANISM:
        m = CK_MECHANISM()
        m.mechanism = mech
        if param is None:
            m.pParameter, m.ulParameterLen = None, 0
        else:
            buf = ctypes.create_string_buffer(bytes(param), len(bytes(param)))
            self._keep.append(buf)
            m.pParameter, m.ulParameterLen = ctypes.cast(buf, ctypes.c_void_p), len(bytes(param))
        self._keep.append(m)
        return m

    def init(self, kind: str, h: int, mech: int, key: int, param=None) -> int:
        m = self.mechanism(mech, param)
        return self.fn(f"C_{kind}Init")(CK_ULONG(h), ctypes.byref(m), CK_ULONG(key))

    def output_call(self, name: str, h: int, data: bytes | None, size: int | None) -> tuple[int, int, bytes]:
        """C_Sign / C_Encrypt / C_Decrypt (data given) or C_*Final (data None). size None asks
        for the length (NULL buffer); otherwise a buffer of `size` bytes is passed."""
        n = CK_ULONG(0 if size is None else size)
        buf = None if size is None else ctypes.create_string_buffer(max(size, 1))
        args = [CK_ULONG(h)]
        if data is not None:
            args += [ctypes.c_char_p(data), CK_ULONG(len(data))]
        args += [buf, ctypes.byref(n)]
        rv = self.fn(name)(*args)
        out = buf.raw[: n.value] if (buf is not None and rv == 0) else b""
        return rv, n.value, out

    def verify(self, h: int, data: bytes, sig: bytes) -> int:
        return self.dll.C_Verify(CK_ULONG(h), ctypes.c_char_p(data), CK_ULONG(len(data)),
                                 ctypes.c_char_p(sig), CK_ULONG(len(sig)))

    def update(self, name: str, h: int, data: bytes) -> int:
        return self.fn(name)(CK_ULONG(h), ctypes.c_char_p(data), CK_ULONG(len(data)))

    # objects
    def get_attribute(self, h: int, obj: int, attr: int) -> tuple[int, bytes | None]:
        a = CK_ATTRIBUTE(attr, None, 0)
        rv = self.dll.C_GetAttributeValue(CK_ULONG(h), CK_ULONG(obj), ctypes.byref(a), CK_ULONG(1))
        if rv != 0 or a.ulValueLen == CK_UNAVAILABLE_INFORMATION:
            return rv, None
        buf = ctypes.create_string_buffer(max(a.ulValueLen, 1))
        a.pValue = ctypes.cast(buf, ctypes.c_void_p)
        rv = self.dll.C_GetAttributeValue(CK_ULONG(h), CK_ULONG(obj), ctypes.byref(a), CK_ULONG(1))
        return rv, (buf.raw[: a.ulValueLen] if rv == 0 else None)

    def get_ulong(self, h: int, obj: int, attr: int) -> tuple[int, int | None]:
        rv, raw = self.get_attribute(h, obj, attr)
        return rv, (int.from_bytes(raw, sys.byteorder) if raw is not None else None)

    def find(self, h: int, template: dict[int, bytes]) -> tuple[int, list[int]]:
        attrs = (CK_ATTRIBUTE * max(len(template), 1))()
        keep = []
        for i, (t, v) in enumerate(template.items()):
            buf = ctypes.create_string_buffer(v, len(v))
            keep.append(buf)
            attrs[i] = CK_ATTRIBUTE(t, ctypes.cast(buf, ctypes.c_void_p), len(v))
        rv = self.dll.C_FindObjectsInit(CK_ULONG(h), attrs, CK_ULONG(len(template)))
        if rv:
            return rv, []
        found: list[int] = []
        arr = (CK_ULONG * 64)()
        n = CK_ULONG()
        while True:
            rv = self.dll.C_FindObjects(CK_ULONG(h), arr, CK_ULONG(64), ctypes.byref(n))
            if rv or not n.value:
                break
            found += list(arr[: n.value])
        self.dll.C_FindObjectsFinal(CK_ULONG(h))
        return rv, found


def ulong_bytes(v: int) -> bytes:
    return int(v).to_bytes(ctypes.sizeof(CK_ULONG), sys.byteorder)


def pss_params(hash_mech: int, mgf: int, salt: int) -> bytes:
    return ulong_bytes(hash_mech) + ulong_bytes(mgf) + ulong_bytes(salt)


def logged_in_session(token):
    """A logged-in R/W session for a module fixture; login state is per token, so another
    module may have left it logged in already."""
    import pkcs11.exceptions as E
    try:
        s = token.open(rw=True, user_pin=PIN)
    except E.UserAlreadyLoggedIn:
        s = token.open(rw=True)
    yield s
    try:
        s.close()
    except E.PKCS11Error:
        pass
