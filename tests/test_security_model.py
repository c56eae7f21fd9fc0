"""The security model, each promise tried by an attacker.

Network (a live `vhsm serve`, mutual TLS, Transaction Processing hardened as in guide 6.5.1):
an unauthenticated connection runs only its whitelist; one connection cannot reach another's
session objects by guessing handles or APPJ-joining a guessed application; partition A cannot
reach B's keys through raw Excrypt frames naming B's slots; the PIN lockout holds over the
network and is audited; no PIN or password reaches a log even at the most verbose level;
passwords are stored as slow salted hashes; state and logs are owner-only; an edited audit
row is named by `vhsm audit verify`.

In process (PKCS #11 through the built library): no generated or imported key is in clear in
the state directory or in temporary files; sensitive keys stay sensitive; the key-extraction
attacks of the PKCS #11 security literature (Clulow; Delaune, Kremer and Steel's Tookan)
each fail, named one by one.

Already covered elsewhere and not repeated: partition isolation through PKCS #11
(test_device_rules.py::test_partition_isolation), imported keys in clear on disk
(test_device_rules.py::test_no_key_value_in_clear_on_disk), one-way CKA_SENSITIVE and
CKA_EXTRACTABLE for secret keys and CKA_WRAP_WITH_TRUSTED (test_object_semantics.py), audit
row edits found by the store (test_learn_audit.py), admin frames on the production port
(test_network.py::test_admin_commands_are_refused_on_the_production_port).
"""
from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
import tempfile
import time
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric import dsa, rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

from fxpkcs11 import ck
from integration_fixtures import CK_UNAVAILABLE_INFORMATION, run_child
from net_support import (RawTls, ServerProcess, hsm_block, make_client_identity, read_text, vhsm,
                         write_net_config)
from p11raw import add_security_officer, env, h, raw, set_device_setting  # noqa: F401 (fixtures)
from support import PIN, build_library, make_state
from vhsm import wire
from vhsm.commands.catalog import COMMANDS
from vhsm.excrypt import Command, Tag

HARDENED_TP = ["ECHO", "PRMD", "RAND", "HASH", "GPKM", "GPKS", "GPKR"]  # guide 6.5.1
P256 = bytes.fromhex("06082a8648ce3d030107")
ED25519 = bytes.fromhex("06032b6570")


def frame(code: str, **tags) -> bytes:
    return wire.encode_command(Command(code, tags))


def call(c: RawTls, code: str, **tags):
    reply = c.call(frame(code, **tags))
    assert reply is not None, f"{code}: connection closed"
    return wire.decode_reply(reply.encode("ascii"))


def login(c: RawTls, user: str, password: str = PIN) -> None:
    r = call(c, "LOGI", UN=user, PW=password)
    assert r.ok, r.fields
    assert call(c, "SESO", SH=1, RW=True).ok


# ------------------------------------------------------------------ the network device

@pytest.fixture(scope="module")
def net(tmp_path_factory) -> SimpleNamespace:
    from vhsm.device import VirtualHSM
    from vhsm.factory import TRANSACTION_PROCESSING
    from vhsm.passwords import hash_password

    build_library()
    base = str(tmp_path_factory.mktemp("secmodel"))
    state = os.path.join(base, "state")
    make_state(state, partitions={"App": (0, 999), "B": (1000, 1999)})
    secrets_ = {"user": "Usr-" + os.urandom(6).hex(), "wrong": "Wrg-" + os.urandom(6).hex(),
                "new": "New-" + os.urandom(6).hex(), "init": "Ini-" + os.urandom(6).hex(),
                "so": "Sox-" + os.urandom(6).hex()}
    dev = VirtualHSM(state)
    try:
        tp = dev.store.get_role(TRANSACTION_PROCESSING)
        dev.store.put_role({**tp, "perms": ["Keys"], "key_ranges": [], "commands": list(HARDENED_TP)})
        for name in ("logger1", "victim1"):
            pw = secrets_["user"] if name == "logger1" else PIN
            dev.store.put_identity({"name": name, "role": "App", "password_hash": hash_password(pw),
                                    "flags": {}, "failed_logins": 0})
    finally:
        dev.close()
    add_security_officer(state, name="logger1-so", password=secrets_["so"])
    set_device_setting(state, "max-login-failures", 3)
    ident = make_client_identity(state, os.path.join(base, "pki"))
    ident2 = make_client_identity(state, os.path.join(base, "pki2"), name="client2")
    server = ServerProcess(state, base, name="secmodel", args=("--log-level", "DEBUG"))
    server.start()
    yield SimpleNamespace(base=base, state=state, ident=ident, ident2=ident2, server=server, secrets=secrets_)
    server.stop()


def test_unauthenticated_connection_runs_only_its_whitelist(net):
    owner = RawTls(net.server.port, net.ident)
    anon = RawTls(net.server.port, net.ident)
    try:
        login(owner, "crypto1")
        key = call(owner, "GPGS", SH=1, RW=True, MC=ck.CKM_AES_KEY_GEN,
                   TM={ck.CKA_VALUE_LEN: 16, ck.CKA_TOKEN: True, ck.CKA_PRIVATE: False, ck.CKA_LABEL: "tp-probe"})
        assert key.ok, key.fields
        slot = key.fields[Tag.OBJECT]
        for code in HARDENED_TP:
            r = call(anon, code, **({Tag.LENGTH: 8} if code == "RAND" else {}))
            assert "not enabled for role" not in r.error_text, (code, r.fields)
        assert call(anon, "ECHO", AG="x").ok and len(call(anon, "RAND", LN=8).fields[Tag.DATA]) == 8
        # whitelisted, but no key table slot reaches Transaction Processing
        found = call(anon, "GPKM", TM={ck.CKA_LABEL: "tp-probe"})
        assert found.ok and not found.fields.get(Tag.OBJECTS), found.fields
        assert call(anon, "GPKR", OB=slot, AT=[ck.CKA_LABEL]).reason == ck.CKR_OBJECT_HANDLE_INVALID
        assert call(anon, "GPKS", OB=slot, TM={ck.CKA_LABEL: "changed"}).reason == ck.CKR_OBJECT_HANDLE_INVALID
        refused = []
        for info in COMMANDS:
            if info.session_control or info.code in HARDENED_TP:
                continue
            r = call(anon, info.code, SH=1, OB=slot, KW=slot, MC=ck.CKM_AES_KEY_GEN,
                     TM={ck.CKA_VALUE_LEN: 16}, DA=b"data")
            assert not r.ok and r.reason == ck.CKR_FUNCTION_FAILED, (info.code, r.fields)
            assert "not enabled for role 'Transaction Processing'" in r.error_text, (info.code, r.error_text)
            refused.append(info.code)
        assert {"GPGS", "GRSA", "GPAS", "GPSE", "GPKW", "GPKD", "LRSA", "GPKC"} <= set(refused)
        r = call(anon, "ADMN", MT="device_info")
        assert not r.ok and "not accepted on the production port" in r.error_text
        assert call(owner, "GPKR", OB=slot, AT=[ck.CKA_LABEL]).fields[Tag.ATTR_VALUES] == [[0, "tp-probe"]]
    finally:
        owner.close()
        anon.close()
    rows = json.loads(vhsm(net.state, "--output", "json", "audit", "show", "--result", "denied",
                           "--role", "Transaction Processing").stdout)
    assert {"GPGS", "GPKD"} <= {r["command"] for r in rows}, rows[-5:]


def test_session_objects_of_another_application_are_unreachable(net):
    a = RawTls(net.server.port, net.ident)
    b = RawTls(net.server.port, net.ident)   # the same client certificate, another application
    c = RawTls(net.server.port, net.ident2)  # another client certificate
    try:
        login(a, "crypto1")
        login(b, "crypto1")
        login(c, "crypto1")
        made = call(a, "GPGS", SH=1, MC=ck.CKM_AES_KEY_GEN, TM={ck.CKA_VALUE_LEN: 16, ck.CKA_LABEL: "a-session"})
        assert made.ok
        obj = made.fields[Tag.OBJECT]
        app_a = call(a, "APPN").fields[Tag.APPLICATION]
        for other in (b, c):
            assert not call(other, "GPKM", TM={ck.CKA_LABEL: "a-session"}).fields.get(Tag.OBJECTS)
            for guess in range(obj - 16, obj + 17):  # handles around A's
                assert call(other, "GPKR", OB=guess, AT=[ck.CKA_LABEL]).reason == ck.CKR_OBJECT_HANDLE_INVALID
            assert call(other, "GPSE", SH=1, OB=obj, MC=ck.CKM_AES_ECB).reason == ck.CKR_KEY_HANDLE_INVALID
            assert call(other, "GPKD", OB=obj).reason == ck.CKR_OBJECT_HANDLE_INVALID
        # joining a guessed application: random ids, A's id with one digit changed, and A's
        # real id from another client certificate are all refused
        near = app_a[:-1] + ("0" if app_a[-1] != "0" else "1")
        for guess in [os.urandom(16).hex() for _ in range(20)] + [near, "", "0" * 32, app_a.upper()]:
            r = call(b, "APPJ", AI=guess)
            assert not r.ok and r.reason == ck.CKR_SESSION_HANDLE_INVALID, (guess, r.fields)
        r = call(c, "APPJ", AI=app_a)
        assert not r.ok and r.reason == ck.CKR_SESSION_HANDLE_INVALID
        assert call(c, "GPKR", OB=obj, AT=[ck.CKA_LABEL]).reason == ck.CKR_OBJECT_HANDLE_INVALID
        # the check can see the object: a link of A's own library (same certificate, A's id) does
        assert call(b, "APPJ", AI=app_a).ok
        assert call(b, "GPKR", OB=obj, AT=[ck.CKA_LABEL]).fields[Tag.ATTR_VALUES] == [[0, "a-session"]]
    finally:
        for x in (a, b, c):
            x.close()


def test_partition_isolation_over_raw_excrypt(net):
    b = RawTls(net.server.port, net.ident)
    a = RawTls(net.server.port, net.ident)
    try:
        login(b, "b1")
        rw = dict(SH=1, RW=True)
        aes = call(b, "GPGS", MC=ck.CKM_AES_KEY_GEN, **rw,
                   TM={ck.CKA_VALUE_LEN: 32, ck.CKA_TOKEN: True, ck.CKA_LABEL: "b-secret", ck.CKA_PRIVATE: False,
                       ck.CKA_SENSITIVE: False, ck.CKA_EXTRACTABLE: True})
        pair = call(b, "GECC", MC=ck.CKM_EC_KEY_PAIR_GEN, **rw, PT={ck.CKA_EC_PARAMS: P256, ck.CKA_TOKEN: True,
                                                                     ck.CKA_LABEL: "b-ec"},
                    VT={ck.CKA_TOKEN: True, ck.CKA_LABEL: "b-ec"})
        assert aes.ok and pair.ok, (aes.fields, pair.fields)
        b_keys = [aes.fields[Tag.OBJECT], pair.fields[Tag.PUBLIC_OBJECT], pair.fields[Tag.PRIVATE_OBJECT]]
        assert all(1000 <= k <= 1999 for k in b_keys), b_keys  # slots on the wire
        rv, value = call(b, "GPKR", OB=b_keys[0], AT=[ck.CKA_VALUE]).fields[Tag.ATTR_VALUES][0]
        assert rv == 0 and len(value) == 32

        login(a, "crypto1")
        kek = call(a, "GPGS", MC=ck.CKM_AES_KEY_GEN, **rw, TM={ck.CKA_VALUE_LEN: 32, ck.CKA_TOKEN: True}).fields[
            Tag.OBJECT]
        assert not call(a, "GPKM", TM={}).fields.get(Tag.OBJECTS, []) or \
            not set(call(a, "GPKM", TM={}).fields[Tag.OBJECTS]) & set(b_keys)
        assert not call(a, "GPKM", TM={ck.CKA_LABEL: "b-secret"}).fields.get(Tag.OBJECTS)
        for slot in b_keys + list(range(1000, 1012)):  # B's keys and B's whole first slots by number
            for r in (call(a, "GPKR", OB=slot, AT=[ck.CKA_VALUE, ck.CKA_LABEL]),
                      call(a, "GPKS", OB=slot, TM={ck.CKA_LABEL: "stolen"}),
                      call(a, "GPKC", OB=slot, TM={ck.CKA_LABEL: "copied"}, **rw),
                      call(a, "GPKD", OB=slot)):
                assert r.reason == ck.CKR_OBJECT_HANDLE_INVALID, (slot, r.code, r.fields)
            for r in (call(a, "GPSE", OB=slot, MC=ck.CKM_AES_ECB, SH=1),
                      call(a, "GPAS", OB=slot, MC=ck.CKM_ECDSA, SH=1),
                      call(a, "GPKW", OB=slot, KW=kek, MC=ck.CKM_AES_KEY_WRAP_PAD, SH=1)):
                assert r.reason == ck.CKR_KEY_HANDLE_INVALID, (slot, r.code, r.fields)
            r = call(a, "GPKW", OB=kek, KW=slot, MC=ck.CKM_AES_KEY_WRAP_PAD, SH=1)
            assert r.reason == ck.CKR_WRAPPING_KEY_HANDLE_INVALID, (slot, r.fields)
            r = call(a, "GPKX", OB=slot, MC=ck.CKM_ECDH1_DERIVE, SH=1, MP={"kdf": 1, "public": bytes(65)})
            assert r.reason == ck.CKR_KEY_HANDLE_INVALID, (slot, r.fields)
        # what A makes lands in A's range, never in B's
        mine = call(a, "GPGS", MC=ck.CKM_AES_KEY_GEN, **rw, TM={ck.CKA_VALUE_LEN: 16, ck.CKA_TOKEN: True})
        assert 0 <= mine.fields[Tag.OBJECT] <= 999
        # B's keys are intact
        after = call(b, "GPKR", OB=b_keys[0], AT=[ck.CKA_VALUE, ck.CKA_LABEL]).fields[Tag.ATTR_VALUES]
        assert after == [[0, value], [0, "b-secret"]]
        assert call(b, "GPKR", OB=b_keys[2], AT=[ck.CKA_LABEL]).fields[Tag.ATTR_VALUES] == [[0, "b-ec"]]
    finally:
        a.close()
        b.close()


def test_pin_lockout_holds_over_the_network_and_is_audited(net, tmp_path):
    c = RawTls(net.server.port, net.ident)
    try:
        for n in range(3):
            r = call(c, "LOGI", UN="victim1", PW=f"guess-{n}")
            assert r.reason == ck.CKR_PIN_INCORRECT, r.fields
        assert call(c, "LOGI", UN="victim1", PW=PIN).reason == ck.CKR_PIN_LOCKED
    finally:
        c.close()
    d = RawTls(net.server.port, net.ident2)  # a new connection, another certificate: still locked
    try:
        assert call(d, "LOGI", UN="victim1", PW=PIN).reason == ck.CKR_PIN_LOCKED
    finally:
        d.close()
    cfg = write_net_config(str(tmp_path / "victim.cfg"),
                           hsm_block(net.server.address, identity="victim1", ca=[net.ident.ca], cert=net.ident.cert,
                                     key=net.ident.key))
    r = run_child(cfg, """
        import ctypes
        dll = ctypes.CDLL(LIB)
        ul = ctypes.c_ulong
        assert dll.C_Initialize(None) == 0
        h = ul()
        assert dll.C_OpenSession(ul(0), ul(6), None, None, ctypes.byref(h)) == 0
        out(login=dll.C_Login(h, ul(1), PIN.encode(), ul(len(PIN))))
        dll.C_Finalize(None)
    """)
    assert r["login"] == ck.CKR_PIN_LOCKED
    rows = json.loads(vhsm(net.state, "--output", "json", "audit", "show", "--identity", "victim1").stdout)
    texts = [row["text"] for row in rows if row["command"] == "LOGI"]
    assert [t for t in texts if t.startswith("wrong PIN")] == ["wrong PIN (1 of 3)", "wrong PIN (2 of 3)",
                                                               "wrong PIN (3 of 3); identity locked"], texts
    assert sum("locked after 3 wrong PINs" in t for t in texts) >= 3  # both connections and the library
    assert all(row["result"] == "refused" for row in rows if row["command"] == "LOGI")


def test_no_pin_or_password_in_any_log(net, tmp_path):
    s = net.secrets
    lib_log = str(tmp_path / "lib.log")
    common = dict(ca=[net.ident.ca], cert=net.ident.cert, key=net.ident.key)
    auto = write_net_config(str(tmp_path / "auto.cfg"), hsm_block(net.server.address, identity="logger1",
                                                                  auto_login=s["user"], **common),
                            log_file=lib_log, log_mode="TRACE")
    manual = write_net_config(str(tmp_path / "manual.cfg"), hsm_block(net.server.address, identity="logger1",
                                                                      **common), log_file=lib_log, log_mode="TRACE")
    before = len(net.server.log_text())
    r = run_child(manual, f"""
        import os
        from fxpkcs11 import ck
        from p11raw import Raw
        s = {s!r}
        raw = Raw()
        assert raw.dll.C_Initialize(None) == 0
        r = {{}}
        rv, h = raw.open_session(rw=True)
        r["wrong"] = raw.login(h, s["wrong"])
        r["user"] = raw.login(h, s["user"])
        r["set_pin"] = raw.set_pin(h, s["user"], s["new"])
        r["set_pin_wrong"] = raw.set_pin(h, s["wrong"], s["init"])
        r["logout"] = raw.logout(h)
        r["so_wrong"] = raw.login(h, s["wrong"], ck.CKU_SO)
        r["so"] = raw.login(h, s["so"], ck.CKU_SO)
        r["init_pin"] = raw.init_pin(h, s["init"])
        r["so_logout"] = raw.logout(h)
        r["back"] = raw.login(h, s["init"])
        r["restore"] = raw.set_pin(h, s["init"], s["user"])
        raw.close_all()
        raw.dll.C_Finalize(None)
        os.environ["FXPKCS11_CFG"] = {auto!r}
        assert raw.dll.C_Initialize(None) == 0
        rv, h = raw.open_session(rw=True)
        r["auto"] = raw.login(h, s["user"])  # <CRYPTO-OPR-PASS> logged in already, or this logs in
        raw.close_all()
        raw.dll.C_Finalize(None)
        out(**r)
    """)
    assert (r["wrong"], r["user"], r["set_pin"], r["set_pin_wrong"]) == (
        ck.CKR_PIN_INCORRECT, 0, 0, ck.CKR_PIN_INCORRECT), r
    assert (r["so_wrong"], r["so"], r["init_pin"], r["back"], r["restore"]) == (ck.CKR_PIN_INCORRECT, 0, 0, 0, 0), r
    assert r["auto"] in (0, ck.CKR_USER_ALREADY_LOGGED_IN), r
    lib_text = read_text(lib_log)
    server_text = net.server.log_text()[before:]
    assert "C_Login" in lib_text and "LOGI" in server_text  # the logs are the verbose ones
    for name, secret in s.items():
        for text, where in ((lib_text, "library log"), (server_text, "server log"),
                            (read_text(net.server.stderr_path), "server stderr")):
            for form in (secret, secret.encode().hex(), secret.encode().hex().upper()):
                assert form not in text, f"{name} PIN ({form}) in the {where}"


def test_passwords_are_stored_as_slow_salted_hashes(net):
    db = sqlite3.connect(f"file:{os.path.join(net.state, 'vhsm.db')}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT name, password_hash FROM identities").fetchall()
    finally:
        db.close()
    by_name = dict(rows)
    assert {"Admin1", "crypto1", "b1", "logger1", "victim1", "logger1-so"} <= set(by_name)
    salts = set()
    for name, stored in rows:
        scheme, n, r, p, salt, digest = stored.split("$")
        assert scheme == "scrypt" and int(n) >= 2 ** 14 and int(r) >= 8, (name, stored[:30])
        assert len(bytes.fromhex(salt)) >= 16 and len(bytes.fromhex(digest)) >= 32
        salts.add(salt)
    assert len(salts) == len(rows)  # a fresh salt each: crypto1, b1 and victim1 share a password
    assert by_name["crypto1"].split("$")[5] != by_name["b1"].split("$")[5]
    raw_db = open(os.path.join(net.state, "vhsm.db"), "rb").read()
    for secret in (PIN, net.secrets["so"], net.secrets["user"]):
        assert secret.encode() not in raw_db
    # and it is slow: one check takes measurable work
    from vhsm.passwords import verify_password
    t0 = time.perf_counter()
    assert verify_password(PIN, by_name["crypto1"])
    assert time.perf_counter() - t0 > 0.005


def _group_or_other(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode) & 0o077


def test_state_directory_and_logs_are_owner_only(net, tmp_path):
    bad = []
    for root, dirs, files in os.walk(net.state):
        for name in dirs + files:
            p = os.path.join(root, name)
            if _group_or_other(p):
                bad.append(f"{p}: {oct(stat.S_IMODE(os.stat(p).st_mode))}")
    assert _group_or_other(net.state) == 0
    for log in (net.server.log,):
        if _group_or_other(log):
            bad.append(f"{log}: {oct(stat.S_IMODE(os.stat(log).st_mode))}")
    assert not bad, bad
    # a library log in a folder that did not exist yet
    lib_log = str(tmp_path / "new-dir" / "fx.log")
    cfg = write_net_config(str(tmp_path / "perm.cfg"), hsm_block(net.server.address, ca=[net.ident.ca],
                                                                 cert=net.ident.cert, key=net.ident.key),
                           log_file=lib_log, log_mode="INFO")
    run_child(cfg, """
        import ctypes
        dll = ctypes.CDLL(LIB)
        out(init=dll.C_Initialize(None), fin=dll.C_Finalize(None))
    """)
    assert os.path.exists(lib_log)
    assert _group_or_other(lib_log) == 0 and _group_or_other(os.path.dirname(lib_log)) == 0


def test_an_edited_audit_row_is_named_by_audit_verify(tmp_path):
    state = str(tmp_path / "state")
    make_state(state)
    from vhsm.device import VirtualHSM
    dev = VirtualHSM(state)
    try:
        for n in range(4):
            dev.store.append_audit({"identity": "crypto1", "role": "App", "command": "LOGI", "result": "refused",
                                    "text": f"wrong PIN ({n + 1} of 10)"})
    finally:
        dev.close()
    ok = vhsm(state, "audit", "verify", check=False)
    assert ok.returncode == 0 and "intact" in ok.stdout
    db = sqlite3.connect(os.path.join(state, "vhsm.db"))
    try:
        seq = db.execute("SELECT seq FROM audit WHERE text = 'wrong PIN (3 of 10)'").fetchone()[0]
        db.execute("UPDATE audit SET text = 'login ok' WHERE seq = ?", (seq,))
        db.commit()
    finally:
        db.close()
    bad = vhsm(state, "audit", "verify", check=False)
    assert bad.returncode == 1 and f"audit row {seq}" in bad.stdout + bad.stderr, bad


# ------------------------------------------------------------------ keys in process

def _b(i: int) -> bytes:
    return i.to_bytes((i.bit_length() + 7) // 8, "big")


def _dh_group14() -> tuple[bytes, bytes]:
    p = int("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
            "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
            "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
            "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
            "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
            "15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)
    return _b(p), b"\x02"


def _generate_every_type(raw, h) -> dict[str, tuple[int, list[bytes]]]:
    """Token keys of every type the device generates, extractable and not sensitive, so their
    clear values can be read back: name -> (handle, secret parts)."""
    clear = {ck.CKA_TOKEN: True, ck.CKA_SENSITIVE: False, ck.CKA_EXTRACTABLE: True}
    out: dict[str, tuple[int, list[bytes]]] = {}
    for name, mech, length in (("AES", ck.CKM_AES_KEY_GEN, 32), ("DES3", ck.CKM_DES3_KEY_GEN, None),
                               ("generic/HMAC", ck.CKM_GENERIC_SECRET_KEY_GEN, 48)):
        rv, k = raw.generate_key(h, mech, {**clear, **({ck.CKA_VALUE_LEN: length} if length else {})})
        assert rv == 0, (name, hex(rv))
        out[name] = (k, [raw.attr(h, k, ck.CKA_VALUE)])
    rv, pub, priv = raw.generate_pair(h, ck.CKM_RSA_PKCS_KEY_PAIR_GEN, {ck.CKA_MODULUS_BITS: 2048,
                                                                        ck.CKA_TOKEN: True}, dict(clear))
    assert rv == 0, hex(rv)
    out["RSA"] = (priv, [raw.attr(h, priv, a) for a in (ck.CKA_PRIVATE_EXPONENT, ck.CKA_PRIME_1, ck.CKA_PRIME_2,
                                                        ck.CKA_EXPONENT_1, ck.CKA_EXPONENT_2, ck.CKA_COEFFICIENT)])
    for name, mech, params in (("EC P-256", ck.CKM_EC_KEY_PAIR_GEN, P256),
                               ("Ed25519", ck.CKM_EC_EDWARDS_KEY_PAIR_GEN, ED25519)):
        rv, pub, priv = raw.generate_pair(h, mech, {ck.CKA_EC_PARAMS: params, ck.CKA_TOKEN: True}, dict(clear))
        assert rv == 0, (name, hex(rv))
        out[name] = (priv, [raw.attr(h, priv, ck.CKA_VALUE)])
    pn = dsa.generate_parameters(2048).parameter_numbers()
    rv, pub, priv = raw.generate_pair(h, ck.CKM_DSA_KEY_PAIR_GEN, {ck.CKA_PRIME: _b(pn.p), ck.CKA_SUBPRIME: _b(pn.q),
                                                                   ck.CKA_BASE: _b(pn.g), ck.CKA_TOKEN: True},
                                      dict(clear))
    assert rv == 0, hex(rv)
    out["DSA"] = (priv, [raw.attr(h, priv, ck.CKA_VALUE)])
    p, g = _dh_group14()
    rv, pub, priv = raw.generate_pair(h, ck.CKM_DH_PKCS_KEY_PAIR_GEN, {ck.CKA_PRIME: p, ck.CKA_BASE: g,
                                                                       ck.CKA_TOKEN: True}, dict(clear))
    assert rv == 0, hex(rv)
    out["DH"] = (priv, [raw.attr(h, priv, ck.CKA_VALUE)])
    for name, (_, parts) in out.items():
        assert parts and all(part and len(part) >= 16 for part in parts if name != "DES3"), (name, parts)
    return out


def _files(root: str, since: float | None = None, limit: int = 20 * 1024 * 1024) -> dict[str, bytes]:
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode) or st.st_size > limit or (since and st.st_mtime < since):
                    continue
                with open(path, "rb") as f:
                    found[path] = f.read()
            except OSError:
                continue
    return found


def test_no_generated_key_in_clear_on_disk(raw, h, env):
    started = time.time() - 1
    keys = _generate_every_type(raw, h)
    # a sensitive, never-extractable key of each secret type too: its value never leaves, so
    # the check is that the key works after a reload from disk (it was stored, wrapped)
    rv, sealed = raw.generate_key(h, ck.CKM_AES_KEY_GEN, {ck.CKA_VALUE_LEN: 32, ck.CKA_TOKEN: True})
    assert rv == 0
    files = _files(env.state)
    assert any(p.endswith("vhsm.db") for p in files)
    tmp = _files(tempfile.gettempdir(), since=started)
    tmp = {p: d for p, d in tmp.items() if not p.startswith(os.path.dirname(env.state))}
    leaks = []
    for name, (_, parts) in keys.items():
        for part in parts:
            needles = {"raw": part, "hex": part.hex().encode(), "HEX": part.hex().upper().encode(),
                       "base64": base64.b64encode(part)[:24]}
            for path, data in list(files.items()) + list(tmp.items()):
                for form, needle in needles.items():
                    if needle in data:
                        leaks.append(f"{name} ({form}) in {path}")
    assert not leaks, leaks
    for obj in [k for k, _ in keys.values()] + [sealed]:
        raw.destroy(h, obj)


def test_sensitive_values_are_never_returned(raw, h):
    sens = {ck.CKA_SENSITIVE: True}
    rv, aes = raw.generate_key(h, ck.CKM_AES_KEY_GEN, {ck.CKA_VALUE_LEN: 16, **sens})
    rv2, pub, priv = raw.generate_pair(h, ck.CKM_RSA_PKCS_KEY_PAIR_GEN, {ck.CKA_MODULUS_BITS: 2048}, dict(sens))
    rv3, epub, epriv = raw.generate_pair(h, ck.CKM_EC_KEY_PAIR_GEN, {ck.CKA_EC_PARAMS: P256}, dict(sens))
    rv4, unx = raw.generate_key(h, ck.CKM_AES_KEY_GEN, {ck.CKA_VALUE_LEN: 16, ck.CKA_SENSITIVE: False,
                                                          ck.CKA_EXTRACTABLE: False})
    assert (rv, rv2, rv3, rv4) == (0, 0, 0, 0)
    cases = [(aes, ck.CKA_VALUE), (epriv, ck.CKA_VALUE)] + [
        (priv, a) for a in (ck.CKA_PRIVATE_EXPONENT, ck.CKA_PRIME_1, ck.CKA_PRIME_2, ck.CKA_EXPONENT_1,
                            ck.CKA_EXPONENT_2, ck.CKA_COEFFICIENT)]
    for obj, attr in cases:
        for size in (None, 4096):  # a length query and a real buffer
            rv, got = raw.get_attrs(h, obj, [(attr, size), (ck.CKA_LABEL, 64)])
            assert rv == ck.CKR_ATTRIBUTE_SENSITIVE, (hex(attr), hex(rv))
            assert got[0][0] == CK_UNAVAILABLE_INFORMATION, (hex(attr), got[0])
    # not sensitive but not extractable: C_GetAttributeValue reveals no attribute of an object
    # that is "sensitive or unextractable", and C_WrapKey refuses it
    rv, got = raw.get_attrs(h, unx, [(ck.CKA_VALUE, 64)])
    assert rv == ck.CKR_ATTRIBUTE_SENSITIVE and got[0][0] == CK_UNAVAILABLE_INFORMATION, (hex(rv), got)
    kek = raw.aes(h, 32, {ck.CKA_WRAP: True, ck.CKA_UNWRAP: True, ck.CKA_DECRYPT: False, ck.CKA_SENSITIVE: True})
    for obj in (unx,):
        assert raw.wrap(h, ck.CKM_AES_KEY_WRAP_PAD, kek, obj)[0] == ck.CKR_KEY_UNEXTRACTABLE
    # one way, for private keys too (secret keys: test_object_semantics.py)
    assert raw.set_attrs(h, priv, {ck.CKA_SENSITIVE: False}) == ck.CKR_ATTRIBUTE_READ_ONLY
    assert raw.set_attrs(h, raw.generate_pair(h, ck.CKM_EC_KEY_PAIR_GEN, {ck.CKA_EC_PARAMS: P256},
                                              {ck.CKA_EXTRACTABLE: False})[2],
                         {ck.CKA_EXTRACTABLE: True}) == ck.CKR_ATTRIBUTE_READ_ONLY
    for obj, attrs in ((aes, {ck.CKA_SENSITIVE: False}), (unx, {ck.CKA_EXTRACTABLE: True}),
                       (priv, {ck.CKA_SENSITIVE: False})):
        assert raw.copy(h, obj, attrs)[0] in (ck.CKR_ATTRIBUTE_READ_ONLY, ck.CKR_TEMPLATE_INCONSISTENT), attrs


# ------------------------------------------------------------------ the attacks, by name

AES = {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: ck.CKK_AES}


def _target(raw, h) -> int:
    """The key every attack wants: sensitive, generated in the device."""
    return raw.aes(h, 32, {ck.CKA_SENSITIVE: True, ck.CKA_EXTRACTABLE: True})


def _value_of(raw, h, key: int) -> bytes | None:
    return raw.attr(h, key, ck.CKA_VALUE)


def test_attack_clulow_wrap_then_decrypt(raw, h):
    """Clulow 2003: wrap the sensitive key under a key that may also decrypt, then decrypt
    the wrapped blob to read the key."""
    target = _target(raw, h)
    both = raw.aes(h, 32, {ck.CKA_WRAP: True, ck.CKA_DECRYPT: True, ck.CKA_SENSITIVE: True})
    rv, blob = raw.wrap(h, ck.CKM_AES_CBC_PAD, both, target, bytes(16))
    assert rv == ck.CKR_KEY_NOT_WRAPPABLE
    rv, blob = raw.wrap(h, ck.CKM_AES_KEY_WRAP_PAD, both, target)
    assert rv == ck.CKR_KEY_NOT_WRAPPABLE
    # the two-step variant: a clean wrapping key gains CKA_DECRYPT after wrapping
    kek = raw.aes(h, 32, {ck.CKA_WRAP: True, ck.CKA_DECRYPT: False, ck.CKA_SENSITIVE: True})
    assert raw.wrap(h, ck.CKM_AES_KEY_WRAP_PAD, kek, target)[0] == 0
    assert raw.set_attrs(h, kek, {ck.CKA_DECRYPT: True}) != 0
    rv, twin = raw.copy(h, kek, {ck.CKA_DECRYPT: True})
    assert rv != 0


def test_attack_encrypt_then_unwrap_known_key(raw, h):
    """Tookan: encrypt a value you chose, unwrap the ciphertext as a key (its value is now
    known to you), then wrap the sensitive key under it and decrypt offline."""
    from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding
    target = _target(raw, h)
    k = raw.aes(h, 32, {ck.CKA_ENCRYPT: True, ck.CKA_UNWRAP: True, ck.CKA_SENSITIVE: True})
    chosen = os.urandom(32)
    # the blob can be made by wrapping a key of known value under k, which is the same thing
    known = raw.aes_value(h, chosen)
    rv, blob = raw.wrap(h, ck.CKM_AES_KEY_WRAP_PAD, k, known)
    assert rv == 0
    rv, injected = raw.unwrap(h, ck.CKM_AES_KEY_WRAP_PAD, k, blob, {**AES, ck.CKA_WRAP: True,
                                                                     ck.CKA_DECRYPT: False})
    assert rv == 0
    rv, stolen = raw.wrap(h, ck.CKM_AES_KEY_WRAP_PAD, injected, target)
    assert rv == ck.CKR_KEY_NOT_WRAPPABLE
    assert stolen == b"" or aes_key_unwrap_with_padding(chosen, stolen) is None


def test_attack_sensitive_key_via_derive(raw, h):
    """Derive from the sensitive key a key that is not sensitive (concatenation with nothing
    or with known data, encryption of known data) and read the derived value."""
    target = raw.aes(h, 32, {ck.CKA_SENSITIVE: True, ck.CKA_DERIVE: True})
    weak = {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: ck.CKK_GENERIC_SECRET,
            ck.CKA_SENSITIVE: False, ck.CKA_EXTRACTABLE: True}
    tried = 0
    for mech, param in ((ck.CKM_CONCATENATE_BASE_AND_DATA, b"\x00"), (ck.CKM_CONCATENATE_DATA_AND_BASE, b"\x00"),
                        (ck.CKM_XOR_BASE_AND_DATA, bytes(32)), (ck.CKM_EXTRACT_KEY_FROM_KEY, bytes(8))):
        out = ctypes_derive(raw, h, mech, target, param, {**weak, ck.CKA_VALUE_LEN: 32})
        if out[0] == ck.CKR_MECHANISM_INVALID:
            continue
        tried += 1
        rv, derived = out
        if rv == 0:
            assert raw.bool_attr(h, derived, ck.CKA_SENSITIVE) is True, ck.name(mech, "CKM_")
            assert _value_of(raw, h, derived) is None
    assert tried >= 2


def ctypes_derive(raw, h, mech: int, base: int, data: bytes, template: dict) -> tuple[int, int]:
    """C_DeriveKey with a CK_KEY_DERIVATION_STRING_DATA parameter (data, length), or a raw
    bit index for CKM_EXTRACT_KEY_FROM_KEY."""
    import ctypes
    from integration_fixtures import CK_ULONG
    from p11raw import Template

    class StringData(ctypes.Structure):
        _fields_ = [("pData", ctypes.c_char_p), ("ulLen", CK_ULONG)]
    keep = ctypes.create_string_buffer(data, len(data))
    if mech == ck.CKM_EXTRACT_KEY_FROM_KEY:
        param = CK_ULONG(0)
    else:
        param = StringData(ctypes.cast(keep, ctypes.c_char_p), len(data))
    m = raw.mechanism(mech, bytes(param))
    t = Template(template)
    out = CK_ULONG()
    rv = raw.dll.C_DeriveKey(CK_ULONG(h), ctypes.byref(m), CK_ULONG(base), t.array, CK_ULONG(t.count),
                             ctypes.byref(out))
    return rv, out.value


def test_attack_wrap_with_a_key_you_imported(raw, h):
    """Import a wrapping key whose value you know (C_CreateObject), wrap the sensitive key
    under it, unwrap offline."""
    target = _target(raw, h)
    rv, mine = raw.create(h, {**AES, ck.CKA_VALUE: os.urandom(32), ck.CKA_WRAP: True, ck.CKA_SENSITIVE: True,
                              ck.CKA_DECRYPT: False})
    assert rv == 0
    assert raw.wrap(h, ck.CKM_AES_KEY_WRAP_PAD, mine, target)[0] == ck.CKR_KEY_NOT_WRAPPABLE
    assert raw.wrap(h, ck.CKM_AES_KEY_WRAP, mine, target)[0] == ck.CKR_KEY_NOT_WRAPPABLE
    # nor a copy of it that claims another origin
    rv, copy = raw.copy(h, mine, {ck.CKA_LABEL: "laundered"})
    assert rv == 0 and raw.wrap(h, ck.CKM_AES_KEY_WRAP_PAD, copy, target)[0] == ck.CKR_KEY_NOT_WRAPPABLE


def test_attack_reimport_with_conflicting_attributes(raw, h):
    """Clulow's re-import: wrap a key once, unwrap the blob twice, once as a wrapping key and
    once as a decryption key (or as a non-sensitive key), then wrap with one twin and decrypt
    with the other."""
    target = _target(raw, h)
    kek = raw.aes(h, 32, {ck.CKA_WRAP: True, ck.CKA_UNWRAP: True, ck.CKA_DECRYPT: False, ck.CKA_SENSITIVE: True})
    k2 = raw.aes(h, 32, {ck.CKA_WRAP: True, ck.CKA_SENSITIVE: True, ck.CKA_DECRYPT: False})
    rv, blob = raw.wrap(h, ck.CKM_AES_KEY_WRAP_PAD, kek, k2)
    assert rv == 0
    # unwrapped into the clear: refused
    assert raw.unwrap(h, ck.CKM_AES_KEY_WRAP_PAD, kek, blob, {**AES, ck.CKA_SENSITIVE: False})[0] == \
        ck.CKR_TEMPLATE_INCONSISTENT
    rv1, wrap_twin = raw.unwrap(h, ck.CKM_AES_KEY_WRAP_PAD, kek, blob, {**AES, ck.CKA_WRAP: True,
                                                                         ck.CKA_DECRYPT: False})
    rv2, dec_twin = raw.unwrap(h, ck.CKM_AES_KEY_WRAP_PAD, kek, blob, {**AES, ck.CKA_DECRYPT: True,
                                                                        ck.CKA_WRAP: False})
    if rv1 == 0:
        # a twin that came in through unwrap never wraps sensitive keys
        assert raw.wrap(h, ck.CKM_AES_KEY_WRAP_PAD, wrap_twin, target)[0] == ck.CKR_KEY_NOT_WRAPPABLE
        assert raw.wrap(h, ck.CKM_AES_CBC_PAD, wrap_twin, target, bytes(16))[0] == ck.CKR_KEY_NOT_WRAPPABLE
    if rv2 == 0:
        rv, _ = raw.wrap(h, ck.CKM_AES_CBC_PAD, dec_twin, target, bytes(16))
        assert rv != 0
    # and the original wrapping key's own blob of the target cannot be decrypted by the twin
    rv, tblob = raw.wrap(h, ck.CKM_AES_KEY_WRAP_PAD, k2, target)
    if rv == 0 and rv2 == 0:
        assert raw.init("Decrypt", h, ck.CKM_AES_KEY_WRAP_PAD, dec_twin) != 0 or \
            raw.output_call("C_Decrypt", h, tblob, 64)[0] != 0


def test_attack_asymmetric_wrap_with_a_known_public_key(raw, h):
    """Import an RSA public key whose private half you hold, wrap the sensitive key under it,
    decrypt the blob with your private key."""
    target = _target(raw, h)
    mine = rsa.generate_private_key(65537, 2048)
    n = mine.public_key().public_numbers()
    rv, pub = raw.create(h, {ck.CKA_CLASS: ck.CKO_PUBLIC_KEY, ck.CKA_KEY_TYPE: ck.CKK_RSA, ck.CKA_MODULUS: _b(n.n),
                             ck.CKA_PUBLIC_EXPONENT: _b(n.e), ck.CKA_WRAP: True, ck.CKA_ENCRYPT: True})
    assert rv == 0
    for mech in (ck.CKM_RSA_PKCS, ck.CKM_RSA_PKCS_OAEP):
        rv, blob = raw.wrap(h, mech, pub, target)
        assert rv != 0, ck.name(mech, "CKM_")
    # encrypting is not wrapping: C_Encrypt cannot take a key handle, so the target stays inside
    assert raw.init("Encrypt", h, ck.CKM_RSA_PKCS, pub) == 0
    rv, _, ct = raw.output_call("C_Encrypt", h, b"only data", 256)
    assert rv == 0 and mine.decrypt(ct, PKCS1v15()) == b"only data"


def test_attack_copy_to_clear_attributes(raw, h):
    """C_CopyObject of the sensitive key with CKA_SENSITIVE false or CKA_EXTRACTABLE true,
    or a copy that gains CKA_WRAP and CKA_DECRYPT together."""
    target = raw.aes(h, 32, {ck.CKA_SENSITIVE: True, ck.CKA_EXTRACTABLE: False})
    for change in ({ck.CKA_SENSITIVE: False}, {ck.CKA_EXTRACTABLE: True}):
        rv, copy = raw.copy(h, target, change)
        assert rv != 0, change
    rv, copy = raw.copy(h, target, {ck.CKA_LABEL: "copy"})
    assert rv == 0 and _value_of(raw, h, copy) is None
    assert raw.wrap(h, ck.CKM_AES_KEY_WRAP_PAD, raw.aes(h, 32, {ck.CKA_WRAP: True}), copy)[0] == \
        ck.CKR_KEY_UNEXTRACTABLE
