"""The C fast path of the wire codec (native/wirecodec.c) against wire.py's own codec
(tests/wire_differential.py): typical frames of every tag, random values, random mutations,
edge frames and envelopes.
"""
import os
import random
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from wire_differential import (VALUES, check_decode, check_encode, python_frame,  # noqa: E402
                               round_of_checks)

from vhsm import wire  # noqa: E402
from vhsm.excrypt import Command, Reply  # noqa: E402

fast = wire._fast  # make build compiles it: without it, these tests fail


def test_the_fast_path_is_built_where_the_tests_run():
    # without it every frame would take the slow path unnoticed
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
    checked = sum(round_of_checks(rng, 8) for _ in range(3000))
    assert checked > 20000


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
