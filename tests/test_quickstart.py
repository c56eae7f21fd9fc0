"""examples/python/quickstart.py: python-pkcs11 signs, encrypts and wraps with libfxpkcs11.so.

Run as a user would (plain-shell environment, cwd "/"): directly with FXPKCS11_CFG, and through
examples/python/run.sh against a fresh embedded vHSM and against `vhsm serve`.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from integration_fixtures import make_env
from support import PIN, ROOT, build_library, child_env
from test_ecosystem_openssl import VPY, run_example, served_config

QUICKSTART = os.path.join(ROOT, "examples", "python", "quickstart.py")
EXPECTED = "signed (256 bytes), encrypted, wrapped (40 bytes): OK"


def test_quickstart_is_short():
    with open(QUICKSTART) as f:
        body = [ln for ln in f.read().split('"""', 2)[2].splitlines() if ln.strip() and not ln.startswith(("import", "from"))]
    assert len(body) <= 16, body


def test_quickstart_direct(tmp_path):
    build_library()
    env = make_env(str(tmp_path))
    proc = subprocess.run([VPY, QUICKSTART, PIN], cwd="/", env=child_env(env.cfg), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr + env.log_text()[-3000:]
    assert proc.stdout.strip() == EXPECTED
    # a wrong PIN is refused
    bad = subprocess.run([VPY, QUICKSTART, "wrong-pin"], cwd="/", env=child_env(env.cfg), capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode != 0 and "PinIncorrect" in bad.stderr


def test_quickstart_example_embedded(tmp_path):
    assert run_example("python", str(tmp_path)).stdout.strip() == EXPECTED


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    cfg, server = served_config(str(tmp_path_factory.mktemp("served")))
    yield cfg, server
    server.stop()


def test_quickstart_example_against_vhsm_serve(served, tmp_path):
    cfg, server = served
    assert run_example("python", str(tmp_path), cfg).stdout.strip() == EXPECTED
    assert "connected (ProductionLink, client certificate)" in server.log_text()
