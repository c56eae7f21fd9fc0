"""Coverage-guided fuzzing of the entry layer (tests/fuzz/entry_fuzzer.py, atheris) for a small
fixed budget, after replaying every input that once broke one of its invariants."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz"))
from abi_env import make_two_slot_env  # noqa: E402
from run import fuzz, known_crashes, replay  # noqa: E402

pytest.importorskip("atheris")
BUDGET_S = 20


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    e = make_two_slot_env(str(tmp_path_factory.mktemp("fuzz-env")))
    out = dict(os.environ)
    out["FXPKCS11_CFG"] = e.cfg
    out["XDG_STATE_HOME"] = os.path.join(e.dir, "xdg-state")
    return out


def test_known_crashes_stay_fixed(env, tmp_path):
    crashes = known_crashes()
    assert len(crashes) >= 3
    r = replay(crashes, str(tmp_path), env)
    assert not r.crashed, r.tail()
    assert r.output.count("Executed ") >= len(crashes), r.tail()


def test_fuzz_small_budget(env, tmp_path):
    r = fuzz(str(tmp_path), BUDGET_S, env)
    assert not r.crashed, r.tail()
    assert r.executions > 1000, r.tail()
    assert not os.listdir(tmp_path / "artifacts")
