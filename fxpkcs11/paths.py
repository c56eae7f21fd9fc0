"""Where the built library and the provider's files live."""
from __future__ import annotations

import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
LIBRARY_NAME = "libfxpkcs11.so"


def module_path() -> str | None:
    """Absolute path of the built libfxpkcs11.so, or None when it is not built."""
    path = os.path.join(PACKAGE_DIR, "lib", LIBRARY_NAME)
    return path if os.path.exists(path) else None


def default_log_file() -> str:
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(state, "fxpkcs11", "fxpkcs11.log")
