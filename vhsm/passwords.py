"""Identity passwords, stored salted and hashed with scrypt.

The stored form is self-describing so the cost can be raised later without
invalidating existing hashes: ``scrypt$<n>$<r>$<p>$<salt-hex>$<hash-hex>``.
"""

from __future__ import annotations

import hashlib
import hmac
import os

SCHEME = "scrypt"
N = 2**14
R = 8
P = 1
SALT_LEN = 16
HASH_LEN = 32

# Bounds accepted when verifying, so a tampered stored string cannot make us
# allocate gigabytes or spin for minutes.
_MAX_N = 2**20
_MAX_R = 32
_MAX_P = 16


def _maxmem(n: int, r: int, p: int) -> int:
    # scrypt needs about 128*n*r bytes for V plus 128*r*p for B; leave headroom.
    return 128 * r * (n + p + 2) + 2 * 1024 * 1024


def _derive(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
        maxmem=_maxmem(n, r, p), dklen=dklen,
    )


def hash_password(password: str) -> str:
    """Return the stored form of ``password`` with a fresh random salt."""
    if not isinstance(password, str):
        raise TypeError("password must be a str")
    salt = os.urandom(SALT_LEN)
    digest = _derive(password, salt, N, R, P, HASH_LEN)
    return f"{SCHEME}${N}${R}${P}${salt.hex()}${digest.hex()}"


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    if not isinstance(stored, str):
        return None
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        return None
    try:
        n, r, p = (int(x, 10) for x in parts[1:4])
        salt = bytes.fromhex(parts[4])
        digest = bytes.fromhex(parts[5])
    except ValueError:
        return None
    if not (1 < n <= _MAX_N and n & (n - 1) == 0):
        return None
    if not (0 < r <= _MAX_R and 0 < p <= _MAX_P):
        return None
    if not salt or not (16 <= len(digest) <= 64):
        return None
    return n, r, p, salt, digest


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored``; False for any malformed input."""
    parsed = _parse(stored)
    if parsed is None or not isinstance(password, str):
        return False
    n, r, p, salt, digest = parsed
    try:
        candidate = _derive(password, salt, n, r, p, len(digest))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(candidate, digest)


def needs_rehash(stored: str) -> bool:
    """True if ``stored`` is malformed or weaker than the current parameters."""
    parsed = _parse(stored)
    if parsed is None:
        return True
    n, r, p, salt, digest = parsed
    return n < N or r < R or p < P or len(salt) < SALT_LEN or len(digest) < HASH_LEN
