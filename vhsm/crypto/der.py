"""The little DER the device writes and reads itself: INTEGER, OCTET STRING, BIT STRING,
SEQUENCE and pre-encoded OIDs, for the key formats `cryptography` does not handle
(PKCS #3 Diffie-Hellman keys) and for trimming padded DER.
"""
from __future__ import annotations

INTEGER, BIT_STRING, OCTET_STRING, OID, SEQUENCE = 0x02, 0x03, 0x04, 0x06, 0x30


class DERError(ValueError):
    pass


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(size),)) + size


def tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _length(len(body)) + body


def integer(v: int) -> bytes:
    if v < 0:
        raise DERError("negative integers are not used here")
    body = v.to_bytes(v.bit_length() // 8 + 1, "big")  # a leading 0 keeps the sign bit clear
    return tlv(INTEGER, body)


def octet_string(data: bytes) -> bytes:
    return tlv(OCTET_STRING, data)


def bit_string(data: bytes) -> bytes:
    return tlv(BIT_STRING, b"\x00" + data)


def sequence(*items: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(items))


def read(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """(tag, body, position after the element) of the element at `pos`."""
    if pos + 2 > len(data):
        raise DERError("truncated element")
    tag, n = data[pos], data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if not 1 <= k <= 4 or pos + k > len(data):
            raise DERError("bad length")
        n = int.from_bytes(data[pos:pos + k], "big")
        pos += k
    if pos + n > len(data):
        raise DERError("element longer than the data")
    return tag, data[pos:pos + n], pos + n


def items(body: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(body):
        tag, value, pos = read(body, pos)
        out.append((tag, value))
    return out


def expect(tag: int, element: tuple[int, bytes]) -> bytes:
    if element[0] != tag:
        raise DERError(f"expected tag {tag:#x}, found {element[0]:#x}")
    return element[1]


def to_int(body: bytes) -> int:
    if not body or body[0] & 0x80:
        raise DERError("not a non-negative INTEGER")
    return int.from_bytes(body, "big")


def trim(data: bytes) -> bytes:
    """The first whole element of `data` (drops the zero padding a block cipher added)."""
    _, _, end = read(data)
    return data[:end]
