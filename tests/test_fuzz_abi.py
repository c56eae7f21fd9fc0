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


HARNESS_CHECK = r'''
import ctypes, sys
sys.argv = ["entry_fuzzer"]
import entry_fuzzer as fz
from fxpkcs11 import ck
fz.setup()
p = fz.POOLS
rw0 = p.sessions["rw0"]
# an input made an undestroyable token object, and another one in a session it then closed
keep = fz._gen(rw0, ck.CKM_AES_KEY_GEN, (ck.CKA_VALUE_LEN, 16), (ck.CKA_TOKEN, True), (ck.CKA_DESTROYABLE, False))
gone = fz._open(0, True)
orphan = fz._gen(gone, ck.CKM_AES_KEY_GEN, (ck.CKA_VALUE_LEN, 16), (ck.CKA_TOKEN, True))
for h, s in ((keep, rw0), (orphan, gone)):
    p.created.append((s, h)); p.created_slot[h] = 0
fz._ok(fz.c("C_CloseSession", gone), "C_CloseSession")
fz.cleanup()
size = fz.UL()
assert keep not in p.dead_objects and p.survivors == 1, (keep, p.dead_objects, p.survivors)
assert fz.c("C_GetObjectSize", rw0, keep, ctypes.pointer(size)) == ck.CKR_OK
assert orphan in p.dead_objects, p.dead_objects
assert fz.c("C_GetObjectSize", rw0, orphan, ctypes.pointer(size)) == ck.CKR_OBJECT_HANDLE_INVALID
print("harness ok")
'''


def test_harness_calls_an_object_destroyed_only_when_it_is(tmp_path):
    """An object an input made is a "destroyed object" for later inputs only once a destroy
    succeeded: one that is not destroyable lives on, and one whose session the input closed is
    destroyed through the slot's fixture session. (Marking both destroyed made a later, valid
    CKR_OK look like a broken invariant: the long run's one stop, reproduced from its corpus.)"""
    import subprocess
    e = make_two_slot_env(str(tmp_path / "env"))  # its own device: fuzzing may have locked the PIN
    env = {**os.environ, "FXPKCS11_CFG": e.cfg, "XDG_STATE_HOME": os.path.join(e.dir, "xdg-state")}
    script = tmp_path / "check.py"
    script.write_text(HARNESS_CHECK)
    fuzz_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz")
    r = subprocess.run([sys.executable, str(script)], env={**env, "PYTHONPATH": fuzz_dir}, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "harness ok" in r.stdout, r.stdout + r.stderr
