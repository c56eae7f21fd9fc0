"""Bind every Python entry of libfxpkcs11.so (fxp_C_*) to its implementation.

Each entry catches everything: a CKRError becomes its CKR, any other exception becomes
CKR_FUNCTION_FAILED (CKR_GENERAL_ERROR for C_Initialize) and a log line. Nothing raised in
Python reaches C. A declared entry without an implementation answers
CKR_FUNCTION_NOT_SUPPORTED, so no entry is ever left unbound (cffi would return 0 = CKR_OK).
"""
from __future__ import annotations

from typing import Any, Callable

from fxpkcs11 import ck
from fxpkcs11 import log as logmod
from fxpkcs11.abi import crypto, crypto_ext, general, keys, marshal, objects, sessions
from fxpkcs11.errors import CKRError
from fxpkcs11.log import log

MODULES = (general, sessions, objects, crypto, crypto_ext, keys)
PREFIX = "fxp_"


def implementations() -> dict[str, Callable[..., int]]:
    out: dict[str, Callable[..., int]] = {}
    for mod in MODULES:
        for name, fn in vars(mod).items():
            if name.startswith("C_") and callable(fn) and fn.__module__ == mod.__name__:
                out[name] = fn
    return out


def _not_supported(name: str) -> Callable[..., int]:
    def fn(*args: Any) -> int:
        return ck.CKR_FUNCTION_NOT_SUPPORTED
    fn.__name__ = name
    return fn


def guard(name: str, fn: Callable[..., int]) -> Callable[..., int]:
    failure = ck.CKR_GENERAL_ERROR if name == "C_Initialize" else ck.CKR_FUNCTION_FAILED

    def entry(*args: Any) -> int:
        try:
            rv = fn(*args)
        except CKRError as e:
            rv = e.rv
            if e.text:
                log.info("%s: %s: %s", name, ck.name(rv, "CKR_"), e.text)
        except Exception:
            log.exception("%s: internal error", name)
            rv = failure
        if logmod.tracing:
            logmod.trace("%s -> %s", name, ck.name(rv, "CKR_"))
        return rv
    entry.__name__ = name
    return entry


def _on_cffi_error(exception: Any, exc_value: Any, traceback: Any) -> None:
    log.error("callback error: %s", exc_value)


def bind(ffi: Any, lib: Any) -> None:
    marshal.bind(ffi)
    impl = implementations()
    declared = [n[len(PREFIX):] for n in dir(lib) if n.startswith(PREFIX + "C_")]
    for name in declared:
        fn = guard(name, impl.get(name) or _not_supported(name))
        failure = ck.CKR_GENERAL_ERROR if name == "C_Initialize" else ck.CKR_FUNCTION_FAILED
        ffi.def_extern(name=PREFIX + name, error=failure, onerror=_on_cffi_error)(fn)
