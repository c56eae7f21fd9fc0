import random

import pytest

from vhsm.attrcodec import decode_attrs, encode_attrs

SAMPLE = {
    0x0: 4,                        # CKA_CLASS
    0x1: True,                     # CKA_TOKEN
    0x2: False,
    0x3: "my label ✓",
    0x100: 0x1F,
    0x102: b"\x00\x01\xff",
    0x161: 32,
    0x166: 2**64 - 1,              # CK_UNAVAILABLE_INFORMATION
    0x167: -1,
    0x168: 0,
    0x169: None,
    0x600: [0x1081, 0x1082, 0],    # CKA_ALLOWED_MECHANISMS
    0x601: [],
    0x40000211: {0x104: True, 0x100: 0x1F, 0x40000212: {0x3: ""}},  # nested templates
    0x80000001: b"",
}


def same(a, b):
    """Equality that also requires identical types (True != 1 here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def test_roundtrip_exact():
    assert same(decode_attrs(encode_attrs(SAMPLE)), SAMPLE)
    assert same(decode_attrs(encode_attrs({})), {})


def test_deterministic_regardless_of_insertion_order():
    items = list(SAMPLE.items())
    random.Random(1).shuffle(items)
    assert encode_attrs(dict(items)) == encode_attrs(SAMPLE)
    assert encode_attrs(SAMPLE) == encode_attrs(decode_attrs(encode_attrs(SAMPLE)))


def test_bool_and_int_distinct():
    assert encode_attrs({1: True}) != encode_attrs({1: 1})
    assert encode_attrs({1: False}) != encode_attrs({1: 0})
    assert decode_attrs(encode_attrs({1: True}))[1] is True
    assert type(decode_attrs(encode_attrs({1: 1}))[1]) is int


def test_str_and_bytes_distinct():
    assert encode_attrs({3: "ab"}) != encode_attrs({3: b"ab"})
    assert type(decode_attrs(encode_attrs({3: b"ab"}))[3]) is bytes


def test_encode_rejects_unsupported():
    with pytest.raises(TypeError):
        encode_attrs({1: 1.5})
    with pytest.raises(TypeError):
        encode_attrs({1: [True]})      # would not round-trip
    with pytest.raises(TypeError):
        encode_attrs({1: ["a"]})
    with pytest.raises(ValueError):
        encode_attrs({-1: 1})
    with pytest.raises(ValueError):
        encode_attrs({2**64: 1})
    with pytest.raises((TypeError, ValueError)):
        encode_attrs({"a": 1})
    with pytest.raises(ValueError):
        deep = {}
        for _ in range(20):
            deep = {1: deep}
        encode_attrs(deep)


def test_every_truncation_is_value_error():
    data = encode_attrs(SAMPLE)
    for n in range(len(data)):
        with pytest.raises(ValueError):
            decode_attrs(data[:n])


def test_malformed_inputs():
    good = encode_attrs({1: 5, 2: b"x"})
    bad = [
        b"", b"\x02" + good[1:],                       # wrong version
        good + b"\x00",                                 # trailing bytes
        b"\x01\x00\x00\x00\x01" + bytes(8) + b"Z",      # unknown tag
        # keys out of order
        b"\x01\x00\x00\x00\x02" + (2).to_bytes(8, "big") + b"N" + (1).to_bytes(8, "big") + b"N",
        # duplicate key
        b"\x01\x00\x00\x00\x02" + (1).to_bytes(8, "big") + b"N" + (1).to_bytes(8, "big") + b"N",
        # non-minimal int
        b"\x01\x00\x00\x00\x01" + (1).to_bytes(8, "big") + b"I\x02\x00\x05",
        b"\x01\x00\x00\x00\x01" + (1).to_bytes(8, "big") + b"I\x00",
        # invalid utf-8
        b"\x01\x00\x00\x00\x01" + (1).to_bytes(8, "big") + b"S\x00\x00\x00\x01\xff",
        # huge counts
        b"\x01\xff\xff\xff\xff",
        b"\x01\x00\x00\x00\x01" + (1).to_bytes(8, "big") + b"L\xff\xff\xff\xff",
        b"\x01\x00\x00\x00\x01" + (1).to_bytes(8, "big") + b"B\xff\xff\xff\xff",
    ]
    for data in bad:
        with pytest.raises(ValueError):
            decode_attrs(data)
    with pytest.raises(ValueError):
        decode_attrs("not bytes")  # type: ignore[arg-type]


def test_deep_nesting_rejected():
    data = b"\x01" + (b"\x00\x00\x00\x01" + (1).to_bytes(8, "big") + b"D") * 50 + b"\x00\x00\x00\x00"
    with pytest.raises(ValueError):
        decode_attrs(data)


def test_fuzz_only_value_error():
    rng = random.Random(42)
    data = encode_attrs(SAMPLE)
    for _ in range(3000):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            decode_attrs(bytes(mutated))
        except ValueError:
            pass
    for _ in range(500):
        blob = bytes([1]) + rng.randbytes(rng.randint(0, 64))
        try:
            decode_attrs(blob)
        except ValueError:
            pass
