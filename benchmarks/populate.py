"""Fill a partition with token objects for the object-count benchmark.

    populate.py STATE_DIR ROLE COUNT

Each object is an AES-256 key wrapped under the FTK exactly as C_GenerateKey stores one,
labelled `fill-N`, inserted through the device's own object space in batches.
"""
from __future__ import annotations

import os
import sys
import time

from fxpkcs11 import ck
from vhsm.device import VirtualHSM
from vhsm.objects import ObjectSpace
from vhsm.policy import slot_ranges

BATCH = 1000


def attrs_for(i: int) -> dict[int, object]:
    return {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: ck.CKK_AES, ck.CKA_TOKEN: True,
            ck.CKA_PRIVATE: True, ck.CKA_LABEL: f"fill-{i}", ck.CKA_ID: i.to_bytes(4, "big"),
            ck.CKA_SENSITIVE: True, ck.CKA_EXTRACTABLE: False, ck.CKA_ENCRYPT: True, ck.CKA_DECRYPT: True,
            ck.CKA_VALUE_LEN: 32}


def main(state: str, role_name: str, count: int) -> None:
    dev = VirtualHSM(state)
    role = dev.store.get_role(role_name)
    if role is None:
        sys.exit(f"populate: no role {role_name!r}")
    space = ObjectSpace(dev.store, dev.require_ftk, dev.cache)
    ranges = slot_ranges(role)
    t0 = time.perf_counter()
    for start in range(0, count, BATCH):
        items = [(attrs_for(i), os.urandom(32)) for i in range(start, min(count, start + BATCH))]
        space.create_all(items, role_name, ranges, 0)
    print(f"populate: {count} objects in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    dev.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
