"""C structs and buffers <-> Python values. `ffi` is the embedded module's, set by bind()."""
from __future__ import annotations

import struct
from typing import Any

from fxpkcs11 import ck
from fxpkcs11.errors import CKRError

ffi: Any = None
NULL: Any = None
ULONG = struct.Struct("@L")  # CK_ULONG: native size and order (8 bytes on LP64)
ULONG_SIZE = ULONG.size
UNAVAILABLE = ck.CK_UNAVAILABLE_INFORMATION
_KIND = ck.ATTR_KIND
# No caller owns a buffer this large: a length above it is a wrong length, refused before
# anything is read or written through the pointer.
LENGTH_LIMIT = 1 << 32
TEMPLATE_LIMIT = 1 << 12  # attributes in one template
VIEW_MIN = 4096  # below this, copying costs less than the view


def bind(the_ffi: Any) -> None:
    global ffi, NULL
    ffi, NULL = the_ffi, the_ffi.NULL


def bad(text: str) -> CKRError:
    return CKRError(ck.CKR_ARGUMENTS_BAD, text)


def read_now(ptr: Any, n: int) -> Any:
    """The caller's bytes as a buffer, without a copy, for a consumer that reads them at once
    and keeps nothing (a hash): valid only until the call returns."""
    if not n:
        return b""
    if ptr == NULL:
        raise bad("null data pointer with a non-zero length")
    if n > LENGTH_LIMIT:
        raise bad(f"length {n} is absurd")
    return ffi.buffer(ptr, n)


def read_bytes(ptr: Any, n: int) -> bytes:
    return read_now(ptr, n)[:]


def read_view(ptr: Any, n: int) -> bytes | memoryview:
    """The caller's buffer without a copy, valid only until the call returns: for a
    single-part operation's input, consumed before the C function gives control back."""
    if n < VIEW_MIN:
        return read_bytes(ptr, n)
    return memoryview(read_now(ptr, n))


def need(ptr: Any, what: str) -> None:
    if ptr == NULL:
        raise bad(f"{what} is a null pointer")


def write_out(data: bytes, buf: Any, plen: Any) -> int:
    """The spec's output convention: NULL buffer asks for the length; a short buffer gets
    CKR_BUFFER_TOO_SMALL with the length needed."""
    if plen == NULL:
        raise bad("length pointer is null")
    n = len(data)
    if buf == NULL:
        plen[0] = n
        return ck.CKR_OK
    if plen[0] < n:
        plen[0] = n
        return ck.CKR_BUFFER_TOO_SMALL
    ffi.memmove(buf, data, n)
    plen[0] = n
    return ck.CKR_OK


def write_ulongs(values: list[int] | tuple[int, ...], buf: Any, pcount: Any) -> int:
    if pcount == NULL:
        raise bad("count pointer is null")
    n = len(values)
    if buf == NULL:
        pcount[0] = n
        return ck.CKR_OK
    if pcount[0] < n:
        pcount[0] = n
        return ck.CKR_BUFFER_TOO_SMALL
    for i, v in enumerate(values):
        buf[i] = v
    pcount[0] = n
    return ck.CKR_OK


def put_text(field: Any, text: str, size: int) -> None:
    ffi.memmove(field, text.encode("utf-8")[:size].ljust(size, b" "), size)


# ------------------------------------------------------------------ attributes

def decode_value(t: int, raw: bytes) -> Any:
    kind = _KIND.get(t, "bytes")
    if kind == "bool":
        if len(raw) != 1:
            raise CKRError(ck.CKR_ATTRIBUTE_VALUE_INVALID, f"{ck.name(t, 'CKA_')} must be one byte")
        return raw != b"\x00"
    if kind == "ulong":
        if len(raw) != ULONG_SIZE:
            raise CKRError(ck.CKR_ATTRIBUTE_VALUE_INVALID, f"{ck.name(t, 'CKA_')} must be a CK_ULONG")
        return ULONG.unpack(raw)[0]
    if kind == "utf8":
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CKRError(ck.CKR_ATTRIBUTE_VALUE_INVALID, f"{ck.name(t, 'CKA_')} is not UTF-8") from None
    if kind == "date":
        if len(raw) not in (0, 8) or not raw.isdigit() and raw:
            raise CKRError(ck.CKR_ATTRIBUTE_VALUE_INVALID, f"{ck.name(t, 'CKA_')} must be a CK_DATE")
        return raw
    if kind == "mechs":
        if len(raw) % ULONG_SIZE:
            raise CKRError(ck.CKR_ATTRIBUTE_VALUE_INVALID, f"{ck.name(t, 'CKA_')} must be CK_MECHANISM_TYPEs")
        return [v for (v,) in ULONG.iter_unpack(raw)]
    return raw


def encode_value(t: int, value: Any) -> bytes:
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, int):
        return ULONG.pack(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, list):
        return b"".join(ULONG.pack(v) for v in value)
    if isinstance(value, dict):
        raise CKRError(ck.CKR_ATTRIBUTE_TYPE_INVALID, "attribute templates are not readable in this version")
    return bytes(value)


def read_template(ptr: Any, count: int, depth: int = 0) -> dict[int, Any]:
    if not count:
        return {}
    if ptr == NULL:
        raise bad("template pointer is null with a non-zero count")
    if count > TEMPLATE_LIMIT:
        raise bad(f"template of {count} attributes")
    if depth > 2:
        raise CKRError(ck.CKR_ATTRIBUTE_VALUE_INVALID, "attribute templates nest too deeply")
    out: dict[int, Any] = {}
    for i in range(count):
        a = ptr[i]
        t, n = a.type, a.ulValueLen
        if t in out:
            raise CKRError(ck.CKR_TEMPLATE_INCONSISTENT, f"{ck.name(t, 'CKA_')} appears twice in the template")
        if n and a.pValue == NULL:
            raise bad(f"{ck.name(t, 'CKA_')} has a null value with length {n}")
        if n > 1 << 24:
            raise CKRError(ck.CKR_ATTRIBUTE_VALUE_INVALID, f"{ck.name(t, 'CKA_')} length {n} is absurd")
        if _KIND.get(t) == "attrs":
            size = ffi.sizeof("CK_ATTRIBUTE")
            if n % size:
                raise CKRError(ck.CKR_ATTRIBUTE_VALUE_INVALID, f"{ck.name(t, 'CKA_')} is not a CK_ATTRIBUTE array")
            out[t] = read_template(ffi.cast("CK_ATTRIBUTE_PTR", a.pValue), n // size, depth + 1)
        else:
            out[t] = decode_value(t, ffi.buffer(a.pValue, n)[:] if n else b"")
    return out


def attribute_types(ptr: Any, count: int) -> list[int]:
    if count and ptr == NULL:
        raise bad("template pointer is null with a non-zero count")
    if count > TEMPLATE_LIMIT:
        raise bad(f"template of {count} attributes")
    return [ptr[i].type for i in range(count)]


def fill_attributes(ptr: Any, count: int, values: list[tuple[int, Any]]) -> int:
    """Answer each attribute on its own; return the spec's overall CKR."""
    rv = ck.CKR_OK
    for i in range(count):
        a = ptr[i]
        code, value = values[i]
        if code:
            a.ulValueLen = UNAVAILABLE
            rv = rv or code
            continue
        if isinstance(value, dict):
            rv = fill_attribute_array(a, value) or rv
            continue
        try:
            data = encode_value(a.type, value)
        except CKRError as e:
            a.ulValueLen = UNAVAILABLE
            rv = rv or e.rv
            continue
        if a.pValue == NULL:
            a.ulValueLen = len(data)
        elif a.ulValueLen < len(data):
            a.ulValueLen = UNAVAILABLE
            rv = rv or ck.CKR_BUFFER_TOO_SMALL
        else:
            ffi.memmove(a.pValue, data, len(data))
            a.ulValueLen = len(data)
    return rv


def fill_attribute_array(a: Any, template: dict[int, Any]) -> int:
    """An attribute whose value is an attribute array (CKA_WRAP_TEMPLATE ...): a null pValue
    asks for count * sizeof(CK_ATTRIBUTE); otherwise pValue is the caller's CK_ATTRIBUTE array
    and each element is answered as C_GetAttributeValue answers an attribute (its type is
    written, its own pValue filled, or its length given when that pValue is null)."""
    size = ffi.sizeof("CK_ATTRIBUTE")
    need = len(template) * size
    if a.pValue == NULL:
        a.ulValueLen = need
        return ck.CKR_OK
    if a.ulValueLen < need:
        a.ulValueLen = UNAVAILABLE
        return ck.CKR_BUFFER_TOO_SMALL
    inner = ffi.cast("CK_ATTRIBUTE_PTR", a.pValue)
    for i, t in enumerate(sorted(template)):
        inner[i].type = t
    rv = fill_attributes(inner, len(template), [(0, template[t]) for t in sorted(template)])
    a.ulValueLen = need
    return rv
