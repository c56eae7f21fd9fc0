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
