"""Device-wide settings the administrators change (`vhsm settings set`, dual control).

Each setting is one integer kept in the store's meta table under "setting:<name>"; a
missing or unreadable value reads as the default. The device reads them on every use, so
a change applies at once to every connected application, in process or over the network.

    max-login-failures  wrong PINs in a row after which an identity is locked (CKR_PIN_LOCKED)
                        until an administrator runs `vhsm identity unlock --name N`
    rsa-min-bits        the smallest RSA modulus the device generates (C_GenerateKeyPair)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PREFIX = "setting:"


@dataclass(frozen=True)
class Setting:
    name: str
    default: int
    low: int
    high: int
    summary: str

    @property
    def key(self) -> str:
        return PREFIX + self.name


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("max-login-failures", 10, 1, 100,
            "wrong PINs in a row before an identity is locked (only an administrator unlocks it)"),
    Setting("rsa-min-bits", 2048, 1024, 4096, "smallest RSA key, in bits, that the device generates"),
)}

MAX_LOGIN_FAILURES = "max-login-failures"
RSA_MIN_BITS = "rsa-min-bits"


def spec(name: str) -> Setting:
    try:
        return SETTINGS[name]
    except KeyError:
        raise ValueError(f"unknown setting {name!r}; known: {', '.join(sorted(SETTINGS))}") from None


def parse(name: str, value: Any) -> int:
    """A new value for a setting, checked against its range (ValueError says why not)."""
    s = spec(name)
    try:
        n = int(str(value).strip(), 10)
    except ValueError:
        raise ValueError(f"{name} takes a whole number, not {value!r}") from None
    if not s.low <= n <= s.high:
        raise ValueError(f"{name} is {s.low} to {s.high}, not {n}")
    return n


def get(store: Any, name: str) -> int:
    s = spec(name)
    raw = store.get_meta(s.key)
    if raw is None:
        return s.default
    try:
        n = int(raw)
    except ValueError:
        return s.default
    return n if s.low <= n <= s.high else s.default


def put(store: Any, name: str, value: Any) -> int:
    n = parse(name, value)
    store.set_meta(spec(name).key, str(n))
    return n


def current(store: Any) -> dict[str, int]:
    return {name: get(store, name) for name in SETTINGS}


def max_login_failures(store: Any) -> int:
    return get(store, MAX_LOGIN_FAILURES)


def rsa_min_bits(store: Any) -> int:
    """The smallest RSA modulus key generation accepts (vhsm/commands/keys.py reads it)."""
    return get(store, RSA_MIN_BITS)
