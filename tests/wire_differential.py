"""The wire codec's C fast path against vhsm/wire.py's own codec, value by value.

Whenever the fast path answers, its answer must be what wire.py gives; where wire.py refuses
a frame, the fast path must not answer. Used by tests/unit/test_wire_fast.py and, with the
fast path built under the sanitizers, by tests/stress/fuzz_codec.py.
"""
from __future__ import annotations

import random
from typing import Any

from vhsm import wire

VALUES: dict[str, list[Any]] = {
    "text": ["", "hello", "a b\tc", "bad;text", "<x>", "caf\u00e9", 17],
    "utext": ["", "Admin1", "caf\u00e9"],
    "int": [0, 1, -1, 7, 2 ** 40, -(2 ** 62), 10 ** 20, True],
    "bool": [True, False, 0, 1],
    "hex": [b"", b"\x00\xff", bytes(range(256)), b"x" * 300, bytearray(b"ab"), bytearray(b"r" * 260),
            memoryview(b"m" * 300), memoryview(b"mv"), memoryview(b"abcdefgh").cast("i"),
            memoryview(b"abcdefgh")[::2], memoryview(b"abcd").cast("c")],
    "ints": [[], [1, 2, 3]],
    "attrs": [{}, {0: 1, 3: b"label", 0x102: b"id"}],
    "json": [b"", b"\x00" * 16, {"iv": b"\x01" * 8, "n": 3}, [1, "x"], 5],
}
MUTATION_BYTES = b"[];<>{}#,-XYN0123456789abcdefABCDEFGHOPSZ \t\x00\xff"


def python_decode(body: bytes) -> tuple[str, Any]:
    """("ok", (code, fields)) or ("refused", None), from wire.py alone."""
    keep = wire._fast
    wire._fast = None
    try:
        return ("ok", wire._decode(body))
    except wire.WireError:
        return ("refused", None)
    finally:
        wire._fast = keep


def python_frame(code: str, fields: dict, status: str | None, binary: bool) -> bytes | Exception:
    keep = wire._fast
    wire._fast = None
    try:
        return wire._frame(code, fields, status, binary)
    except Exception as e:  # the fast path must then give up too
        return e
    finally:
        wire._fast = keep


def check_decode(body: bytes) -> None:
    verdict, expected = python_decode(body)
    got = wire._fast.decode(body)
    if verdict == "refused":
        assert got is None, body
    elif got is not None:
        assert got == expected, body
        assert [type(v) for v in got[1].values()] == [type(v) for v in expected[1].values()], body


def check_encode(code: str, fields: dict, status: str | None, binary: bool) -> bytes | None:
    """The frame wire.py makes (None when it raises), having checked the fast path's."""
    expected = python_frame(code, fields, status, binary)
    got = wire._fast.encode(code, fields, status, binary)
    if isinstance(expected, Exception):
        assert got is None
        return None
    if got is not None:
        assert got == expected, (code, fields)
    return expected


def random_fields(rng: random.Random) -> dict:
    tags = rng.sample(sorted(wire.KINDS), rng.randint(0, 6))
    return {tag: rng.choice(VALUES[wire.KINDS[tag]]) for tag in tags}


def mutate(frame: bytes, rng: random.Random) -> bytes:
    b = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        at = rng.randrange(len(b) + 1)
        if op == 0 and b:
            del b[min(at, len(b) - 1)]
        elif op == 1:
            b.insert(at, rng.choice(MUTATION_BYTES))
        elif op == 2 and b:
            b[min(at, len(b) - 1)] = rng.choice(MUTATION_BYTES)
        elif b:
            del b[at:at + rng.randrange(1, 8)]
    return bytes(b)


def round_of_checks(rng: random.Random, mutants: int) -> int:
    """One random frame, encoded and decoded both ways, then `mutants` mutants of it decoded
    both ways. The number of frames checked."""
    frame = check_encode(rng.choice(["GPSE", "RAND", "X1", "ECHO"]), random_fields(rng),
                         rng.choice([None, "Y", "N"]), rng.random() < 0.4)
    if frame is None:
        return 0
    check_decode(frame)
    for _ in range(mutants):
        check_decode(mutate(frame, rng))
    return 1 + mutants
