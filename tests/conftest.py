import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from support import build_library, make_state, write_config  # noqa: E402


@pytest.fixture(scope="session")
def module_path() -> str:
    return build_library()


@pytest.fixture
def state(tmp_path):
    return make_state(str(tmp_path / "state"))


@pytest.fixture
def config(tmp_path, state):
    return write_config(str(tmp_path / "fxpkcs11.cfg"), state.dir)


@pytest.fixture
def children():
    """spawn(cfg, code) starts a net_support.Child (a python-pkcs11 program in its own
    process); every one started is closed after the test."""
    from net_support import Child
    made: list = []

    def spawn(cfg: str, code: str):
        c = Child(cfg, code)
        made.append(c)
        return c
    yield spawn
    for c in made:
        c.close()
