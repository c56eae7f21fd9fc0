"""Learn mode on a real PKCS #11 workload, and the hash-chained audit log.

A partition with an empty whitelist is put in learn mode; a python-pkcs11 application runs
its usual work; `role learn --stop` prints the whitelist it needed as one ready
`role modify` line. That line, replayed with `vhsm -f` on a fresh device, is enough for the
same application; one command less is not.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from integration_fixtures import run_child
from support import ROOT, build_library, write_config

VHSM = os.path.join(ROOT, ".venv", "bin", "vhsm")
SETUP = os.path.join(ROOT, "examples", "vectera-setup.fxcli")
LOGIN = "login user -u Admin1 -p Admin1-Pass\nlogin user -u Admin2 -p Admin2-Pass\n"
ROLE = "CMS Learner"  # a name with a space: the printed line must quote it

# What the application does after C_Login, and the Excrypt command each step sends
# (fxpkcs11/abi/*.py and the mechanism table in fxpkcs11/mechs.py):
#   C_GenerateKey (AES, generic secret)       GPGS   abi/keys.py: mech.command("generate")
#   C_GenerateRandom (the IV)                 RAND   abi/keys.py
#   C_EncryptInit/C_Encrypt (CKM_AES_CBC_PAD) GPSE   abi/crypto.py: mech.command("encrypt")
#   C_SignInit/C_Sign (CKM_SHA256_HMAC)       GPMC
#   C_GenerateKeyPair (RSA)                   GRSA
#   C_SignInit/C_Sign (CKM_SHA256_RSA_PKCS)   GPAS
#   C_FindObjectsInit                         GPKM   abi/objects.py
#   C_GetAttributeValue                       GPKS   abi/objects.py; python-pkcs11 reads the
#                                                   class and capabilities of every object it
#                                                   returns (make_object), so each keygen and
#                                                   each found object sends GPKS
#   C_GetTokenInfo (logged in)                ECHO, HASH, PRMD   abi/general.py
# C_OpenSession, C_Login, C_CloseSession and the logout after the last session are session
# control (SESO, LOGI, SESC, LOGO): they run for every role and are never whitelisted.
# C_GetTokenInfo before C_Login runs as Transaction Processing, not as the partition.
EXPECTED = {"GPGS", "RAND", "GPSE", "GPMC", "GRSA", "GPAS", "GPKM", "GPKS", "ECHO", "HASH", "PRMD"}
# PRMD is used only incidentally: C_GetTokenInfo asks for the PIN length limits and, when
# PRMD is refused, answers with the defaults, so the application cannot tell. ECHO (the
# firmware version) and HASH (the serial number) are refused the same quiet way, but this
# application checks both values, so without them it fails.
INCIDENTAL = {"PRMD"}

WORKLOAD = """
    lib = pkcs11.lib(LIB)
    tok = lib.get_token(token_label="Futurex")
    with tok.open(rw=True, user_pin=PIN) as s:
        aes = s.generate_key(KeyType.AES, 256, label="wl-aes")
        iv = s.generate_random(128)
        ct = aes.encrypt(b"sixteen byte blk" * 3, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv)
        mac_key = s.generate_key(KeyType.GENERIC_SECRET, 256, label="wl-hmac",
                                 capabilities=pkcs11.MechanismFlag.SIGN | pkcs11.MechanismFlag.VERIFY)
        mac = mac_key.sign(b"message", mechanism=Mechanism.SHA256_HMAC)
        pub, priv = s.generate_keypair(KeyType.RSA, 2048, label="wl-rsa")
        sig = priv.sign(b"message", mechanism=Mechanism.SHA256_RSA_PKCS)
        found = sorted(str(o[Attribute.CLASS]) for o in s.get_objects({Attribute.LABEL: "wl-rsa"}))
        info = lib.get_token(token_label="Futurex")  # C_GetTokenInfo, now as the partition
        serial = info.serial.decode() if isinstance(info.serial, bytes) else str(info.serial)
        assert serial.strip(), "no serial number"
        assert tuple(info.firmware_version) != (0, 0), "no firmware version"
        out(ct=len(ct), mac=len(mac), sig=sig.hex(), n=pub[Attribute.MODULUS].hex(), found=len(found),
            serial=serial.strip())
"""


# ------------------------------------------------------------------ helpers

def vhsm(state: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([VHSM, "--state", state, *argv], cwd=ROOT, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=180)


def ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, f"status {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p.stdout


def admin(state: str, body: str, name: str = "admin.fxcli") -> subprocess.CompletedProcess:
    path = os.path.join(os.path.dirname(state), name)
    with open(path, "w") as f:
        f.write(LOGIN + textwrap.dedent(body))
    return vhsm(state, "-f", path)


def as_json(state: str, *argv: str):
    return json.loads(ok(vhsm(state, "--output", "json", *argv)))


def guide_state(folder) -> str:
    """Guide sections 6.1-6.6: changed admin passwords, FTK, hardened Transaction
    Processing, the vSEC_CMS partition (0,999) with identity crypto1."""
    state = os.path.join(str(folder), "state")
    ok(vhsm(state, "-f", SETUP))
    return state


def add_partition(state: str, role: str, identity: str, key_range: str, line: str | None = None) -> None:
    ok(admin(state, f"""
        role add --name "{role}" --application --key-range {key_range}
        identity add --name {identity} --role "{role}" --password safest
        {line or ''}
        """, name=f"add-{identity}.fxcli"))


def workload(state: str, identity: str, *, check: bool = True) -> dict:
    base = os.path.dirname(state)
    cfg = write_config(os.path.join(base, f"{identity}.cfg"), state, identity=identity,
                       log_file=os.path.join(base, f"{identity}.log"))
    return run_child(cfg, WORKLOAD, check=check)


def check_result(r: dict) -> None:
    assert r["_rc"] == 0, r["_stderr"]
    assert r["ct"] == 64 and r["mac"] == 32 and r["found"] == 2 and r["serial"].startswith("VP")
    public = rsa.RSAPublicNumbers(65537, int(r["n"], 16)).public_key()
    public.verify(bytes.fromhex(r["sig"]), b"message", padding.PKCS1v15(), hashes.SHA256())


def whitelist(line: str, role: str) -> list[str]:
    prefix = f'role modify --name "{role}" '
    assert line.startswith(prefix), line
    words = line[len(prefix):].split()
    assert words[0::2] == ["--add-perm"] * (len(words) // 2) and len(words) % 2 == 0, line
    return [w[len("Excrypt:"):] for w in words[1::2] if w.startswith("Excrypt:")]


# ------------------------------------------------------------------ learn mode

@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """Learn mode on a partition with no commands, around one run of the workload."""
    build_library()
    base = tmp_path_factory.mktemp("learn")
    state = guide_state(base)
    add_partition(state, ROLE, "learner1", "(2000,2999)")
    assert as_json(state, "role", "show", "--name", ROLE)["commands"] == []
    before = workload(state, "learner1", check=False)  # refused: nothing is whitelisted
    other = run_child(write_config(os.path.join(str(base), "crypto1.cfg"), state, identity="crypto1"), """
        with pkcs11.lib(LIB).get_token(token_label="Futurex").open(user_pin=PIN) as s:
            try:
                s.generate_random(64)
            except pkcs11.FunctionFailed:
                out(refused=True)
    """)  # a refusal in another partition, which nothing below about ROLE may show
    start = admin(state, f'role learn --name "{ROLE}" --start\n', name="start.fxcli")
    during = workload(state, "learner1", check=False)
    commands_while_learning = as_json(state, "role", "show", "--name", ROLE)["commands"]
    stop = admin(state, f'role learn --name "{ROLE}" --stop\n', name="stop.fxcli")
    after = workload(state, "learner1", check=False)
    stop_again = admin(state, f'role learn --name "{ROLE}" --stop\n', name="stop-again.fxcli")
    return dict(state=state, before=before, other=other, start=start, during=during,
                commands_while_learning=commands_while_learning, stop=stop, after=after,
                stop_again=stop_again)


def stop_lines(learned) -> list[str]:
    out = ok(learned["stop"])
    return [ln for ln in out.splitlines() if ln.startswith(("role modify", "# refused"))]


def test_learn_mode_runs_the_workload_and_stop_prints_its_whitelist(learned):
    assert learned["before"]["_rc"] != 0 and "FunctionFailed" in learned["before"]["_stderr"]
    assert learned["other"].get("refused") is True
    ok(learned["start"])
    check_result(learned["during"])  # with an empty whitelist
    assert learned["commands_while_learning"] == []  # learning records; it does not whitelist
    lines = stop_lines(learned)
    assert len(lines) == 2, ok(learned["stop"])
    line = lines[0]
    assert line == f'role modify --name "{ROLE}" ' + " ".join(f"--add-perm Excrypt:{c}" for c in sorted(EXPECTED))
    assert set(whitelist(line, ROLE)) == EXPECTED
    # what the partition was refused while not learning: the first key command of the run
    # before learn mode, and nothing of the other partition's
    assert lines[1] == "# refused while not learning: GPGS (1x)"
    # stopping left the whitelist as it was: the partition enforces it again
    assert as_json(learned["state"], "role", "show", "--name", ROLE)["commands"] == []
    assert learned["after"]["_rc"] != 0 and "FunctionFailed" in learned["after"]["_stderr"]
    # a second stop is refused: learn mode is off
    p = learned["stop_again"]
    assert p.returncode == 1 and "refused by rule 'learn mode'" in p.stderr, p.stderr


def test_learn_mode_json_output(tmp_path):
    state = guide_state(tmp_path)
    add_partition(state, "J", "j1", "(3000,3099)")
    ok(admin(state, "role learn --name J --start\n"))
    run_child(write_config(str(tmp_path / "j.cfg"), state, identity="j1"), """
        with pkcs11.lib(LIB).get_token(token_label="Futurex").open(user_pin=PIN) as s:
            out(n=len(s.generate_random(64)))
    """)
    path = tmp_path / "stop.fxcli"
    path.write_text(LOGIN + "role learn --name J --stop\n")
    p = vhsm(state, "--output", "json", "-f", str(path))
    out = ok(p)
    data = json.loads(out[out.index("{"):])
    assert data["role"] == "J" and data["commands"] == ["RAND"] and data["denied"] == {}
    assert data["line"] == 'role modify --name "J" --add-perm Excrypt:RAND'


def test_learned_line_replays_on_a_fresh_device_and_is_minimal(learned, tmp_path):
    line = stop_lines(learned)[0]
    state = guide_state(tmp_path)
    # the printed line, unchanged, in a `vhsm -f` script
    add_partition(state, ROLE, "learner1", "(2000,2999)", line)
    assert sorted(as_json(state, "role", "show", "--name", ROLE)["commands"]) == sorted(EXPECTED)
    check_result(workload(state, "learner1"))

    # the same line less one command, each in its own partition
    used = whitelist(line, ROLE)
    for i, code in enumerate(used):
        fewer = line.replace(f" --add-perm Excrypt:{code}", "").replace(f'"{ROLE}"', f'"Minus {code}"')
        add_partition(state, f"Minus {code}", f"minus{code.lower()}", f"({4000 + 100 * i},{4099 + 100 * i})",
                      fewer)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(used, pool.map(lambda c: workload(state, f"minus{c.lower()}", check=False), used)))
    for code, r in results.items():
        denied = {row["command"] for row in as_json(state, "audit", "show", "--result", "denied",
                                                    "--role", f"Minus {code}")}
        assert denied == {code}, (code, denied)  # only the missing command was refused
        if code in INCIDENTAL:
            check_result(r)
        else:
            assert r["_rc"] != 0, f"the workload ran without {code}"


# ------------------------------------------------------------------ audit log

def test_audit_records_admin_actions_and_denied_commands(learned):
    state = learned["state"]
    rows = as_json(state, "audit", "show")
    for row in rows:
        assert set(row) >= {"seq", "time", "identity", "role", "command", "result", "text"}
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", row["time"]), row
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    admin_rows = {(r["command"], r["result"]) for r in rows if r["role"] == "Administrator"}
    for command in ("login user", "user change-password", "majorkey random", "role add", "role modify",
                    "identity add", "role learn --start", "role learn --stop"):
        assert (command, "ok") in admin_rows, command
    assert ("role learn --stop", "refused") in admin_rows  # the second stop
    learn_start = next(r for r in rows if r["command"] == "role learn --start")
    assert learn_start["identity"] == "Admin1,Admin2"
    denied = [r for r in rows if r["result"] == "denied"]
    mine = [r for r in denied if r["role"] == ROLE]
    assert {r["command"] for r in mine} == {"GPGS"} and len(mine) == 2  # before and after learning
    assert all(r["identity"] == "learner1" and "Excrypt:GPGS" in r["text"] for r in mine)
    assert any(r["role"] == "vSEC_CMS" and r["command"] == "RAND" and r["identity"] == "crypto1" for r in denied)
    # nothing the partition ran in learn mode was denied
    start_seq = learn_start["seq"]
    stop_seq = next(r["seq"] for r in rows if r["command"] == "role learn --stop")
    assert not [r for r in mine if start_seq < r["seq"] < stop_seq]


def test_audit_show_filters(learned):
    state = learned["state"]
    everything = as_json(state, "audit", "show")
    rows = as_json(state, "audit", "show", "--result", "denied", "--role", ROLE)
    assert rows == [r for r in everything if r["result"] == "denied" and r["role"] == ROLE]
    assert rows and all(r["result"] == "denied" and r["role"] == ROLE for r in rows)
    assert as_json(state, "audit", "show", "--result", "denied", "--role", "Anonymous") == []
    by_identity = as_json(state, "audit", "show", "--identity", "crypto1")
    assert by_identity and all(r["identity"] == "crypto1" for r in by_identity)
    by_command = as_json(state, "audit", "show", "--command", "role learn")
    assert {r["command"] for r in by_command} == {"role learn --start", "role learn --stop"}
    assert as_json(state, "audit", "show", "--limit", "3") == everything[-3:]
    since = everything[-2]["time"]
    assert as_json(state, "audit", "show", "--since", since) == [r for r in everything if r["time"] >= since]
    text = ok(vhsm(state, "audit", "show", "--result", "denied", "--role", ROLE))
    assert "GPGS" in text and "learner1" in text and "crypto1" not in text
    # a bad filter is a usage error
    p = vhsm(state, "audit", "show", "--result", "maybe")
    assert p.returncode == 2 and "denied" in p.stderr and p.stdout == ""
    p = vhsm(state, "audit", "show", "--rol", ROLE)
    assert p.returncode == 2 and "--role" in p.stderr and "usage:" in p.stderr


def _db(state: str) -> sqlite3.Connection:
    return sqlite3.connect(os.path.join(state, "vhsm.db"))


def verify(state: str) -> tuple[int, str]:
    p = vhsm(state, "audit", "verify")
    return p.returncode, p.stdout + p.stderr


def test_audit_verify_detects_edited_and_deleted_rows(tmp_path):
    state = guide_state(tmp_path)
    add_partition(state, "Victim", "victim1", "(5000,5099)")
    r = workload(state, "victim1", check=False)  # a denied command in the chain
    assert r["_rc"] != 0
    ok(admin(state, "role modify --name Victim --add-perm Excrypt:GPGS\n"))  # and rows after it
    rc, text = verify(state)
    assert rc == 0 and "intact" in text, text
    rows = as_json(state, "audit", "show")
    assert len(rows) > 10
    middle = next(r["seq"] for r in rows if r["result"] == "denied")
    assert 1 < middle < len(rows)

    con = _db(state)
    try:
        original = con.execute("SELECT text, result FROM audit WHERE seq = ?", (middle,)).fetchone()
        # one row's text edited in place
        with con:
            con.execute("UPDATE audit SET text = 'nothing to see here' WHERE seq = ?", (middle,))
        rc, text = verify(state)
        assert rc == 1 and f"audit row {middle}:" in text, text
        # its result edited
        with con:
            con.execute("UPDATE audit SET text = ?, result = 'ok' WHERE seq = ?", (original[0], middle))
        rc, text = verify(state)
        assert rc == 1 and f"audit row {middle}:" in text, text
        with con:
            con.execute("UPDATE audit SET result = ? WHERE seq = ?", (original[1], middle))
        assert verify(state)[0] == 0  # put back exactly: the chain holds again

        # the last row removed
        last = con.execute("SELECT * FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        with con:
            con.execute("DELETE FROM audit WHERE seq = ?", (last[0],))
        rc, text = verify(state)
        assert rc == 1 and f"ends at row {last[0] - 1}" in text, text
        with con:
            con.execute(f"INSERT INTO audit VALUES ({', '.join('?' * len(last))})", last)
        assert verify(state)[0] == 0

        # a middle row removed
        with con:
            con.execute("DELETE FROM audit WHERE seq = ?", (middle,))
        rc, text = verify(state)
        assert rc == 1 and f"rows {middle}..{middle} are missing" in text, text
    finally:
        con.close()
    # and the device goes on appending after the break, which verify still reports
    ok(admin(state, "role list\n"))
    rc, text = verify(state)
    assert rc == 1 and str(middle) in text
    p = vhsm(state, "--output", "json", "audit", "verify")
    assert p.returncode == 1 and json.loads(p.stdout) == {"ok": False, "text": text.strip()}
