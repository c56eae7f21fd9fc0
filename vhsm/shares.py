"""M-of-N secret sharing (Shamir over GF(2^8)) and the PIN-protected card files that hold
one share each, standing in for the smart cards a Vectera Plus writes major key fragments to.

Any M shares rebuild the secret; fewer give no information about it.
"""
from __future__ import annotations

import json
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CARD_FORMAT = "fxvhsm-card-1"
KDF_N, KDF_R, KDF_P = 2 ** 14, 8, 1


class ShareError(ValueError):
    pass


# ------------------------------------------------------------------ GF(2^8), AES polynomial

def _tables() -> tuple[list[int], list[int]]:
    exp, log = [0] * 510, [0] * 256
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x ^= (x << 1) ^ (0x11B if x & 0x80 else 0)  # multiply by the generator 3
        x &= 0xFF
    for i in range(255, 510):
        exp[i] = exp[i - 255]
    return exp, log


EXP, LOG = _tables()


def _mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return EXP[LOG[a] + LOG[b]]


def _div(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError
    if a == 0:
        return 0
    return EXP[(LOG[a] - LOG[b]) % 255]


def split(secret: bytes, m: int, n: int) -> list[tuple[int, bytes]]:
    """n shares (x, y-bytes) of which any m rebuild `secret`."""
    if not 2 <= m <= n <= 9:
        raise ShareError("need 2 <= M <= N <= 9")
    coeffs = [[b] + [secrets.randbelow(256) for _ in range(m - 1)] for b in secret]
    shares = []
    for x in range(1, n + 1):
        ys = bytearray()
        for poly in coeffs:
            y = 0
            for c in reversed(poly):  # Horner
                y = _mul(y, x) ^ c
            ys.append(y)
        shares.append((x, bytes(ys)))
    return shares


def combine(shares: list[tuple[int, bytes]]) -> bytes:
    """Lagrange interpolation at x = 0."""
    xs = [x for x, _ in shares]
    if len(set(xs)) != len(xs) or 0 in xs:
        raise ShareError("shares must have distinct, non-zero indexes")
    length = len(shares[0][1])
    if any(len(y) != length for _, y in shares):
        raise ShareError("shares differ in length")
    out = bytearray(length)
    for i, (xi, yi) in enumerate(shares):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                num = _mul(num, xj)
                den = _mul(den, xi ^ xj)
        w = _div(num, den)
        for k in range(length):
            out[k] ^= _mul(yi[k], w)
    return bytes(out)


# ------------------------------------------------------------------ card files

def _pin_key(pin: str, salt: bytes) -> bytes:
    import hashlib
    return hashlib.scrypt(pin.encode(), salt=salt, n=KDF_N, r=KDF_R, p=KDF_P, dklen=32, maxmem=64 * 1024 * 1024)


def card_name(key: str, index: int) -> str:
    return f"{key}-card-{index}.json"


def make_card(key: str, kcv: str, m: int, n: int, share: tuple[int, bytes], pin: str) -> bytes:
    """One card's file content: the share encrypted under a key derived from its PIN, with
    the header (which key, its KCV, M, N, the card's index) as associated data."""
    x, y = share
    salt, nonce = os.urandom(16), os.urandom(12)
    header = {"format": CARD_FORMAT, "key": key, "kcv": kcv, "m": m, "n": n, "index": x}
    aad = json.dumps(header, sort_keys=True).encode()
    body = AESGCM(_pin_key(pin, salt)).encrypt(nonce, y, aad)
    return json.dumps({**header, "salt": salt.hex(), "nonce": nonce.hex(), "share": body.hex()}, indent=1).encode()


def open_card(data: bytes, pin: str, name: str = "card") -> tuple[dict, tuple[int, bytes]]:
    try:
        doc = json.loads(data)
        header = {k: doc[k] for k in ("format", "key", "kcv", "m", "n", "index")}
        salt, nonce, body = (bytes.fromhex(doc[k]) for k in ("salt", "nonce", "share"))
    except (ValueError, KeyError, TypeError) as e:
        raise ShareError(f"{name}: not a readable card file ({e})") from None
    if header["format"] != CARD_FORMAT:
        raise ShareError(f"{name}: unknown card format {header['format']!r}")
    aad = json.dumps(header, sort_keys=True).encode()
    try:
        y = AESGCM(_pin_key(pin, salt)).decrypt(nonce, body, aad)
    except (InvalidTag, ValueError):
        raise ShareError(f"{name}: wrong PIN, or the card file is damaged") from None
    return header, (header["index"], y)


def write_cards(folder: str, cards: list[tuple[str, bytes]]) -> list[str]:
    os.makedirs(folder, mode=0o700, exist_ok=True)
    paths = []
    for name, data in cards:
        path = os.path.join(folder, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        paths.append(path)
    return paths


def read_cards(folder: str, key: str) -> list[tuple[str, bytes]]:
    """The card files of one key in a folder, in card order."""
    try:
        names = sorted(f for f in os.listdir(folder) if f.startswith(f"{key}-card-"))
    except OSError as e:
        raise ShareError(f"cannot read the card folder {folder}: {e.strerror}") from None
    out = []
    for name in names:
        try:
            with open(os.path.join(folder, name), "rb") as f:
                out.append((name, f.read()))
        except OSError as e:
            raise ShareError(f"{name}: {e.strerror}") from None
    return out
