"""The one Library of this process, between C_Initialize and C_Finalize."""
from __future__ import annotations

import os
import threading

from fxpkcs11 import ck
from fxpkcs11.errors import CKRError
from fxpkcs11.library import Library

lib: Library | None = None
lock = threading.Lock()


def current() -> Library:
    li = lib
    if li is None:
        raise CKRError(ck.CKR_CRYPTOKI_NOT_INITIALIZED, "C_Initialize has not been called")
    return li


def forked() -> bool:
    """True in a child that inherited the parent's Library: it must initialise again."""
    return lib is not None and lib.pid != os.getpid()
