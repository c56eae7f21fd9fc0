"""The application registry of `vhsm serve --workers` (vhsm/apps.py): the decision that an
idle link may go is taken together with its leaving, across worker processes."""
from __future__ import annotations

import pytest

from vhsm.apps import AppRegistry

A, B = 1111, 2222  # two workers' pids


@pytest.fixture
def registry(tmp_path):
    return AppRegistry.create(str(tmp_path / "state"))


def _app(registry: AppRegistry, logged_in: bool) -> str:
    registry.add_app("app1", A)
    registry.join("app1", B)
    if logged_in:
        registry.set_login("app1", "crypto1", "App", False)
    return "app1"


def test_of_two_idle_links_of_a_logged_in_application_only_one_goes(registry):
    app = _app(registry, logged_in=True)
    assert registry.leave_if_idle(app, A) is True     # the other worker still holds a link
    assert registry.leave_if_idle(app, B) is False    # the last link holds the login: it stays
    assert registry.state(app) is not None
    assert registry.leave(app, B) is True             # closed for good (the client went): ended
    assert registry.state(app) is None


def test_an_application_with_nothing_to_lose_ends_with_its_last_idle_link(registry):
    app = _app(registry, logged_in=False)
    assert registry.leave_if_idle(app, A) is True
    assert registry.leave_if_idle(app, B) is True
    assert registry.state(app) is None
