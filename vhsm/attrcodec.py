"""Canonical binary encoding of PKCS #11 attribute dictionaries.

The encoding is used both for storage and as associated data when wrapping
keys, so it must be deterministic: attributes are written sorted by type and
every value has exactly one encoding (the decoder rejects anything else).

Layout (all integers big-endian)::

    blob   = 0x01 dict
    dict   = u32 count, count * (u64 attr-type, value)   types strictly increasing
    value  = 'N'                          None
           | 'T' | 'F'                    True / False
           | 'I' int                      int
           | 'B' u32 len, bytes           bytes
           | 'S' u32 len, utf-8           str
           | 'L' u32 count, count * int   list[int]
           | 'D' dict                     nested template
    int    = u8 len, len bytes of minimal two's complement
"""

from __future__ import annotations

import struct
from typing import Any

FORMAT_VERSION = 1
MAX_DEPTH = 8
_MAX_TYPE = 2**64 - 1

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_ENTRY = struct.Struct(">QB")

_NONE, _TRUE, _FALSE = ord("N"), ord("T"), ord("F")
_INT, _BYTES, _STR, _LIST, _DICT = ord("I"), ord("B"), ord("S"), ord("L"), ord("D")


def _int_len(n: int) -> int:
    return ((n if n >= 0 else ~n).bit_length() >> 3) + 1


def _put_int(out: bytearray, n: int) -> None:
    size = _int_len(n)
    if size > 255:
        raise ValueError("integer attribute value too large")
    out.append(size)
    out += n.to_bytes(size, "big", signed=True)


def _put_dict(out: bytearray, attrs: dict[int, Any], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError("attribute templates nested too deeply")
    keys = sorted(attrs)
    out += _U32.pack(len(keys))
    for key in keys:
        if type(key) is not int or not 0 <= key <= _MAX_TYPE:
            raise ValueError(f"attribute type {key!r} is not an unsigned 64-bit int")
        out += _U64.pack(key)
        _put_value(out, attrs[key], depth)


def _put_value(out: bytearray, value: Any, depth: int) -> None:
    kind = type(value)
    if value is None:
        out.append(_NONE)
    elif kind is bool:
        out.append(_TRUE if value else _FALSE)
    elif kind is int:
        out.append(_INT)
        _put_int(out, value)
    elif kind is bytes or kind is bytearray or kind is memoryview:
        data = bytes(value)
        out.append(_BYTES)
        out += _U32.pack(len(data))
        out += data
    elif kind is str:
        data = value.encode("utf-8")
        out.append(_STR)
        out += _U32.pack(len(data))
        out += data
    elif kind is list or kind is tuple:
        out.append(_LIST)
        out += _U32.pack(len(value))
        for item in value:
            if type(item) is not int:
                raise TypeError(f"list attribute values must be ints, not {type(item).__name__}")
            _put_int(out, item)
    elif kind is dict:
        out.append(_DICT)
        _put_dict(out, value, depth + 1)
    else:
        raise TypeError(f"cannot encode attribute value of type {kind.__name__}")


def encode_attrs(attrs: dict[int, Any]) -> bytes:
    """Canonical bytes for ``attrs``.

    Raises TypeError for unsupported value types (including bool inside a
    list, which could not round-trip) and ValueError for bad attribute types.
    Tuples encode as lists; bytearray/memoryview encode as bytes.
    """
    if type(attrs) is not dict:
        raise TypeError("attributes must be a dict")
    out = bytearray((FORMAT_VERSION,))
    _put_dict(out, attrs, 0)
    return bytes(out)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise ValueError("attribute data truncated")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def u32(self) -> int:
        return _U32.unpack(self.take(4))[0]

    def int(self) -> int:
        size = self.take(1)[0]
        raw = self.take(size)
        n = int.from_bytes(raw, "big", signed=True)
        if size == 0 or _int_len(n) != size:
            raise ValueError("non-canonical integer in attribute data")
        return n

    def dict(self, depth: int) -> dict[int, Any]:
        if depth > MAX_DEPTH:
            raise ValueError("attribute templates nested too deeply")
        count = self.u32()
        # every entry needs at least 9 bytes: reject absurd counts before looping
        if count * 9 > len(self.data) - self.pos:
            raise ValueError("attribute count exceeds data length")
        result: dict[int, Any] = {}
        prev = -1
        data = self.data
        for _ in range(count):
            if self.pos + 9 > len(data):
                raise ValueError("attribute data truncated")
            key, tag = _ENTRY.unpack_from(data, self.pos)
            self.pos += 9
            if key <= prev:
                raise ValueError("attribute types not strictly increasing")
            prev = key
            result[key] = self.value(tag, depth)
        return result

    def value(self, tag: int, depth: int) -> Any:
        if tag == _BYTES:
            return self.take(self.u32())
        if tag == _INT:
            return self.int()
        if tag == _TRUE:
            return True
        if tag == _FALSE:
            return False
        if tag == _STR:
            return self.take(self.u32()).decode("utf-8")
        if tag == _NONE:
            return None
        if tag == _LIST:
            count = self.u32()
            if count * 2 > len(self.data) - self.pos:
                raise ValueError("list length exceeds data length")
            return [self.int() for _ in range(count)]
        if tag == _DICT:
            return self.dict(depth + 1)
        raise ValueError(f"unknown attribute value tag 0x{tag:02x}")


def decode_attrs(data: bytes) -> dict[int, Any]:
    """Inverse of ``encode_attrs``; raises ValueError (only) on malformed input."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError("attribute data must be bytes")
    data = bytes(data)
    if not data:
        raise ValueError("attribute data is empty")
    if data[0] != FORMAT_VERSION:
        raise ValueError(f"unknown attribute encoding version {data[0]}")
    reader = _Reader(data)
    reader.pos = 1
    try:
        attrs = reader.dict(0)
    except ValueError:
        raise
    except Exception as exc:  # struct.error, IndexError: all mean malformed
        raise ValueError(f"malformed attribute data: {exc}") from None
    if reader.pos != len(data):
        raise ValueError("trailing bytes after attribute data")
    return attrs
