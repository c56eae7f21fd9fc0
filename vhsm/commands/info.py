"""Device information, random numbers and the clock."""
from __future__ import annotations

import os
import time
from typing import Any

from fxpkcs11 import ck
from vhsm.excrypt import DeviceError, Tag

MIN_PIN, MAX_PIN = 4, 64
MAX_RANDOM = 1 << 20


def echo(conn: Any, role: dict, f: dict) -> dict:
    return {Tag.ECHO_DATA: f.get(Tag.ECHO_DATA, ""), Tag.FIRMWARE: conn.device.store.get_meta("firmware")}


def serial(conn: Any, role: dict, f: dict) -> dict:
    return {Tag.SERIAL: conn.device.serial}


def restrictions(conn: Any, role: dict, f: dict) -> dict:
    ftk = conn.device.ftk()
    name = f.get(Tag.USER)
    exists = bool(name) and conn.device.store.get_identity(name) is not None
    return {Tag.MIN_PIN: MIN_PIN, Tag.MAX_PIN: MAX_PIN, Tag.FTK_KCV: ftk.kcv if ftk else "",
            Tag.LOGGED_IN: conn.identity or "", Tag.IDENTITY_EXISTS: exists}


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
