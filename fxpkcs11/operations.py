"""State of one cryptographic operation on a session.

The spec's state machine: an init starts it; single-part and multi-part calls cannot be
mixed; CKR_BUFFER_TOO_SMALL and length queries keep it (and the result already computed,
so the next call returns the same bytes); every other error and every success ends it.
"""
from __future__ import annotations

from typing import Any

SINGLE = 1
MULTI = 2


class Operation:
    __slots__ = ("code", "cid", "mech", "mode", "pending", "pending_in", "finished", "local")

    def __init__(self, code: str, cid: int, mech: int, local: Any = None) -> None:
        self.code = code          # the Excrypt command carrying it ("" for local digests)
        self.cid = cid            # the device's context id
        self.mech = mech
        self.mode = 0             # SINGLE or MULTI once the first data call fixed it
        self.pending: bytes | None = None   # output computed but not yet delivered
        self.pending_in: bytes | None = None
        self.finished = False     # the device context is gone (final ran)
        self.local = local        # provider-side state (digest objects)
