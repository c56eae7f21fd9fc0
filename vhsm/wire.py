"""Excrypt framing: `[AOCODE;TAGvalue;...;]`.

The command comes first; every field is a two-letter tag, its value and `;`; there is no
length prefix (a reader reads to `]`). Values never contain `; [ ] < >`: binary and
structured values travel hex-encoded. Each tag has one kind, in one table, so a frame
decodes to exactly the command object the in-process transport passes.

Between this project's own library and server a frame may also travel in a binary
envelope, `{N}[...]` with N the length of the bracketed part, where a bytes field of at
least BINARY_MIN bytes is `TAG#n#` followed by its n raw bytes: no hex doubling, no scan
for the end. A server announces it (FRAMING in its APPN/APPJ reply) and answers an
envelope with one; text frames keep working for everything else.
"""
from __future__ import annotations

import json
import re
from typing import Any, Callable

from vhsm import attrcodec
from vhsm.excrypt import (STATUS_FAIL, STATUS_OK, TAG_COMMAND, TAG_ERROR_TEXT, TAG_REASON, TAG_STATUS, Command,
                          Reply, Tag)

MAX_MESSAGE = 4 * 1024 * 1024  # bytes between [ and ]
BINARY_MIN = 256  # bytes fields at least this long travel raw inside an envelope
BINARY = "binary"  # the FRAMING value a server announces
# Bytes a frame may carry between [ and ]: printable ASCII and tab, without [ ] < >.
_ALLOWED = bytes(b for b in range(256) if (32 <= b < 127 or b == 9) and b not in b"[]<>")
FORBIDDEN = set(";[]<>")

# tag -> kind. text: as is; utext: UTF-8 hex; int: decimal; bool: Y/N; hex: bytes;
# ints: comma-separated decimals; attrs: attribute template (attrcodec) in hex;
# json: any JSON-able value (bytes tagged) in hex; a value that is plain bytes as X and its hex.
KINDS: dict[str, str] = {
    TAG_STATUS: "text", TAG_ERROR_TEXT: "text", TAG_REASON: "int",
    Tag.ECHO_DATA: "text", Tag.FIRMWARE: "text", Tag.SERIAL: "text", Tag.SESSION: "int",
    Tag.READ_WRITE: "bool", Tag.OBJECT: "int", Tag.TEMPLATE: "attrs", Tag.PUBLIC_TEMPLATE: "attrs",
    Tag.PRIVATE_TEMPLATE: "attrs", Tag.MECHANISM: "int", Tag.MECH_PARAM: "json", Tag.DATA: "hex",
    Tag.RESULT: "hex", Tag.SIGNATURE: "hex", Tag.ATTR_TYPES: "ints", Tag.ATTR_VALUES: "json",
    Tag.USER: "utext", Tag.PASSWORD: "utext", Tag.USER_TYPE: "int", Tag.CONTEXT: "int", Tag.PHASE: "text",
    Tag.LENGTH: "int", Tag.OBJECTS: "ints", Tag.PUBLIC_OBJECT: "int", Tag.PRIVATE_OBJECT: "int",
    Tag.WRAPPED: "hex", Tag.WRAPPING_KEY: "int", Tag.ROLE: "utext", Tag.TIME: "text", Tag.MIN_PIN: "int",
    Tag.MAX_PIN: "int", Tag.FTK_KCV: "text", Tag.LOGGED_IN: "utext", Tag.IDENTITY_EXISTS: "bool",
    Tag.APPLICATION: "text", Tag.ADMIN_METHOD: "text", Tag.ADMIN_ARGS: "json", Tag.ADMIN_RESULT: "json",
    Tag.ADMIN_RULE: "utext",
    Tag.NEW_PASSWORD: "utext", Tag.SO_USER: "utext", Tag.TOKEN_LABEL: "utext", Tag.USER_FAILURES: "int",
    Tag.SO_FAILURES: "int", Tag.MAX_FAILURES: "int", Tag.USER_PIN_SET: "bool", Tag.SO_EXISTS: "bool",
    Tag.OBJECT_SIZE: "int", Tag.DELETED: "int", Tag.FRAMING: "text",
}


class WireError(ValueError):
    """A malformed frame: what is wrong, for the error reply and the log."""


# ------------------------------------------------------------------ values

# A json value that is plain bytes (an IV, the commonest mechanism parameter) travels as this
# letter and its hex, without JSON; hex of JSON text never starts with it.
_RAW_JSON = "X"


def _to_json(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return {"$b": bytes(v).hex()}
    if isinstance(v, dict):
        return {"$d": [[_to_json(k), _to_json(x)] for k, x in v.items()]}
    if isinstance(v, (list, tuple)):
        return [_to_json(x) for x in v]
    return v


def _from_json(v: Any) -> Any:
    if isinstance(v, dict):
        if "$b" in v:
            return bytes.fromhex(v["$b"])
        if "$d" in v:
            return {_from_json(k): _from_json(x) for k, x in v["$d"]}
        raise ValueError("unknown object")
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    return v


# Texts may quote what a client sent (an unknown user name): anything a frame cannot carry
# becomes "?", so a reply always frames.
_NOT_IN_TEXT = re.compile(r"[^\t\x20-\x7e]|[;\[\]<>]")

_ENCODE_KIND: dict[str, Callable[[Any], str]] = {
    "text": lambda v: _NOT_IN_TEXT.sub("?", str(v)), "utext": lambda v: str(v).encode("utf-8").hex(),
    "int": lambda v: str(int(v)), "bool": lambda v: "Y" if v else "N", "hex": lambda v: bytes(v).hex(),
    "ints": lambda v: ",".join(str(int(x)) for x in v),
    "attrs": lambda v: attrcodec.encode_attrs(v or {}).hex(),
    "json": lambda v: _RAW_JSON + v.hex() if type(v) is bytes else json.dumps(
        _to_json(v), separators=(",", ":")).encode().hex(),
}
_ENCODERS: dict[str, Callable[[Any], str]] = {tag: _ENCODE_KIND[kind] for tag, kind in KINDS.items()}


def encode_value(tag: str, v: Any) -> str:
    encode = _ENCODERS.get(tag)
    if encode is None:
        raise WireError(f"no wire encoding for tag {tag}")
    return encode(v)


def _int(text: str) -> int:
    if not text.lstrip("-").isdigit():
        raise ValueError("not a decimal number")
    return int(text)


def _bool(text: str) -> bool:
    if text not in ("Y", "N"):
        raise ValueError("not Y or N")
    return text == "Y"


_DECODE_KIND: dict[str, Callable[[str], Any]] = {
    "text": str, "utext": lambda t: bytes.fromhex(t).decode("utf-8"), "int": _int, "bool": _bool,
    "hex": bytes.fromhex, "ints": lambda t: [int(x) for x in t.split(",")] if t else [],
    "attrs": lambda t: attrcodec.decode_attrs(bytes.fromhex(t)),
    "json": lambda t: bytes.fromhex(t[1:]) if t[:1] == _RAW_JSON else _from_json(
        json.loads(bytes.fromhex(t).decode("utf-8"))),
}
_DECODERS: dict[str, Callable[[str], Any]] = {tag: _DECODE_KIND[kind] for tag, kind in KINDS.items()}


# The C fast path (native/wirecodec.c): it answers only where it gives what this module
# would, and None wherever this module must decide (see its header).
try:
    from vhsm import _wirecodec as _fast
except ImportError:  # a tree whose extension is not built: this module's codec alone
    _fast = None
else:
    _FAST_KINDS = {"text": 1, "int": 2, "bool": 3, "hex": 4, "json": 6}  # the C enum; others: 5, wire.py's codec
    _fast.configure({tag: _FAST_KINDS.get(kind, 5) for tag, kind in KINDS.items()}, _DECODERS, _ENCODERS,
                    MAX_MESSAGE, BINARY_MIN)


def decode_value(tag: str, text: str) -> Any:
    decode = _DECODERS.get(tag)
    if decode is None:
        raise WireError(f"unknown tag {tag!r}")
    try:
        return decode(text)
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: JSON nested too deep
        raise WireError(f"bad value for tag {tag}: {e}") from None


# ------------------------------------------------------------------ frames

def _frame(code: str, fields: dict[str, Any], status: str | None, binary: bool = False) -> bytes:
    if _fast is not None:
        done = _fast.encode(code, fields, status, binary)
        if done is not None:
            return done
    parts = [TAG_COMMAND + code] if status is None else [TAG_COMMAND + code, f"{TAG_STATUS}{status}"]
    raw: list[bytes] = []
    encoders = _ENCODERS
    for tag, v in fields.items():
        if v is None:
            continue
        if binary and len(tag) == 2 and KINDS.get(tag) == "hex" and len(v) >= BINARY_MIN:
            raw.append(b"%s#%d#" % (tag.encode("ascii"), len(v)) + v + b";")
            continue
        encode = encoders.get(tag)
        if encode is None:
            raise WireError(f"no wire encoding for tag {tag}")
        parts.append(tag + encode(v))
    text = ("[" + ";".join(parts) + ";").encode("ascii")
    if not raw:
        return text + b"]"
    body = b"".join([text, *raw, b"]"])
    return b"{%d,%d}" % (len(body), len(text)) + body


def encode_command(cmd: Command, *, binary: bool = False) -> bytes:
    return _frame(cmd.code, cmd.fields, None, binary)


def encode_reply(reply: Reply, *, binary: bool = False) -> bytes:
    return _frame(reply.code, reply.fields, reply.status, binary)


def is_envelope(frame: bytes) -> bool:
    return frame[:1] == b"{"


def _open_envelope(frame: bytes) -> tuple[bytes, dict[str, bytes]]:
    """`{N,T}` + N bytes: a text frame's first T bytes (its text fields), then raw fields
    `TAG#n#` + n bytes + `;`, then `]`. Returns the text frame and the raw fields."""
    close = frame.find(b"}", 0, 24)
    sizes = frame[1:close].split(b",") if close > 0 else []
    if len(sizes) != 2 or not all(x.isdigit() for x in sizes):
        raise WireError("a binary envelope starts {length,text length}")
    n, t = int(sizes[0]), int(sizes[1])
    base = close + 1
    if len(frame) != base + n or not 0 < t < n or frame[base + n - 1:base + n] != b"]":
        raise WireError("a binary envelope's lengths do not match its frame")
    text = frame[base:base + t] + b"]"
    raw: dict[str, bytes] = {}
    pos, last = base + t, base + n - 1
    while pos < last:
        tag = frame[pos:pos + 2]
        mark = frame.find(b"#", pos + 3, pos + 16)
        digits = frame[pos + 3:mark] if frame[pos + 2:pos + 3] == b"#" and mark > 0 else b""
        if not digits.isdigit() or not tag.isalpha() or not tag.isupper():
            raise WireError("a raw field is TAG#length# and its bytes")
        size = int(digits)
        value_at = mark + 1
        if value_at + size > last or frame[value_at + size:value_at + size + 1] != b";":
            raise WireError("a raw field runs past its frame")
        name = tag.decode("ascii")
        if KINDS.get(name) != "hex":
            raise WireError(f"tag {name} cannot travel raw")
        if name in raw:
            raise WireError(f"tag {name} appears twice")
        raw[name] = frame[value_at:value_at + size]
        pos = value_at + size + 1
    return text, raw


def _fields(body: bytes) -> tuple[str, dict[str, Any]]:
    if len(body) > MAX_MESSAGE:
        raise WireError(f"message longer than {MAX_MESSAGE} bytes")
    if body[:1] != b"[" or body[-1:] != b"]":
        raise WireError("a message is [ fields ]")
    inner = body[1:-1]
    if inner.translate(None, _ALLOWED):
        raise WireError("a value contains [ ] < > or a byte that is not printable ASCII")
    raw = inner.decode("ascii").split(";")
    if raw[-1] == "":
        raw.pop()
    if not raw or not raw[0].startswith(TAG_COMMAND) or len(raw[0]) < 3:
        raise WireError("the first field must be AO with the command")
    code = raw[0][2:]
    if not code.isalnum() or len(code) > 8:
        raise WireError(f"bad command code {code!r}")
    fields: dict[str, Any] = {}
    decoders = _DECODERS
    for i in range(1, len(raw)):
        f = raw[i]
        tag = f[:2]
        decode = decoders.get(tag)
        if decode is None:
            if len(f) < 2 or not tag.isalpha() or not tag.isupper():
                raise WireError(f"bad field {f[:10]!r}: a field is a two-letter tag and its value")
            raise WireError(f"unknown tag {tag!r}")
        if tag in fields:
            raise WireError(f"tag {tag} appears twice")
        try:
            fields[tag] = decode(f[2:])
        except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as e:
            raise WireError(f"bad value for tag {tag}: {e}") from None
    return code, fields


def _decode(body: bytes) -> tuple[str, dict[str, Any]]:
    if _fast is not None:
        done = _fast.decode(body)
        if done is not None:
            return done
    if not is_envelope(body):
        return _fields(body)
    text, raw = _open_envelope(body)
    code, fields = _fields(text)
    for tag, value in raw.items():
        if tag in fields:
            raise WireError(f"tag {tag} appears twice")
        fields[tag] = value
    return code, fields


def decode_command(body: bytes) -> Command:
    code, fields = _decode(body)
    return Command(code, fields)


def decode_reply(body: bytes) -> Reply:
    code, fields = _decode(body)
    status = fields.pop(TAG_STATUS, None)
    if status not in (STATUS_OK, STATUS_FAIL):
        raise WireError("a reply carries AN Y or AN N")
    return Reply(code, status, fields)


class FrameReader:
    """Splits a byte stream into frames; blanks between frames (a person typing) are skipped."""

    def __init__(self, limit: int = MAX_MESSAGE) -> None:
        self.buf = bytearray()
        self.limit = limit
        self._scanned = 0  # bytes of buf known to hold no ]: a frame dripped in small pieces is scanned once
        self._need = 0  # the size of the envelope at the start of buf, once its head was read

    def feed(self, data: bytes) -> None:
        self.buf += data

    def _take(self, size: int) -> bytes:
        buf = self.buf
        self._scanned = self._need = 0
        if size == len(buf):  # the usual case, one frame per read: one copy
            frame = bytes(buf)
            buf.clear()
            return frame
        frame = bytes(memoryview(buf)[:size])
        del buf[:size]
        return frame

    def next_frame(self) -> bytes | None:
        """The next whole frame, or None when more bytes are needed. Raises WireError on
        garbage before a frame or a frame over the size limit."""
        buf = self.buf
        if self._need:
            return self._take(self._need) if len(buf) >= self._need else None
        i = 0
        while i < len(buf) and buf[i] in b" \t\r\n":
            i += 1
        if i:
            del buf[:i]
            self._scanned = max(0, self._scanned - i)
        if not buf:
            return None
        if buf[0] == ord("{"):
            return self._envelope()
        if buf[0] != ord("["):
            bad = bytes(buf[:16])
            buf.clear()
            self._scanned = 0
            raise WireError(f"garbage before a frame: {bad!r}")
        end = buf.find(b"]", self._scanned)
        if end < 0:
            self._scanned = len(buf)
            if len(buf) > self.limit:
                buf.clear()
                self._scanned = 0
                raise WireError(f"message longer than {self.limit} bytes")
            return None
        if end + 1 > self.limit:  # a whole frame can arrive in one read: the limit holds for it too
            buf.clear()
            self._scanned = 0
            raise WireError(f"message longer than {self.limit} bytes")
        return self._take(end + 1)

    def _envelope(self) -> bytes | None:
        buf = self.buf
        close = buf.find(b"}", 0, 24)
        if close < 0:
            if len(buf) >= 24:
                bad = bytes(buf[:16])
                buf.clear()
                raise WireError(f"a binary envelope starts {{length,text length}}: {bad!r}")
            return None
        sizes = bytes(buf[1:close]).split(b",")
        if len(sizes) != 2 or not all(x.isdigit() for x in sizes):
            buf.clear()
            raise WireError("a binary envelope's lengths are decimal")
        n = int(sizes[0])
        if n > self.limit:
            buf.clear()
            raise WireError(f"message longer than {self.limit} bytes")
        self._need = close + 1 + n
        return self._take(self._need) if len(buf) >= self._need else None
