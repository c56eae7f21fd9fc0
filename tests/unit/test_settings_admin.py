"""Admin side of the token and PIN model: `settings show/set`, `identity add --security-officer`,
`identity unlock`, the identity list's lock column, all under dual control and audited."""
from __future__ import annotations

import json

import pytest

from vhsm import settings
from vhsm.cli.main import main
from vhsm.device import VirtualHSM

BOTH = ["--login", "Admin1:safest", "--login", "Admin2:safest"]


@pytest.fixture
def state(tmp_path):
    s = str(tmp_path / "state")
    assert main(["--state", s, *BOTH, "role", "add", "--name", "App", "--application",
                 "--key-range", "(0,9)"]) == 0
    assert main(["--state", s, *BOTH, "identity", "add", "--name", "app1", "--role", "App",
                 "--password", "app1-pass"]) == 0
    return s


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_settings_show_and_set(state, capsys):
    rc, out, _ = cli(capsys, "--state", state, "settings", "show")
    assert rc == 0 and "max-login-failures" in out and "rsa-min-bits" in out and "2048" in out
    rc, out, _ = cli(capsys, "--state", state, "--output", "json", "settings", "show")
    assert json.loads(out) == {"max-login-failures": 10, "rsa-min-bits": 2048}
    rc, out, _ = cli(capsys, "--state", state, *BOTH, "settings", "set", "--max-login-failures", "4",
                     "--rsa-min-bits", "1024")
    assert rc == 0 and "max-login-failures = 4" in out and "rsa-min-bits = 1024" in out
    dev = VirtualHSM(state)
    try:
        assert settings.max_login_failures(dev.store) == 4 and settings.rsa_min_bits(dev.store) == 1024
        rows = [r for r in dev.store.audit_rows() if r["command"] == "settings set"]
        assert rows and rows[-1]["result"] == "ok"
    finally:
        dev.close()


def test_settings_refusals(state, capsys):
    rc, _, err = cli(capsys, "--state", state, "--login", "Admin1:safest", "settings", "set",
                     "--max-login-failures", "3")
    assert rc == 1 and "dual control" in err
    rc, _, err = cli(capsys, "--state", state, *BOTH, "settings", "set", "--rsa-min-bits", "512")
    assert rc == 1 and "1024 to 4096" in err
    rc, _, err = cli(capsys, "--state", state, *BOTH, "settings", "set", "--max-login-failures", "many")
    assert rc == 1 and "whole number" in err
    rc, _, err = cli(capsys, "--state", state, *BOTH, "settings", "set")
    assert rc == 2 and "at least one setting" in err
    rc, _, err = cli(capsys, "--state", state, *BOTH, "settings", "set", "--max-login-failure", "3")
    assert rc == 2 and "did you mean --max-login-failures" in err
    dev = VirtualHSM(state)
    try:
        assert settings.current(dev.store) == {"max-login-failures": 10, "rsa-min-bits": 2048}
        refused = [r for r in dev.store.audit_rows() if r["command"] == "settings set"]
        assert [r["result"] for r in refused] == ["refused", "refused", "refused"]
    finally:
        dev.close()


def test_security_officer_identity(state, capsys):
    rc, out, _ = cli(capsys, "--state", state, *BOTH, "identity", "add", "--name", "app-so", "--role", "App",
                     "--password", "so-pass", "--security-officer")
    assert rc == 0 and "security officer of App" in out
    rc, _, err = cli(capsys, "--state", state, *BOTH, "identity", "add", "--name", "tp-so", "--role",
                     "Anonymous", "--password", "so-pass", "--security-officer")
    assert rc == 1 and "application partition" in err
    rc, out, _ = cli(capsys, "--state", state, "--output", "json", "identity", "list")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["app-so"]["security_officer"] is True and rows["app1"]["security_officer"] is False


def test_identity_unlock(state, capsys):
    dev = VirtualHSM(state)
    try:
        ident = dev.store.get_identity("app1")
        ident["failed_logins"] = 10
        dev.store.put_identity(ident)
    finally:
        dev.close()
    rc, out, _ = cli(capsys, "--state", state, "--output", "json", "identity", "list")
    assert {r["name"]: r for r in json.loads(out)}["app1"]["locked"] is True
    rc, _, err = cli(capsys, "--state", state, "--login", "Admin1:safest", "identity", "unlock", "--name", "app1")
    assert rc == 1 and "dual control" in err
    rc, _, err = cli(capsys, "--state", state, *BOTH, "identity", "unlock", "--name", "nobody")
    assert rc == 1 and "no identity" in err
    rc, out, _ = cli(capsys, "--state", state, *BOTH, "identity", "unlock", "--name", "app1")
    assert rc == 0 and "unlocked (10 wrong PIN(s) cleared)" in out
    rc, out, _ = cli(capsys, "--state", state, "--output", "json", "identity", "list")
    row = {r["name"]: r for r in json.loads(out)}["app1"]
    assert row["locked"] is False and row["failed_logins"] == 0
