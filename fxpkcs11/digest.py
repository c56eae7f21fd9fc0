"""The state of one digest operation.

Digests touch no key, so the library computes them (hashlib). Two things need more than a
hash object, whose internal state cannot be exported:

- C_GetOperationState: the honest saveable state of a hash is the data hashed so far, so
  that data is kept, up to STATE_LIMIT bytes. Past the limit it is dropped and the state
  is no longer saveable (CKR_STATE_UNSAVEABLE); the digest itself goes on.
- C_DigestKey: a key's value may not enter the library, so the digest moves into the
  device (Excrypt GPDG) with the data so far, the device adds the key's value, and every
  later update and the final run there. Such a digest is never saveable (its state holds
  key material).
"""
from __future__ import annotations

import hashlib
from typing import Any

from fxpkcs11 import ck
from fxpkcs11.errors import CKRError
from vhsm.excrypt import Tag

STATE_LIMIT = 1 << 20  # bytes of data kept for C_GetOperationState (and for C_DigestKey)


_CONSTRUCTORS: dict[str, Any] = {}


def _constructor(name: str) -> Any:
    """hashlib's own constructor for a name (hashlib.new looks it up on every call)."""
    fn = _CONSTRUCTORS.get(name)
    if fn is None:
        fn = getattr(hashlib, name.replace("-", "_"), None) or (lambda: hashlib.new(name))
        _CONSTRUCTORS[name] = fn
    return fn


class DigestState:
    """hashlib-like (update, digest, digest_size, copy) so the digest functions use it as is."""

    def __init__(self, name: str, mech: int, prefix: bytes = b"") -> None:
        self.name = name
        self.mech = mech
        self.hash = _constructor(name)()
        self.digest_size = self.hash.digest_size
        if prefix:
            self.hash.update(prefix)
        self.kept: bytearray | None = bytearray(prefix) if len(prefix) <= STATE_LIMIT else None
        self.session: Any = None  # set once the digest runs in the device
        self.cid = 0

    @property
    def saveable(self) -> bool:
        return self.session is None and self.kept is not None

    def copy(self) -> Any:
        """A plain hash of the data so far, for the single-part C_Digest."""
        return self.hash.copy()

    def update(self, data: bytes) -> None:
        if self.session is not None:
            self._device({Tag.PHASE: "U", Tag.DATA: data})
            return
        self.hash.update(data)
        if self.kept is not None:
            if len(self.kept) + len(data) > STATE_LIMIT:
                self.kept = None
            else:
                self.kept += data

    def digest(self) -> bytes:
        if self.session is not None:
            out = self._device({Tag.PHASE: "F"}).get(Tag.RESULT, b"")
            self.session = None
            return out
        return self.hash.digest()

    # ------------------------------------------------------------ in the device
    def add_key(self, session: Any, op: Any, key_ref: int) -> None:
        """C_DigestKey: move to the device (first time) and add the key's value there."""
        if self.session is None:
            if self.kept is None:
                raise CKRError(ck.CKR_FUNCTION_FAILED,
                               f"C_DigestKey after more than {STATE_LIMIT} bytes of data: the digest cannot move "
                               "into the HSM (it would need the data so far); digest the key first")
            r = session.call("GPDG", {Tag.PHASE: "I", Tag.MECHANISM: self.mech, Tag.DATA: bytes(self.kept),
                                      Tag.SESSION: session.handle})
            self.session, self.cid = session, r[Tag.CONTEXT]
            self.kept = None
            op.code, op.cid = "GPDG", self.cid
        self._device({Tag.PHASE: "U", Tag.OBJECT: key_ref})

    def _device(self, fields: dict) -> dict:
        s = self.session
        fields[Tag.CONTEXT] = self.cid
        try:
            return s.call("GPDG", fields)
        except CKRError:
            op = s.ops.get("digest")
            if op is not None and op.local is self:
                op.finished = True  # the device dropped the context
                s.ops.pop("digest", None)
            self.session = None
            raise
