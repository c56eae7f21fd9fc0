"""Concurrency soak, short: 4 processes x 4 threads for 10 s on one state, embedded and over
`vhsm serve` (tests/stress/soak.py; `make stress` runs 60 s each)."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "stress"))

import soak  # noqa: E402
from support import build_library  # noqa: E402


@pytest.mark.parametrize("mode", ["embedded", "server"])
def test_soak(tmp_path, mode):
    build_library()
    fig = soak.run_soak(mode, str(tmp_path / mode), 10.0)
    assert soak.failures(fig) == []
    # every kind of operation ran, in every process
    assert set(fig["ops"]) == {"gen_aes", "gen_ec", "crypt", "sign", "find", "label", "destroy"}, fig["ops"]
    assert fig["created"] > 0 and fig["destroyed"] > 0
    assert fig["objects"] == fig["created"] - fig["destroyed"]
