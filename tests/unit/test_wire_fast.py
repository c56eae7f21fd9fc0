"""The C fast path of the wire codec (native/wirecodec.c) against wire.py's own codec.

Whenever the fast path answers, its answer must be what wire.py gives; where wire.py refuses
a frame, the fast path must not answer. Checked on typical frames of every tag, on random
values and on random mutations of them.
"""
import random

import pytest

from vhsm import wire
from vhsm.excrypt import Command, Reply

fast = wire._fast
pytestmark = pytest.mark.skipif(fast is None, reason="vhsm._wirecodec is not built")

VALUES = {
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


def python_fields(body: bytes):
    keep = wire._fast
    wire._fast = None
    try:
        return ("ok", wire._decode(body))
    except wire.WireError:
        return ("refused", None)
    finally:
        wire._fast = keep


def python_frame(code, fields, status, binary):
    keep = wire._fast
    wire._fast = None
    try:
        return wire._frame(code, fields, status, binary)
    except Exception as e:  # the fast path must then give up too
        return e
    finally:
        wire._fast = keep


def check_decode(body: bytes) -> None:
    verdict, expected = python_fields(body)
    got = fast.decode(body)
    if verdict == "refused":
        assert got is None, body
    elif got is not None:
        assert got == expected, body
        assert [type(v) for v in got[1].values()] == [type(v) for v in expected[1].values()], body


def check_encode(code, fields, status, binary) -> bytes | None:
    expected = python_frame(code, fields, status, binary)
    got = fast.encode(code, fields, status, binary)
    if isinstance(expected, Exception):
        assert got is None
        return None
    if got is not None:
        assert got == expected, (code, fields)
    return expected


def random_fields(rng: random.Random) -> dict:
    tags = rng.sample(sorted(wire.KINDS), rng.randint(0, 6))
    return {tag: rng.choice(VALUES[wire.KINDS[tag]]) for tag in tags}


def test_the_fast_path_is_built_where_the_tests_run():
    # make build compiles it; without it every frame would take the slow path unnoticed
    assert fast is not None


def test_typical_frames_take_the_fast_path_and_match():
    init = Command("GPSE", {"SH": 7, "MC": 0x1082, "MP": b"\0" * 16, "OB": 12, "PH": "I"})
    final = Command("GPSE", {"SH": 7, "DA": b"y" * 16, "LN": 16, "PH": "F"})
    reply = Reply("GPSE", "Y", {"RS": b"z" * 16})
    for frame in (wire.encode_command(init), wire.encode_command(final), wire.encode_reply(reply)):
        assert fast.decode(frame) is not None
        check_decode(frame)
    assert fast.encode("GPSE", init.fields, None, True) == python_frame("GPSE", init.fields, None, True)
    big = Command("GPSE", {"SH": 7, "DA": b"q" * 65536, "PH": "F"})
    assert fast.encode("GPSE", big.fields, None, True) == python_frame("GPSE", big.fields, None, True)


def test_every_tag_and_value_kind_round_trips_alike():
    for tag, kind in wire.KINDS.items():
        for value in VALUES[kind]:
            for binary in (False, True):
                frame = check_encode("TEST", {tag: value}, None, binary)
                if frame is not None and not wire.is_envelope(frame):
                    check_decode(frame)


def test_random_frames_and_their_mutations():
    rng = random.Random(20261129)
    alphabet = b"[];<>{}#,-XYN0123456789abcdefABCDEFGHOPSZ \t\x00\xff"
    for _ in range(3000):
        fields = random_fields(rng)
        status = rng.choice([None, "Y", "N"])
        frame = check_encode(rng.choice(["GPSE", "RAND", "X1", "ECHO"]), fields, status, rng.random() < 0.3)
        if frame is None:
            continue
        check_decode(frame)
        for _ in range(8):
            b = bytearray(frame)
            for _ in range(rng.randint(1, 3)):
                op = rng.randrange(3)
                at = rng.randrange(len(b) + 1)
                if op == 0 and b:
                    del b[min(at, len(b) - 1)]
                elif op == 1:
                    b.insert(at, rng.choice(alphabet))
                elif b:
                    b[min(at, len(b) - 1)] = rng.choice(alphabet)
            check_decode(bytes(b))


@pytest.mark.parametrize("body", [
    b"", b"[", b"]", b"[]", b"[AO]", b"[AOX]", b"[AOX;]", b"[AOX;;]", b"[AOX;SH1;;]", b"[AOX;SH1]",
    b"[AOTOOLONGCODE;]", b"[AOX-1;]", b"[AOX;SH;]", b"[AOX;SH-;]", b"[AOX;SH--1;]", b"[AOX;SH-0;]",
    b"[AOX;SH007;]", b"[AOX;SH1;SH2;]", b"[AOX;AO1;]", b"[AOX;sh1;]", b"[AOX;S;]", b"[AOX;DAabc;]",
    b"[AOX;DAab c0;]", b"[AOX;DAAB;]", b"[AOX;RWY;]", b"[AOX;RWy;]", b"[AOX;MPX0011;]", b"[AOX;MPX001;]",
    b"[AOX;MP5;]", b"[AOX;SH99999999999999999999;]", b"[AOX;SH+1;]", b"[AOX;SH 1;]", b"[AOX;BB<;]",
    b"[AOX;BB\x7f;]", b"[AOX;BBa\tb;]", b"[AOX;UN41;]", b"[AOX;UNzz;]", b"[AOX;OL1,2;]", b"[AOX;OL1,,2;]",
    b" [AOX;]", b"[AOX;SH1;]]",
])
def test_edge_frames(body):
    check_decode(body)


def test_envelopes_take_the_fast_path_and_match():
    fields = {"SH": 3, "DA": b"d" * 300, "SG": b"s" * 256, "PH": "F"}
    frame = python_frame("GPAV", fields, None, True)
    assert wire.is_envelope(frame)
    assert fast.decode(frame) == ("GPAV", fields)
    check_decode(frame)
    released = memoryview(b"x" * 300)
    released.release()
    check_encode("GPSE", {"DA": released}, None, True)


@pytest.mark.parametrize("body", [
    b"{", b"{}", b"{5}[AOX]", b"{13,5}[AOX;DA#1#a;]", b"{12,5}[AOX;DA#1#a;]", b"{14,5}[AOX;DA#1#a;]",
    b"{20,5}[AOX;DA#1#a;DA#1#b;]", b"{20,5}[AOX;DA#1#a;RS#1#b;]", b"{17,9}[AOX;DA00;DA#1#a;]",
    b"{17,9}[AOX;DA00;RS#1#a;]", b"{13,6}[AOX;;DA#1#a;]", b"{14,5}[AOX;DA#01#a;]", b"{13,05}[AOX;DA#1#a;]",
    b"{13,5}[AOX;SH#1#a;]", b"{13,5}[AOX;da#1#a;]", b"{12,5}[AOX;DA#0#;]", b"{13,5}[AOX;DA#1#];]",
    b"{13,5}[AOX;DA#2#a;]", b"{13,5}[AOX;DA1##a;]", b"{13,0}[AOX;DA#1#a;]", b"{13,13}[AOX;DA#1#a;]",
    b"{13,5,1}[AOX;DA#1#a;]", b"{13,5}(AOX;DA#1#a;]", b"{13,5}[AOX;DA#1#a;)", b"{8,1}[DA#1#a;]",
    b"{0000000000000000000013,5}[AOX;DA#1#a;]",
])
def test_edge_envelopes(body):
    check_decode(body)


def test_oversized_frames_are_left_to_wire_py():
    body = b"[AOX;DA" + b"00" * (wire.MAX_MESSAGE // 2) + b";]"
    assert fast.decode(body) is None
    with pytest.raises(wire.WireError):
        wire.decode_command(body)
