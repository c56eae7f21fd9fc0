"""Device information, random numbers and the clock."""
from __future__ import annotations

import os
import time
from typing import Any

from fxpkcs11 import ck
from vhsm import settings
from vhsm.excrypt import DeviceError, Tag

MIN_PIN, MAX_PIN = 4, 64
MAX_RANDOM = 1 << 20


def echo(conn: Any, role: dict, f: dict) -> dict:
    return {Tag.ECHO_DATA: f.get(Tag.ECHO_DATA, ""), Tag.FIRMWARE: conn.device.store.get_meta("firmware")}


def serial(conn: Any, role: dict, f: dict) -> dict:
    return {Tag.SERIAL: conn.device.serial}


def restrictions(conn: Any, role: dict, f: dict) -> dict:
    """Limits and PIN state for C_GetTokenInfo: PIN lengths, the FTK, and for the user (and
    security officer) identity named, whether it exists, its wrong-PIN count against the
    device's limit, and the token label its partition was given by C_InitToken."""
    ftk = conn.device.ftk()
    store = conn.device.store
    name = f.get(Tag.USER)
    ident = store.get_identity(name) if name else None
    so_name = f.get(Tag.SO_USER)
    so = store.get_identity(so_name) if so_name else None
    out = {Tag.MIN_PIN: MIN_PIN, Tag.MAX_PIN: MAX_PIN, Tag.FTK_KCV: ftk.kcv if ftk else "",
           Tag.LOGGED_IN: conn.identity or "", Tag.IDENTITY_EXISTS: ident is not None,
           Tag.MAX_FAILURES: settings.max_login_failures(store)}
    if ident is not None:
        out[Tag.USER_FAILURES] = int(ident.get("failed_logins") or 0)
        out[Tag.USER_PIN_SET] = not (ident.get("flags") or {}).get("pin_reset")
    if so is not None and (so.get("flags") or {}).get("security_officer"):
        out[Tag.SO_EXISTS] = True
        out[Tag.SO_FAILURES] = int(so.get("failed_logins") or 0)
    partition = (ident or so or {}).get("role")
    if partition:
        r = store.get_role(partition)
        label = ((r or {}).get("settings") or {}).get("token_label")
        if label:
            out[Tag.TOKEN_LABEL] = label
    return out


def clock(conn: Any, role: dict, f: dict) -> dict:
    return {Tag.TIME: time.strftime("%Y%m%d%H%M%S", time.gmtime())}


def random(conn: Any, role: dict, f: dict) -> dict:
    n = f.get(Tag.LENGTH, 0)
    if not isinstance(n, int) or not 0 <= n <= MAX_RANDOM:
        raise DeviceError(ck.CKR_ARGUMENTS_BAD, f"random length must be 0..{MAX_RANDOM}")
    return {Tag.DATA: os.urandom(n)}


def seed(conn: Any, role: dict, f: dict) -> dict:
    # The OS generator cannot be seeded from user space; PKCS #11 allows accepting and
    # discarding the seed when the generator does not need it.
    return {}


HANDLERS = {"ECHO": echo, "HASH": serial, "PRMD": restrictions, "TIME": clock, "RAND": random, "SEED": seed}
