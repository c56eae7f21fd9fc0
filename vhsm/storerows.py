"""What every store backend shares above its SQL: rows back to records, and the audit chain check.

The row layouts are the column orders both backends select:
identities (name, role, password_hash, flags, failed_logins) and
roles (name, kind, perms, key_ranges, commands, settings), JSON held as text.
"""
from __future__ import annotations

import json
from typing import Any

IDENTITY_COLS = "name, role, password_hash, flags, failed_logins"
ROLE_COLS = "name, kind, perms, key_ranges, commands, settings"


def identity_from_row(row: tuple) -> dict:
    return {"name": row[0], "role": row[1], "password_hash": row[2],
            "flags": json.loads(row[3]), "failed_logins": row[4]}


def role_from_row(row: tuple) -> dict:
    return {"name": row[0], "kind": row[1], "perms": json.loads(row[2]),
            "key_ranges": [tuple(r) for r in json.loads(row[3])],
            "commands": json.loads(row[4]), "settings": json.loads(row[5])}


def verify_audit_chain(rows: list[dict[str, Any]], head: str | None) -> tuple[bool, str]:
    """Check a hash chain of audit rows (ordered by seq) against the recorded head
    ("seq:hash" of the last row written); the message names the first bad row."""
    from vhsm.store import AUDIT_FIELDS, AUDIT_GENESIS, audit_hash  # store.py imports this module
    prev_seq, prev_hash = 0, AUDIT_GENESIS
    for row in rows:
        seq = row["seq"]
        if seq != prev_seq + 1:
            return False, (f"audit row {seq}: rows {prev_seq + 1}..{seq - 1} are missing")
        if row["prev_hash"] != prev_hash:
            return False, f"audit row {seq}: chain broken (previous row altered or removed)"
        fields = {f: row[f] for f in AUDIT_FIELDS}
        if audit_hash(prev_hash, seq, fields) != row["hash"]:
            return False, f"audit row {seq}: contents do not match its hash (row edited)"
        prev_seq, prev_hash = seq, row["hash"]
    expected = None if prev_seq == 0 else f"{prev_seq}:{prev_hash}"
    if head != expected:
        recorded = head.split(":", 1)[0] if head else "none"
        return False, (f"audit log ends at row {prev_seq} but the last row written "
                       f"was {recorded} (rows removed from the end)")
    return True, f"audit log intact ({len(rows)} rows)"
