"""Damage in an SQLite write-ahead log that SQLite itself would pass over in silence.

SQLite reads a WAL up to its first frame whose checksum fails and treats the rest as never
written: a damaged byte in the middle of the log silently rolls the database back to the
transaction before it, and a damaged log header drops the whole log. A torn tail (a process
killed while appending a transaction it never committed) looks alike, with one difference:
after a damaged frame there are still frames of the same log generation (same salts) that
end a committed transaction. This module finds those, reading only the 24-byte frame headers.

File format: https://www.sqlite.org/fileformat2.html#walformat
"""
from __future__ import annotations

import os
import struct
from typing import Callable

_MAGIC_LE, _MAGIC_BE = 0x377F0682, 0x377F0683
_HEADER = struct.Struct(">IIIIIIII")   # magic, version, page size, checkpoint seq, salt1, salt2, cksum1, cksum2
_FRAME = struct.Struct(">IIIIII")      # page, db size after commit (0: not a commit), salt1, salt2, cksum1, cksum2
WAL_VERSION = 3007000


def _checksum(data: bytes, big_endian: bool) -> tuple[int, int]:
    words = struct.unpack((">" if big_endian else "<") + f"{len(data) // 4}I", data)
    s0 = s1 = 0
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def header_problem(head: bytes) -> str | None:
    """What is wrong with a WAL header (32 bytes), None when it is sound."""
    if len(head) < _HEADER.size:
        return "the header is cut short"
    magic, version, page_size, _seq, _s1, _s2, c1, c2 = _HEADER.unpack_from(head)
    if magic not in (_MAGIC_LE, _MAGIC_BE):
        return "the header has no WAL magic number"
    if version != WAL_VERSION or page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        return "the header has an impossible version or page size"
    if _checksum(head[:24], magic == _MAGIC_BE) != (c1, c2):
        return "the header checksum does not match"
    return None


def lost_commits(data: bytes, frames_read: int) -> tuple[int, int] | None:
    """Given the WAL's bytes and how many frames SQLite accepted (mxFrame), the first frame
    SQLite could not read and the number of committed transactions beyond it, or None when
    nothing committed was passed over."""
    if len(data) <= _HEADER.size:
        return None
    if header_problem(data[:_HEADER.size]) is not None:
        return (1, -1) if frames_read == 0 else None  # -1: unknown how many (salts unreadable)
    page_size = _HEADER.unpack_from(data)[2]
    salts = data[16:24]
    size = _FRAME.size + page_size
    commits = 0
    for n in range(frames_read, (len(data) - _HEADER.size) // size):
        off = _HEADER.size + n * size
        if data[off + 8:off + 16] == salts and _FRAME.unpack_from(data, off)[1] != 0:
            commits += 1
    return (frames_read + 1, commits) if commits else None


def marker_path(db_path: str) -> str:
    return db_path + ".damaged"


def mark_damaged(db_path: str, message: str, wal: bytes) -> str:
    """Keep a copy of the damaged log beside the database and leave a marker that makes every
    later open fail with the same message; returns the message with where the copy is."""
    copy = db_path + "-wal.damaged"
    text = f"{message}; a copy of the log is in {copy} (restore the state from a backup, then remove " \
           f"{marker_path(db_path)})"
    for path, data in ((copy, wal), (marker_path(db_path), text.encode())):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    return text


def refuse_if_marked(db_path: str, fail: Callable[[str], Exception]) -> None:
    try:
        with open(marker_path(db_path), encoding="utf-8", errors="replace") as fh:
            text = fh.read().strip()
    except FileNotFoundError:
        return
    raise fail(f"state marked damaged: {text}")
