"""The admin shell: in process through vhsm.cli.main.main and as the `vhsm` console command."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from vhsm.cli.commands import COMMANDS
from vhsm.cli.main import main
from vhsm.commands.catalog import COMMANDS as EXCRYPT_COMMANDS
from vhsm.commands.catalog import TRANSACTION_PROCESSING_COMMANDS, VSEC_CMS_COMMANDS
from vhsm.device import VirtualHSM
from vhsm.factory import ALL_SLOTS, TRANSACTION_PROCESSING
from vhsm.passwords import verify_password

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VHSM = os.path.join(ROOT, ".venv", "bin", "vhsm")
SETUP = os.path.join(ROOT, "examples", "vectera-setup.fxcli")

# Guide sections 6.5.1 and 6.5.2, as printed there.
GUIDE_TP = ["ECHO", "PRMD", "RAND", "HASH", "GPKM", "GPKS", "GPKR"]
GUIDE_VSEC = ["ECHO", "GPKM", "GPKS", "HASH", "GRSA", "LRSA", "GPKD", "GPKU", "GPSE", "TIME"]
GUIDE_VSEC_PERMS = ["Keys:Authorized", "Keys:Import PKI", "Keys:No Usage Wrap"]

LOGIN_BOTH = "login user -u Admin1 -p safest\nlogin user -u Admin2 -p safest\n"


# ------------------------------------------------------------------ helpers

@pytest.fixture
def state(tmp_path):
    return str(tmp_path / "state")


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def vhsm(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([VHSM, *argv], input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def script(tmp_path, text: str, name: str = "setup.fxcli") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def db_dump(state: str) -> list[str]:
    """Every row of every table of the device database."""
    con = sqlite3.connect(f"file:{os.path.join(state, 'vhsm.db')}?mode=ro", uri=True)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def roles_json(capsys, state: str) -> list[dict]:
    rc, out, err = cli(capsys, "--state", state, "--output", "json", "role", "list")
    assert rc == 0, err
    return json.loads(out)


def identities_json(capsys, state: str) -> list[dict]:
    rc, out, err = cli(capsys, "--state", state, "--output", "json", "identity", "list")
    assert rc == 0, err
    return json.loads(out)


def role(roles: list[dict], name: str) -> dict:
    return next(r for r in roles if r["name"] == name)


# ------------------------------------------------------------------ help

def test_help_lists_every_command(capsys, state):
    rc, out, err = cli(capsys, "--state", state, "help")
    assert rc == 0 and err == ""
    for c in COMMANDS:
        assert c.name in out and c.summary in out
    assert not os.path.exists(state)  # help does not touch the device


@pytest.mark.parametrize("argv", [["help", "role", "add"], ["role", "add", "help"], ["role", "add", "--help"]])
def test_command_help_shows_options(capsys, state, argv):
    rc, out, err = cli(capsys, "--state", state, *argv)
    assert rc == 0, err
    for opt in ("--name", "--application", "--key-range", "--perm"):
        assert opt in out
    assert "usage: role add" in out
    assert not os.path.exists(state)


def test_help_as_subprocess(state):
    p = vhsm("--state", state, "help")
    assert p.returncode == 0 and "role modify" in p.stdout and "majorkey random" in p.stdout
    p = vhsm("--state", state, "role", "modify", "help")
    assert p.returncode == 0
    for opt in ("--clear-perms", "--clear-key-ranges", "--add-perm", "--del-perm", "--add-key-range"):
        assert opt in p.stdout


# ------------------------------------------------------------------ one-shot and scripts

def test_one_shot_mode(capsys, state):
    rc, out, err = cli(capsys, "--state", state, "role", "list")
    assert rc == 0, err
    assert TRANSACTION_PROCESSING in out and "Administrator" in out
    rc, out, err = cli(capsys, "--state", state, "role", "show", "--name", "Anonymous")
    assert rc == 0 and f"Name: {TRANSACTION_PROCESSING}" in out
    rc, out, err = cli(capsys, "--state", state, "majorkey", "status")
    assert rc == 0 and "FTK: not loaded" in out


def test_one_shot_subprocess(state):
    p = vhsm("--state", state, "identity", "list")
    assert p.returncode == 0, p.stderr
    assert "Admin1" in p.stdout and "Admin2" in p.stdout


def test_script_with_comments_and_continuations(capsys, tmp_path, state):
    path = script(tmp_path, r"""
        # a comment line
        connect usb

        login user -u Admin1 -p safest   # a trailing comment
          # an indented comment
        login user \
            -u Admin2 \
            -p safest
        user change-password -u Admin1 --old-password safest --new-password Pa#ss-1
        role add --name App --application \
            --key-range (0,99) \
            --perm "Keys:Authorized"
        role modify --name App --add-perm Excrypt:ECHO --add-perm Excrypt:HASH
        identity add --name crypto1 --role App --password 'pin#1234'
        """)
    rc, out, err = cli(capsys, "--state", state, "-f", path)
    assert rc == 0, err
    roles = roles_json(capsys, state)
    app = role(roles, "App")
    assert app["key_ranges"] == [[0, 99]] and app["perms"] == ["Keys:Authorized"]
    assert app["commands"] == ["ECHO", "HASH"]
    dev = VirtualHSM(state)
    try:
        # a `#` inside a word is part of it, not a comment
        assert verify_password("Pa#ss-1", dev.store.get_identity("Admin1")["password_hash"])
        assert verify_password("pin#1234", dev.store.get_identity("crypto1")["password_hash"])
        assert dev.store.get_identity("crypto1")["role"] == "App"
    finally:
        dev.close()


def test_script_stops_at_first_failure(capsys, tmp_path, state):
    path = script(tmp_path, """\
        login user -u Admin1 -p safest
        # only one administrator: refused
        role add --name App --application --key-range (0,9)
        user change-password -u Admin1 --old-password safest --new-password never-run
        """)
    rc, out, err = cli(capsys, "--state", state, "-f", path)
    assert rc == 1
    assert f"{path}:3: stopped" in err and "dual control" in err
    dev = VirtualHSM(state)
    try:
        assert dev.store.get_role("App") is None
        assert dev.store.get_identity("Admin1")["flags"]["default_password"] is True
    finally:
        dev.close()


def test_script_and_command_together_is_a_usage_error(capsys, tmp_path, state):
    path = script(tmp_path, "role list\n")
    rc, out, err = cli(capsys, "--state", state, "-f", path, "role", "list")
    assert rc == 2


def test_missing_script_is_a_usage_error(capsys, tmp_path, state):
    rc, out, err = cli(capsys, "--state", state, "-f", str(tmp_path / "nope.fxcli"))
    assert rc == 2 and "cannot read" in err


# ------------------------------------------------------------------ the guide's setup

def check_guide_state(roles: list[dict], identities: list[dict]) -> None:
    tp = role(roles, TRANSACTION_PROCESSING)
    assert sorted(tp["commands"]) == sorted(GUIDE_TP)
    assert tp["key_ranges"] == []
    assert ALL_SLOTS not in tp["perms"]
    assert tp["perms"] == ["Keys"]
    vsec = role(roles, "vSEC_CMS")
    assert vsec["kind"] == "application"
    assert vsec["key_ranges"] == [[0, 999]]
    assert sorted(vsec["perms"]) == sorted(GUIDE_VSEC_PERMS)
    assert sorted(vsec["commands"]) == sorted(GUIDE_VSEC)
    assert len(vsec["commands"]) == 10
    assert {"name": "crypto1", "role": "vSEC_CMS"}.items() <= next(
        i for i in identities if i["name"] == "crypto1").items()
    assert not any(i["default_password"] for i in identities if i["name"] in ("Admin1", "Admin2"))


def test_catalog_matches_guide():
    assert sorted(TRANSACTION_PROCESSING_COMMANDS) == sorted(GUIDE_TP)
    assert sorted(VSEC_CMS_COMMANDS) == sorted(GUIDE_VSEC)


def test_replay_guide_setup_subprocess(capsys, state):
    p = vhsm("--state", state, "-f", SETUP)
    assert p.returncode == 0, p.stderr
    check_guide_state(roles_json(capsys, state), identities_json(capsys, state))
    p = vhsm("--state", state, "--output", "json", "majorkey", "status")
    assert p.returncode == 0 and json.loads(p.stdout)["FTK"]["loaded"] is True
    dev = VirtualHSM(state)
    try:
        ok, text = dev.store.verify_audit()
        assert ok, text
        assert all(r["result"] == "ok" for r in dev.store.audit_rows())
    finally:
        dev.close()


def test_replay_guide_setup_in_process(capsys, state):
    rc, out, err = cli(capsys, "--state", state, "-f", SETUP)
    assert rc == 0, err
    check_guide_state(roles_json(capsys, state), identities_json(capsys, state))


def test_replaying_setup_twice_is_refused_and_changes_nothing(capsys, state):
    assert cli(capsys, "--state", state, "-f", SETUP)[0] == 0
    before = (roles_json(capsys, state), identities_json(capsys, state))
    rc, out, err = cli(capsys, "--state", state, "-f", SETUP)
    assert rc == 1  # the default passwords no longer work
    assert "login" in err
    assert (roles_json(capsys, state), identities_json(capsys, state)) == before


# ------------------------------------------------------------------ usage errors

@pytest.mark.parametrize("argv, nearest", [
    (["role", "ad", "--name", "X", "--application"], "role add"),
    (["rol", "list"], "role list"),
    (["identity", "ad", "--name", "x", "--role", "Anonymous", "--password", "safest"], "identity add"),
    (["role", "add", "--nmae", "X", "--application"], "--name"),
    (["role", "add", "--name", "X", "--aplication"], "--application"),
    (["role", "modify", "--name", "Anonymous", "--clear-perm"], "--clear-perms"),
    (["role", "modify", "--name", "Anonymous", "--add-perms", "Excrypt:ECHO"], "--add-perm"),
    (["majorkey", "random", "--ftk", "--forse"], "--force"),
])
def test_unknown_command_or_flag(capsys, state, argv, nearest):
    assert cli(capsys, "--state", state, "init")[0] == 0
    before = db_dump(state)
    rc, out, err = cli(capsys, "--state", state, *argv)
    assert rc == 2
    assert nearest in err
    assert "usage:" in err
    assert db_dump(state) == before


def test_unknown_command_subprocess_state_unchanged(capsys, state):
    assert vhsm("--state", state, "init").returncode == 0
    before, roles = db_dump(state), roles_json(capsys, state)
    p = vhsm("--state", state, "role", "modfy", "--name", "Anonymous", "--clear-perms")
    assert p.returncode == 2 and "role modify" in p.stderr and p.stdout == ""
    p = vhsm("--state", state, "role", "modify", "--name", "Anonymous", "--clear-perm")
    assert p.returncode == 2 and "--clear-perms" in p.stderr and "usage:" in p.stderr
    assert db_dump(state) == before
    assert roles_json(capsys, state) == roles


def test_bad_top_level_flag(capsys, state):
    with pytest.raises(SystemExit) as e:
        main(["--state", state, "--output", "yaml", "role", "list"])
    assert e.value.code == 2
    assert not os.path.exists(state)


# ------------------------------------------------------------------ refusals

def test_refused_command_exits_1_and_changes_nothing(capsys, state):
    assert cli(capsys, "--state", state, "init")[0] == 0
    before = (roles_json(capsys, state), identities_json(capsys, state))
    rc, out, err = cli(capsys, "--state", state, "role", "add", "--name", "App", "--application",
                       "--key-range", "(0,9)")
    assert rc == 1
    assert "refused by rule 'dual control'" in err
    assert (roles_json(capsys, state), identities_json(capsys, state)) == before


def test_refused_with_one_admin_logged_in(capsys, tmp_path, state):
    assert cli(capsys, "--state", state, "init")[0] == 0
    before = (roles_json(capsys, state), identities_json(capsys, state))
    path = script(tmp_path, "login user -u Admin1 -p safest\nrole add --name App --application --key-range (0,9)\n")
    p = vhsm("--state", state, "-f", path)
    assert p.returncode == 1
    assert "dual control" in p.stderr and "Admin1" in p.stderr
    assert (roles_json(capsys, state), identities_json(capsys, state)) == before


def test_refused_bad_range_changes_nothing(capsys, tmp_path, state):
    assert cli(capsys, "--state", state, "init")[0] == 0
    before = (roles_json(capsys, state), identities_json(capsys, state))
    for rng in ("(999,0)", "(0,99999999)", "abc"):
        path = script(tmp_path, LOGIN_BOTH + f"role add --name App --application --key-range {rng}\n")
        rc, out, err = cli(capsys, "--state", state, "-f", path)
        assert rc == 1 and "key range" in err, err
    assert (roles_json(capsys, state), identities_json(capsys, state)) == before


def test_role_add_needs_application(capsys, tmp_path, state):
    path = script(tmp_path, LOGIN_BOTH + "role add --name App --key-range (0,9)\n")
    rc, out, err = cli(capsys, "--state", state, "-f", path)
    assert rc == 2 and "--application" in err
    assert all(r["name"] != "App" for r in roles_json(capsys, state))


# ------------------------------------------------------------------ json output

def test_json_output(capsys, state):
    roles = roles_json(capsys, state)
    assert {r["name"] for r in roles} == {"Administrator", TRANSACTION_PROCESSING}
    tp = role(roles, TRANSACTION_PROCESSING)
    assert ALL_SLOTS in tp["perms"] and tp["key_ranges"] == []
    idents = identities_json(capsys, state)
    assert {i["name"] for i in idents} == {"Admin1", "Admin2"}
    assert all(i["default_password"] and i["role"] == "Administrator" for i in idents)
    rc, out, err = cli(capsys, "--state", state, "--output", "json", "majorkey", "status")
    assert rc == 0 and json.loads(out) == {"FTK": {"loaded": False, "kcv": None}}
    rc, out, err = cli(capsys, "--state", state, "--output", "json", "command", "list")
    assert rc == 0
    rows = json.loads(out)
    assert [r["command"] for r in rows] == [c.code for c in EXCRYPT_COMMANDS]
    assert {r["command"] for r in rows if r["whitelist"] == "always"} == {"LOGI", "LOGO", "SESO", "SESC"}
    assert "C_Login" in next(r for r in rows if r["command"] == "LOGI")["pkcs11"]


def test_json_output_subprocess(state):
    for argv in (["role", "list"], ["identity", "list"], ["majorkey", "status"], ["command", "list"]):
        p = vhsm("--state", state, "--output", "json", *argv)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout), argv


# ------------------------------------------------------------------ no prompts without a terminal

@pytest.mark.parametrize("argv", [
    ["login", "user", "-u", "Admin1"],
    ["user", "change-password", "-u", "Admin1"],
    ["user", "change-password", "-u", "Admin1", "--old-password", "safest"],
    ["identity", "add", "--name", "x", "--role", "Anonymous"],
])
def test_no_prompt_when_stdin_is_not_a_terminal(capsys, state, argv):
    assert cli(capsys, "--state", state, "init")[0] == 0
    before = db_dump(state)
    rc, out, err = cli(capsys, "--state", state, *argv)
    assert rc == 2
    assert "is needed" in err
    assert db_dump(state) == before


def test_no_prompt_subprocess(state):
    p = vhsm("--state", state, "login", "user", "-u", "Admin1")
    assert p.returncode == 2 and "Password is needed" in p.stderr
    p = vhsm("--state", state, "login", "user")
    assert p.returncode == 2 and "Username is needed" in p.stderr


def test_piped_commands_run_without_prompt(state):
    p = vhsm("--state", state, stdin="role list\nidentity list\nexit\nrole bogus\n")
    assert p.returncode == 0, p.stderr
    assert "vhsm>" not in p.stdout and "Password" not in p.stdout
    assert TRANSACTION_PROCESSING in p.stdout and "Admin1" in p.stdout
    assert "bogus" not in p.stderr  # stopped at exit


def test_help_does_not_need_a_terminal(state):
    p = vhsm("--state", state, stdin="help\n")
    assert p.returncode == 0 and "role add" in p.stdout


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
