"""fxpkcs11.log: levels ERROR, WARN, INFO, DEBUG and TRACE (each C call and each Excrypt
command with its result). Secrets never reach it: PINs and passwords are not formatted."""
from __future__ import annotations

import logging
import os

from fxpkcs11.paths import default_log_file

TRACE = 5
logging.addLevelName(TRACE, "TRACE")
LEVELS = {"NONE": logging.CRITICAL + 10, "ERROR": logging.ERROR, "WARN": logging.WARNING,
          "INFO": logging.INFO, "DEBUG": logging.DEBUG, "TRACE": TRACE}

log = logging.getLogger("fxpkcs11")
log.propagate = False
_handler: logging.Handler | None = None
# Read on the hot path instead of calling isEnabledFor().
tracing = False


def setup(mode: str = "ERROR", path: str | None = None) -> None:
    """(Re)configure the log; called by C_Initialize from the configuration."""
    global _handler, tracing
    path = path or os.environ.get("FXPKCS11_LOG") or default_log_file()
    level = LEVELS.get(mode.upper(), logging.ERROR)
    if _handler is not None:
        log.removeHandler(_handler)
        _handler.close()
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        stream = os.fdopen(fd, "a", buffering=1)
        _handler = logging.StreamHandler(stream)
    except OSError:
        _handler = logging.NullHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    log.addHandler(_handler)
    log.setLevel(level)
    logging.getLogger("vhsm").handlers[:] = [_handler]
    logging.getLogger("vhsm").setLevel(level)
    logging.getLogger("vhsm").propagate = False
    tracing = level <= TRACE


def trace(msg: str, *args: object) -> None:
    if tracing:
        log.log(TRACE, msg, *args)
