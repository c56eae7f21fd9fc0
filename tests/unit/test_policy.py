"""Role policy in the dispatcher: command whitelists, key slot ranges, FTK, errors."""
from __future__ import annotations

import pytest

from fxpkcs11 import ck
from vhsm import dispatcher
from vhsm.admin import AdminSession
from vhsm.commands.catalog import BY_CODE, whitelistable
from vhsm.device import VirtualHSM
from vhsm.excrypt import Command, Phase, Reply, Tag
from vhsm.factory import ALL_SLOTS, TRANSACTION_PROCESSING
from vhsm.majorkeys import generate_ftk
from vhsm.passwords import hash_password

PIN = "safest"
SESSION_CONTROL = ("LOGI", "LOGO", "SESO", "SESC")


# ------------------------------------------------------------------ helpers

def add_partition(dev: VirtualHSM, name: str, ranges, commands, *, perms=("Keys",), identity=None) -> str:
    dev.store.put_role({"name": name, "kind": "application", "perms": list(perms),
                        "key_ranges": [tuple(r) for r in ranges], "commands": list(commands), "settings": {}})
    ident = identity or name.lower() + "1"
    dev.store.put_identity({"name": ident, "role": name, "password_hash": hash_password(PIN),
                            "flags": {}, "failed_logins": 0})
    return ident


def run(conn, code: str, **fields) -> Reply:
    return conn.execute(Command(code, {getattr(Tag, k): v for k, v in fields.items()}))


def login(dev: VirtualHSM, identity: str):
    conn = dev.connect()
    r = run(conn, "LOGI", USER=identity, PASSWORD=PIN)
    assert r.ok, r.error_text
    return conn


def aes_template(value: bytes = bytes(range(16)), label: str = "k", extra: dict | None = None) -> dict:
    t = {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: ck.CKK_AES, ck.CKA_VALUE: value,
         ck.CKA_TOKEN: True, ck.CKA_LABEL: label}
    t.update(extra or {})
    return t


def import_key(conn, value: bytes = bytes(range(16)), label: str = "k") -> int:
    r = run(conn, "GPKL", TEMPLATE=aes_template(value, label), READ_WRITE=True, SESSION=1)
    assert r.ok, r.error_text
    return r.fields[Tag.OBJECT]


def encrypt(conn, ref: int, data: bytes = bytes(16)) -> Reply:
    r = run(conn, "GPSE", OBJECT=ref, MECHANISM=ck.CKM_AES_ECB, SESSION=1)
    if not r.ok:
        return r
    return run(conn, "GPSE", CONTEXT=r.fields[Tag.CONTEXT], PHASE=Phase.FINAL, DATA=data)


@pytest.fixture
def dev(tmp_path):
    d = VirtualHSM(str(tmp_path / "state"))
    d.load_ftk(generate_ftk())
    yield d
    d.close()


KEY_COMMANDS = ["ECHO", "GPKL", "GPKM", "GPKS", "GPKD", "GPSE"]


# ------------------------------------------------------------------ whitelist

def test_command_outside_whitelist_is_refused_before_the_handler(dev, monkeypatch):
    calls = []
    real = dispatcher.HANDLERS["RAND"]
    monkeypatch.setitem(dispatcher.HANDLERS, "RAND", lambda c, r, f: calls.append(1) or real(c, r, f))
    ident = add_partition(dev, "NoRand", [(0, 9)], ["ECHO", "HASH"])
    conn = login(dev, ident)
    r = run(conn, "RAND", LENGTH=8)
    assert not r.ok
    assert r.reason == ck.CKR_FUNCTION_FAILED == 0x6
    assert "RAND" in r.error_text and "NoRand" in r.error_text
    assert "--add-perm Excrypt:RAND" in r.error_text
    assert calls == []  # refused before the handler ran
    assert run(conn, "ECHO").ok  # a whitelisted command still runs


def test_whitelisted_command_reaches_the_handler(dev, monkeypatch):
    calls = []
    real = dispatcher.HANDLERS["RAND"]
    monkeypatch.setitem(dispatcher.HANDLERS, "RAND", lambda c, r, f: calls.append(1) or real(c, r, f))
    ident = add_partition(dev, "WithRand", [(0, 9)], ["RAND"])
    r = run(login(dev, ident), "RAND", LENGTH=8)
    assert r.ok and len(r.fields[Tag.DATA]) == 8
    assert calls == [1]


def test_role_without_gpkd_cannot_delete_an_existing_key(dev, monkeypatch):
    ident = add_partition(dev, "NoDelete", [(0, 9)], ["GPKL", "GPKM", "GPKS"])
    conn = login(dev, ident)
    ref = import_key(conn)
    called = []
    monkeypatch.setitem(dispatcher.HANDLERS, "GPKD", lambda c, r, f: called.append(1) or {})
    r = run(conn, "GPKD", OBJECT=ref, READ_WRITE=True, SESSION=1)
    assert not r.ok and r.reason == ck.CKR_FUNCTION_FAILED
    assert "GPKD" in r.error_text and "NoDelete" in r.error_text and "--add-perm Excrypt:GPKD" in r.error_text
    assert called == []
    assert dev.store.get_key(ref) is not None
    found = run(conn, "GPKM", TEMPLATE={ck.CKA_LABEL: "k"})
    assert found.ok and found.fields[Tag.OBJECTS] == [ref]


def test_transaction_processing_whitelist_applies_before_login(dev):
    tp = dev.store.get_role(TRANSACTION_PROCESSING)
    dev.store.put_role({**tp, "commands": ["ECHO", "HASH"]})
    conn = dev.connect()
    assert run(conn, "ECHO").ok
    r = run(conn, "RAND", LENGTH=4)
    assert not r.ok and r.reason == ck.CKR_FUNCTION_FAILED
    assert TRANSACTION_PROCESSING in r.error_text


@pytest.mark.parametrize("code", SESSION_CONTROL)
def test_session_control_is_never_whitelisted_away(dev, code):
    assert BY_CODE[code].session_control and code not in whitelistable()
    ident = add_partition(dev, "Bare", [(0, 9)], [])
    tp = dev.store.get_role(TRANSACTION_PROCESSING)
    dev.store.put_role({**tp, "commands": []})
    conn = dev.connect()
    # As Transaction Processing with an empty whitelist.
    if code == "LOGI":
        r = run(conn, "LOGI", USER=ident, PASSWORD=PIN)
        assert r.ok and r.fields[Tag.ROLE] == "Bare"
        # and as the logged-in role with an empty whitelist
        assert run(conn, "LOGO").ok
        return
    if code == "LOGO":
        assert run(conn, "LOGI", USER=ident, PASSWORD=PIN).ok
        assert run(conn, "LOGO").ok
        assert conn.role_name == TRANSACTION_PROCESSING
        return
    r = run(conn, code, SESSION=1)
    assert r.ok, r.error_text
    assert run(conn, "LOGI", USER=ident, PASSWORD=PIN).ok
    r = run(conn, code, SESSION=1)
    assert r.ok, r.error_text


def test_session_control_still_runs_after_the_role_is_deleted(dev):
    ident = add_partition(dev, "Gone", [(0, 9)], ["ECHO", "GPKL"])
    conn = login(dev, ident)
    r = run(conn, "GPKL", TEMPLATE=aes_template(extra={ck.CKA_TOKEN: False}), SESSION=3)
    assert r.ok, r.error_text
    session_obj = r.fields[Tag.OBJECT]
    dev.store.delete_identity(ident)
    dev.store.delete_role("Gone")
    r = run(conn, "ECHO")
    assert not r.ok and r.reason == ck.CKR_DEVICE_ERROR and "Gone" in r.error_text
    assert run(conn, "SESC", SESSION=3).ok
    assert session_obj not in conn.objects.session_objects
    assert run(conn, "LOGO").ok
    assert conn.role_name == TRANSACTION_PROCESSING
    assert run(conn, "ECHO").ok


# ------------------------------------------------------------------ key slot ranges

def test_new_keys_land_in_the_partition_range_lowest_free_first(dev):
    ident = add_partition(dev, "Small", [(100, 102)], KEY_COMMANDS)
    conn = login(dev, ident)
    refs = [import_key(conn, bytes([i]) * 16, f"k{i}") for i in range(3)]
    assert refs == [100, 101, 102]
    for ref in refs:
        assert dev.store.get_key(ref).owner == "Small"
    # full: CKR_DEVICE_MEMORY naming the range
    r = run(conn, "GPKL", TEMPLATE=aes_template(b"\x09" * 16), READ_WRITE=True, SESSION=1)
    assert not r.ok and r.reason == ck.CKR_DEVICE_MEMORY == 0x31
    assert "(100,102)" in r.error_text
    assert dev.store.count_keys() == 3
    # a freed slot is the lowest free one again
    assert run(conn, "GPKD", OBJECT=101, READ_WRITE=True, SESSION=1).ok
    assert import_key(conn, b"\x07" * 16) == 101


def test_multiple_ranges_fill_in_order(dev):
    ident = add_partition(dev, "Two", [(50, 50), (10, 11)], KEY_COMMANDS)
    conn = login(dev, ident)
    assert [import_key(conn, bytes([i]) * 16) for i in range(3)] == [50, 10, 11]
    r = run(conn, "GPKL", TEMPLATE=aes_template(b"\x05" * 16), READ_WRITE=True, SESSION=1)
    assert r.reason == ck.CKR_DEVICE_MEMORY
    assert "(50,50)" in r.error_text and "(10,11)" in r.error_text


def test_role_without_ranges_cannot_store_token_keys(dev):
    tp = dev.store.get_role(TRANSACTION_PROCESSING)
    dev.store.put_role({**tp, "perms": ["Keys"], "key_ranges": []})
    conn = dev.connect()
    t = aes_template(b"\x01" * 16, extra={ck.CKA_PRIVATE: False})
    r = run(conn, "GPKL", TEMPLATE=t, READ_WRITE=True, SESSION=1)
    assert not r.ok and r.reason == ck.CKR_DEVICE_MEMORY
    assert dev.store.count_keys() == 0


def test_partition_cannot_reach_slots_outside_its_ranges(dev):
    a = add_partition(dev, "PartA", [(0, 9)], KEY_COMMANDS)
    b = add_partition(dev, "PartB", [(10, 19)], KEY_COMMANDS)
    conn_a, conn_b = login(dev, a), login(dev, b)
    ref = import_key(conn_a, b"\x11" * 16, "a-key")
    assert ref == 0
    assert import_key(conn_b, b"\x22" * 16, "b-key") == 10

    # read
    r = run(conn_b, "GPKS", OBJECT=ref, ATTR_TYPES=[ck.CKA_LABEL])
    assert not r.ok and r.reason == ck.CKR_OBJECT_HANDLE_INVALID
    # find: not listed
    r = run(conn_b, "GPKM", TEMPLATE={ck.CKA_CLASS: ck.CKO_SECRET_KEY})
    assert r.ok and r.fields[Tag.OBJECTS] == [10]
    # use
    r = encrypt(conn_b, ref)
    assert not r.ok and r.reason in (ck.CKR_KEY_HANDLE_INVALID, ck.CKR_OBJECT_HANDLE_INVALID)
    # change
    r = run(conn_b, "GPKS", OBJECT=ref, TEMPLATE={ck.CKA_LABEL: "stolen"}, READ_WRITE=True, SESSION=1)
    assert not r.ok and r.reason == ck.CKR_OBJECT_HANDLE_INVALID
    # delete
    r = run(conn_b, "GPKD", OBJECT=ref, READ_WRITE=True, SESSION=1)
    assert not r.ok and r.reason == ck.CKR_OBJECT_HANDLE_INVALID
    rec = dev.store.get_key(ref)
    assert rec is not None and rec.attrs[ck.CKA_LABEL] == "a-key"
    # the owner still can
    assert encrypt(conn_a, ref).ok


def test_all_slots_permission_reaches_every_slot(dev):
    a = add_partition(dev, "PartA", [(0, 9)], KEY_COMMANDS)
    s = add_partition(dev, "Super", [(20, 29)], KEY_COMMANDS, perms=("Keys", ALL_SLOTS))
    conn_a, conn_s = login(dev, a), login(dev, s)
    ref = import_key(conn_a, b"\x11" * 16, "a-key")
    expected = encrypt(conn_a, ref).fields[Tag.RESULT]

    r = run(conn_s, "GPKS", OBJECT=ref, ATTR_TYPES=[ck.CKA_LABEL])
    assert r.ok and r.fields[Tag.ATTR_VALUES] == [(0, "a-key")]
    assert ref in run(conn_s, "GPKM", TEMPLATE={}).fields[Tag.OBJECTS]
    r = encrypt(conn_s, ref)
    assert r.ok and r.fields[Tag.RESULT] == expected
    # its own new keys still go to its own range
    assert import_key(conn_s, b"\x33" * 16) == 20
    assert run(conn_s, "GPKD", OBJECT=ref, READ_WRITE=True, SESSION=1).ok
    assert dev.store.get_key(ref) is None


# ------------------------------------------------------------------ changes from elsewhere

def test_role_change_from_another_instance_applies_on_next_command(dev, tmp_path):
    ident = add_partition(dev, "Live", [(0, 9)], ["ECHO", "RAND"])
    conn = login(dev, ident)
    assert run(conn, "RAND", LENGTH=4).ok

    other = VirtualHSM(dev.state_dir)  # as another process would
    try:
        role = other.store.get_role("Live")
        other.store.put_role({**role, "commands": ["ECHO"]})
        r = run(conn, "RAND", LENGTH=4)
        assert not r.ok and r.reason == ck.CKR_FUNCTION_FAILED and "RAND" in r.error_text
        assert run(conn, "ECHO").ok

        other.store.put_role({**role, "commands": ["ECHO", "RAND"]})
        assert run(conn, "RAND", LENGTH=4).ok
    finally:
        other.close()


def test_role_change_through_admin_session_of_another_instance(dev):
    ident = add_partition(dev, "Live", [(0, 9)], ["ECHO"])
    conn = login(dev, ident)
    assert not run(conn, "RAND", LENGTH=4).ok

    other = VirtualHSM(dev.state_dir)
    try:
        admin = AdminSession(other)
        admin.login("Admin1", "safest")
        admin.login("Admin2", "safest")
        admin.modify_role("Live", add_perms=["Excrypt:RAND"])
    finally:
        other.close()
    assert run(conn, "RAND", LENGTH=4).ok


# ------------------------------------------------------------------ FTK

def test_without_ftk_key_commands_fail_but_info_commands_answer(tmp_path):
    dev = VirtualHSM(str(tmp_path / "noftk"))
    try:
        ident = add_partition(dev, "App", [(0, 9)], whitelistable())
        conn = dev.connect()
        for code in ("ECHO", "HASH", "PRMD"):
            r = run(conn, code)
            assert r.ok, (code, r.error_text)
        assert run(conn, "PRMD").fields[Tag.FTK_KCV] == ""
        assert run(conn, "LOGI", USER=ident, PASSWORD=PIN).ok
        for code, fields in (("GPKM", {"TEMPLATE": {}}),
                             ("GPKL", {"TEMPLATE": aes_template(), "READ_WRITE": True, "SESSION": 1}),
                             ("GPGS", {"MECHANISM": ck.CKM_AES_KEY_GEN,
                                       "TEMPLATE": {ck.CKA_VALUE_LEN: 16, ck.CKA_TOKEN: True},
                                       "READ_WRITE": True, "SESSION": 1}),
                             ("GPKD", {"OBJECT": 0})):
            r = run(conn, code, **fields)
            assert not r.ok and r.reason == ck.CKR_DEVICE_ERROR == 0x30, code
            assert "FTK" in r.error_text
        assert dev.store.count_keys() == 0
        assert run(conn, "ECHO").ok
    finally:
        dev.close()


def test_ftk_loaded_by_another_instance_is_seen_without_restart(tmp_path):
    dev = VirtualHSM(str(tmp_path / "late"))
    try:
        ident = add_partition(dev, "App", [(0, 9)], KEY_COMMANDS)
        conn = login(dev, ident)
        assert run(conn, "GPKM", TEMPLATE={}).reason == ck.CKR_DEVICE_ERROR
        other = VirtualHSM(dev.state_dir)
        try:
            other.load_ftk(generate_ftk())
        finally:
            other.close()
        assert run(conn, "GPKM", TEMPLATE={}).ok
        ref = import_key(conn)
        assert encrypt(conn, ref).ok
    finally:
        dev.close()


# ------------------------------------------------------------------ errors

def test_unknown_command_code(dev):
    conn = dev.connect()
    r = run(conn, "ZZZZ")
    assert not r.ok and r.reason == ck.CKR_FUNCTION_NOT_SUPPORTED
    assert "ZZZZ" in r.error_text
    assert run(conn, "ECHO").ok


def test_handler_exception_becomes_device_error_and_connection_survives(dev, monkeypatch):
    def boom(conn, role, f):
        raise RuntimeError("simulated bug")
    monkeypatch.setitem(dispatcher.HANDLERS, "RAND", boom)
    conn = dev.connect()
    r = run(conn, "RAND", LENGTH=4)
    assert not r.ok and r.reason == ck.CKR_DEVICE_ERROR
    assert "RAND" in r.error_text
    assert "simulated bug" not in r.error_text  # internals stay in the log
    r = run(conn, "ECHO", ECHO_DATA="still here")
    assert r.ok and r.fields[Tag.ECHO_DATA] == "still here"
    monkeypatch.undo()
    assert run(conn, "RAND", LENGTH=4).ok


# ------------------------------------------------------------------ admitted commands are not remembered past a change

def test_whitelist_change_applies_to_the_next_command_of_a_connection(dev):
    ident = add_partition(dev, "Shrinks", [(0, 9)], ["RAND", "ECHO"])
    conn = login(dev, ident)
    assert run(conn, "RAND", LENGTH=8).ok and run(conn, "RAND", LENGTH=8).ok
    dev.store.put_role({**dev.store.get_role("Shrinks"), "commands": ["ECHO"]})
    r = run(conn, "RAND", LENGTH=8)
    assert not r.ok and "RAND" in r.error_text
    assert run(conn, "ECHO").ok


def test_logout_applies_the_transaction_processing_whitelist_at_once(dev):
    tp = dev.store.get_role(TRANSACTION_PROCESSING)
    dev.store.put_role({**tp, "commands": ["ECHO"]})
    conn = login(dev, add_partition(dev, "Full", [(0, 9)], ["RAND", "ECHO"]))
    assert run(conn, "RAND", LENGTH=8).ok
    assert run(conn, "LOGO").ok
    r = run(conn, "RAND", LENGTH=8)
    assert not r.ok and TRANSACTION_PROCESSING in r.error_text


def test_ftk_removal_refuses_the_next_key_command(dev):
    conn = login(dev, add_partition(dev, "Keys", [(0, 9)], KEY_COMMANDS))
    ref = import_key(conn)
    assert encrypt(conn, ref).ok
    dev.load_ftk(None)
    r = encrypt(conn, ref)
    assert not r.ok and r.reason == ck.CKR_DEVICE_ERROR and "FTK" in r.error_text


def test_learn_mode_records_commands_admitted_before_it_began(dev):
    conn = login(dev, add_partition(dev, "Learner", [(0, 9)], ["ECHO"]))
    assert run(conn, "ECHO").ok
    dev.store.put_role({**dev.store.get_role("Learner"), "settings": {"learn": "e1"}})
    assert run(conn, "ECHO").ok and run(conn, "RAND", LENGTH=4).ok
    assert dev.store.get_meta("learned:Learner:e1:ECHO") == "1"
    assert dev.store.get_meta("learned:Learner:e1:RAND") == "1"
