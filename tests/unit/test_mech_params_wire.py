"""Every mechanism parameter the provider reads travels the network transport unchanged
(MP is a JSON-encoded tag: bytes, dicts, booleans, None inside must come back equal)."""
from __future__ import annotations

import pytest

from fxpkcs11 import ck
from fxpkcs11.abi import params
from vhsm import wire
from vhsm.excrypt import Command, Tag

SAMPLES = {
    "iv16": bytes(range(16)), "iv8": bytes(8), "optional_iv": b"\xa6" * 8, "mac_general": 12,
    "gcm": {"iv": b"\x01" * 12, "aad": b"", "tag_bits": 96},
    "oaep": {"hash": ck.CKM_SHA256, "mgf": ck.CKG_MGF1_SHA1, "label": b"label"},
    "pss": {"hash": ck.CKM_SHA_1, "mgf": ck.CKG_MGF1_SHA512, "salt": 20},
    "ctr": {"bits": 32, "cb": bytes(16)}, "eddsa": {"ph": False, "context": b""},
    "ecdh": {"kdf": ck.CKD_SHA256_KDF, "shared": b"", "public": b"\x04" + bytes(64)},
    "bytes": b"\x02" * 256, "string_data": b"data", "aes_cbc_data": {"iv": bytes(16), "data": bytes(32)},
    "des_cbc_data": {"iv": bytes(8), "data": bytes(24)}, "key_handle": {"key": 41},
    "hkdf": {"extract": True, "expand": False, "prf": ck.CKM_SHA384, "salt_type": ck.CKF_HKDF_SALT_KEY,
             "salt": b"", "salt_key": 7, "info": b"info"},
}


def test_every_reader_has_a_sample():
    assert set(params.READERS) - {"none"} == set(SAMPLES)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_parameter_round_trips_the_wire(kind):
    fields = {Tag.MECHANISM: 1, Tag.MECH_PARAM: SAMPLES[kind], Tag.OBJECT: -1}
    back = wire.decode_command(wire.encode_command(Command("GPKX", fields)))
    assert back.fields == fields


@pytest.mark.parametrize("value", [bytes(16), b"", b"X" * 3, {"$b": "00"}, "X00", [b"\x01"], None, 0])
def test_plain_bytes_travel_without_json_and_nothing_else_is_taken_for_them(value):
    frame = wire.encode_command(Command("GPSE", {Tag.MECH_PARAM: value}))
    if type(value) is bytes:
        assert b";MPX" + value.hex().encode() + b";" in frame
    back = wire.decode_command(frame).fields.get(Tag.MECH_PARAM)
    assert back == value and type(back) is type(value)


def test_a_raw_parameter_with_bad_hex_is_refused():
    with pytest.raises(wire.WireError):
        wire.decode_command(b"[AOGPSE;MPX0g;]")
