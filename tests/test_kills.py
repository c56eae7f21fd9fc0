"""kill -9 of an embedded host and of `vhsm serve` during bursts (tests/stress/kills.py has the
worker and the check; `make stress` runs 200 rounds, this runs 20)."""
from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "stress"))

import kills  # noqa: E402
from support import build_library  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _lib():
    build_library()


@pytest.mark.parametrize("mode", ["embedded", "server"])
def test_every_acknowledged_change_survives_kill_9(tmp_path, mode):
    fig = kills.run_rounds(mode, str(tmp_path / mode), 10, seed=7 if mode == "embedded" else 11)
    assert kills.failures(fig) == []
    assert fig["kills"] == 10 and fig["survived"] == 10
    assert fig["keys_checked"] > 0 and fig["journal_lines"] > 0
    assert fig["audit_cli"][0] == 0 and "intact" in fig["audit_cli"][1]


def _verify(target: kills.Target) -> dict:
    proc = target.worker(99, 0, verify_only=True)
    check = kills._read_step(proc, "verified", 60)
    kills._finish(proc)
    return check


def test_the_check_finds_lost_damaged_and_unknown_keys(tmp_path):
    """The check itself can fail: a key deleted, a wrapped key altered and a key added behind
    the journal's back are each reported."""
    from vhsm.store import SQLiteStore

    kills.run_rounds("embedded", str(tmp_path / "t"), 2, seed=3)
    target = kills.Target.__new__(kills.Target)
    target.mode, target.base, target.server = "embedded", str(tmp_path / "t"), None
    target.state = os.path.join(target.base, "state")
    target.journal = os.path.join(target.base, "journal.jsonl")
    target.cfg = os.path.join(target.base, "fxpkcs11.cfg")
    assert not any(_verify(target)[k] for k in ("lost", "damaged", "unknown"))
    with SQLiteStore(os.path.join(target.state, "vhsm.db")) as store:
        keys = [k for k in store.list_keys() if k.wrapped]
        assert len(keys) >= 3, "the bursts made too few keys to tamper with"
        gone, altered, copied = keys[0], keys[1], keys[2]
        store.delete_key(gone.slot)
        blob = bytearray(altered.wrapped)
        blob[-1] ^= 0x01
        altered.wrapped = bytes(blob)
        store.update_key(altered)
        store.insert_key(copied.owner, [(0, 999)],
                         lambda slot: kills_record(copied, slot))
    check = _verify(target)
    assert any(gone.attrs[3] in x for x in check["lost"]), check
    assert any("Error" in x or "differs" in x for x in check["damaged"]), check
    assert any("stray" in x for x in check["unknown"]), check


def kills_record(rec, slot):
    from vhsm.store import KeyRecord
    attrs = dict(rec.attrs)
    attrs[3] = "stray"
    return KeyRecord(slot, rec.owner, attrs, None)
