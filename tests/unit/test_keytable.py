"""The key table: keys stored wrapped under the FTK, bound to slot/owner/attributes,
the unwrapped-key cache, and session objects."""
from __future__ import annotations

import os
import sqlite3

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fxpkcs11 import ck
from vhsm import attrcodec
from vhsm.device import VirtualHSM
from vhsm.excrypt import Command, Phase, Reply, Tag
from vhsm.majorkeys import generate_ftk
from vhsm.objects import SESSION_BASE
from vhsm.passwords import hash_password

PIN = "safest"
ALL = ["ECHO", "GPKL", "GPGS", "GPKM", "GPKS", "GPKR", "GPKD", "GPSE", "GPSD"]


# ------------------------------------------------------------------ helpers

def run(conn, code: str, **fields) -> Reply:
    return conn.execute(Command(code, {getattr(Tag, k): v for k, v in fields.items()}))


def make_device(path: str) -> VirtualHSM:
    dev = VirtualHSM(path)
    dev.load_ftk(generate_ftk())
    for name, rng in (("App", (0, 99)), ("Other", (100, 199))):
        dev.store.put_role({"name": name, "kind": "application", "perms": ["Keys"], "key_ranges": [rng],
                            "commands": ALL, "settings": {}})
        dev.store.put_identity({"name": name.lower() + "1", "role": name, "password_hash": hash_password(PIN),
                                "flags": {}, "failed_logins": 0})
    return dev


def login(dev: VirtualHSM, identity: str = "app1"):
    conn = dev.connect()
    r = run(conn, "LOGI", USER=identity, PASSWORD=PIN)
    assert r.ok, r.error_text
    return conn


def import_aes(conn, value: bytes, *, label: str = "k", token: bool = True, session: int = 1,
               extra: dict | None = None) -> int:
    t = {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: ck.CKK_AES, ck.CKA_VALUE: value,
         ck.CKA_TOKEN: token, ck.CKA_LABEL: label}
    t.update(extra or {})
    r = run(conn, "GPKL", TEMPLATE=t, READ_WRITE=True, SESSION=session)
    assert r.ok, r.error_text
    return r.fields[Tag.OBJECT]


def encrypt(conn, ref: int, data: bytes = bytes(16)) -> Reply:
    r = run(conn, "GPSE", OBJECT=ref, MECHANISM=ck.CKM_AES_ECB, SESSION=1)
    if not r.ok:
        return r
    return run(conn, "GPSE", CONTEXT=r.fields[Tag.CONTEXT], PHASE=Phase.FINAL, DATA=data)


def aes_ecb(key: bytes, data: bytes = bytes(16)) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def get_attr(conn, ref: int, t: int) -> tuple[int, object]:
    r = run(conn, "GPKS", OBJECT=ref, ATTR_TYPES=[t])
    assert r.ok, r.error_text
    return r.fields[Tag.ATTR_VALUES][0]


def db_path(dev_or_dir) -> str:
    d = dev_or_dir.state_dir if isinstance(dev_or_dir, VirtualHSM) else dev_or_dir
    return os.path.join(d, "vhsm.db")


def raw_row(path: str, slot: int) -> dict:
    con = sqlite3.connect(path)
    try:
        con.row_factory = sqlite3.Row
        row = con.execute("SELECT * FROM keys WHERE slot = ?", (slot,)).fetchone()
        return dict(row) if row else {}
    finally:
        con.close()


def tamper(path: str, where_slot: int, **columns) -> None:
    con = sqlite3.connect(path)
    try:
        sets = ", ".join(f"{c} = ?" for c in columns)
        with con:
            assert con.execute(f"UPDATE keys SET {sets} WHERE slot = ?", (*columns.values(), where_slot)).rowcount == 1
    finally:
        con.close()


@pytest.fixture
def dev(tmp_path):
    d = make_device(str(tmp_path / "state"))
    yield d
    d.close()


KEY = bytes.fromhex("8f3a5c7e19d24b60a1f0c3e5d7b9a2c4e6f8091b2d3c4e5f60718293a4b5c6d7")


# ------------------------------------------------------------------ stored wrapped

def _files(state_dir: str):
    for root, _, files in os.walk(state_dir):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                yield name, f.read()


def test_token_key_is_stored_wrapped(tmp_path):
    dev = make_device(str(tmp_path / "state"))
    ref = import_aes(login(dev), KEY)
    dev.close()  # checkpoints the WAL into the database file
    row = raw_row(db_path(dev), ref)
    assert row["wrapped"] and len(row["wrapped"]) > len(KEY)
    assert KEY not in bytes(row["wrapped"])
    assert KEY not in bytes(row["attrs"])
    seen = []
    for name, data in _files(dev.state_dir):  # database, WAL, secure memory
        seen.append(name)
        assert KEY not in data, name
        assert KEY.hex().encode() not in data.lower(), name
    assert "vhsm.db" in seen


def test_token_key_not_in_any_file_while_device_runs(dev):
    conn = login(dev)
    ref = import_aes(conn, KEY)
    assert encrypt(conn, ref).ok
    for name, data in _files(dev.state_dir):
        assert KEY not in data, name


def test_stored_key_works_after_restart(tmp_path, dev):
    conn = login(dev)
    ref = import_aes(conn, KEY)
    dev2 = VirtualHSM(dev.state_dir)
    try:
        r = encrypt(login(dev2), ref)
        assert r.ok and r.fields[Tag.RESULT] == aes_ecb(KEY)
    finally:
        dev2.close()


# ------------------------------------------------------------------ binding

def _fresh_use(state_dir: str, ref: int) -> tuple[Reply, Reply]:
    """Use the key on a device instance with a cold cache (as after a restart)."""
    dev = VirtualHSM(state_dir)
    try:
        conn = login(dev)
        return encrypt(conn, ref), run(conn, "GPKS", OBJECT=ref, ATTR_TYPES=[ck.CKA_VALUE])
    finally:
        dev.close()


def _assert_does_not_unwrap(ref: int, replies: tuple[Reply, Reply]) -> None:
    for r in replies:
        assert not r.ok, "a tampered key must never give a result"
        assert r.reason == ck.CKR_DEVICE_ERROR
        assert "does not unwrap" in r.error_text and str(ref) in r.error_text


def test_editing_attrs_in_sqlite_breaks_unwrap(dev):
    conn = login(dev)
    ref = import_aes(conn, KEY, extra={ck.CKA_ENCRYPT: False})
    assert encrypt(conn, ref).reason == ck.CKR_KEY_FUNCTION_NOT_PERMITTED
    row = raw_row(db_path(dev), ref)
    attrs = attrcodec.decode_attrs(bytes(row["attrs"]))
    attrs[ck.CKA_ENCRYPT] = True  # grant itself a usage behind the device's back
    tamper(db_path(dev), ref, attrs=attrcodec.encode_attrs(attrs))
    _assert_does_not_unwrap(ref, _fresh_use(dev.state_dir, ref))


def test_editing_owner_in_sqlite_breaks_unwrap(dev):
    """A key re-owned on disk is no longer the partition's; and for a role that reaches every
    slot it does not unwrap, since the owner is bound into the wrapping."""
    conn = login(dev)
    ref = import_aes(conn, KEY)
    tamper(db_path(dev), ref, owner="Other")
    for r in _fresh_use(dev.state_dir, ref):
        assert not r.ok and r.reason in (ck.CKR_KEY_HANDLE_INVALID, ck.CKR_OBJECT_HANDLE_INVALID)
    role = dev.store.get_role("App")
    dev.store.put_role({**role, "perms": role["perms"] + ["Keys:All Slots"]})
    _assert_does_not_unwrap(ref, _fresh_use(dev.state_dir, ref))


def test_moving_a_key_to_another_slot_breaks_unwrap(dev):
    conn = login(dev)
    ref = import_aes(conn, KEY)
    tamper(db_path(dev), ref, slot=ref + 5)
    _assert_does_not_unwrap(ref + 5, _fresh_use(dev.state_dir, ref + 5))


def test_tampered_key_on_a_running_device_with_cold_cache(dev):
    conn = login(dev)
    ref = import_aes(conn, KEY)
    role = dev.store.get_role("App")
    dev.store.put_role({**role, "perms": role["perms"] + ["Keys:All Slots"]})
    tamper(db_path(dev), ref, owner="Other")
    r = encrypt(conn, ref)
    assert not r.ok and r.reason == ck.CKR_DEVICE_ERROR and "does not unwrap" in r.error_text
    assert run(conn, "ECHO").ok


def test_tampered_key_on_a_running_device_with_warm_cache(dev):
    """The cache must not lend material to a row edited behind the device's back."""
    conn = login(dev)
    ref = import_aes(conn, KEY, extra={ck.CKA_ENCRYPT: False})
    assert get_attr(conn, ref, ck.CKA_VALUE) == (0, KEY)  # material now cached
    assert any(k[0] == ref for k in dev.cache._items)
    row = raw_row(db_path(dev), ref)
    attrs = attrcodec.decode_attrs(bytes(row["attrs"]))
    attrs[ck.CKA_ENCRYPT] = True
    tamper(db_path(dev), ref, attrs=attrcodec.encode_attrs(attrs))  # same version
    r = encrypt(conn, ref)
    assert not r.ok and r.reason == ck.CKR_DEVICE_ERROR and "does not unwrap" in r.error_text
    r = run(conn, "GPKS", OBJECT=ref, ATTR_TYPES=[ck.CKA_VALUE])
    assert not r.ok and r.reason == ck.CKR_DEVICE_ERROR


def test_key_under_a_different_ftk_does_not_unwrap(dev):
    conn = login(dev)
    ref = import_aes(conn, KEY)
    dev.load_ftk(generate_ftk())
    r = encrypt(conn, ref)
    assert not r.ok and r.reason == ck.CKR_DEVICE_ERROR and "does not unwrap" in r.error_text


# ------------------------------------------------------------------ attribute changes

def test_label_change_rewraps_and_key_still_works(dev):
    conn = login(dev)
    ref = import_aes(conn, KEY, label="before")
    before = raw_row(db_path(dev), ref)
    assert encrypt(conn, ref).fields[Tag.RESULT] == aes_ecb(KEY)

    r = run(conn, "GPKS", OBJECT=ref, TEMPLATE={ck.CKA_LABEL: "after"}, READ_WRITE=True, SESSION=1)
    assert r.ok, r.error_text
    after = raw_row(db_path(dev), ref)
    assert after["wrapped"] != before["wrapped"]
    assert after["version"] != before["version"]
    assert after["label"] == "after"
    assert get_attr(conn, ref, ck.CKA_LABEL) == (0, "after")
    r = encrypt(conn, ref)
    assert r.ok and r.fields[Tag.RESULT] == aes_ecb(KEY)
    # and with a cold cache: the new wrapping binds the new attributes
    r, value = _fresh_use(dev.state_dir, ref)
    assert r.ok and r.fields[Tag.RESULT] == aes_ecb(KEY)
    assert value.ok and value.fields[Tag.ATTR_VALUES] == [(0, KEY)]


def test_label_change_needs_read_write_session(dev):
    conn = login(dev)
    ref = import_aes(conn, KEY, label="x")
    r = run(conn, "GPKS", OBJECT=ref, TEMPLATE={ck.CKA_LABEL: "y"}, SESSION=1)
    assert not r.ok and r.reason == ck.CKR_SESSION_READ_ONLY
    assert get_attr(conn, ref, ck.CKA_LABEL) == (0, "x")


def test_cache_is_keyed_by_version_new_attributes_apply(dev):
    user, admin = login(dev), login(dev)
    ref = import_aes(user, KEY)
    assert encrypt(user, ref).ok  # material now cached
    assert any(k[0] == ref for k in dev.cache._items)
    r = run(admin, "GPKS", OBJECT=ref, TEMPLATE={ck.CKA_ENCRYPT: False}, READ_WRITE=True, SESSION=1)
    assert r.ok, r.error_text
    r = encrypt(user, ref)
    assert not r.ok and r.reason == ck.CKR_KEY_FUNCTION_NOT_PERMITTED


def test_cache_is_keyed_by_version_new_material_applies(dev):
    user, other = login(dev), login(dev)
    ref = import_aes(user, KEY)
    assert encrypt(user, ref).fields[Tag.RESULT] == aes_ecb(KEY)
    old_version = dev.store.get_key(ref).version
    # another connection replaces the key; the new one takes the same (lowest free) slot
    assert run(other, "GPKD", OBJECT=ref, READ_WRITE=True, SESSION=1).ok
    new_key = bytes(reversed(KEY))
    assert import_aes(other, new_key) == ref
    new_version = dev.store.get_key(ref).version
    assert new_version != old_version
    r = encrypt(user, ref)
    assert r.ok and r.fields[Tag.RESULT] == aes_ecb(new_key)
    assert (ref, new_version) in dev.cache._items  # a new entry; the old one is never served again


def test_cache_follows_changes_made_by_another_instance(dev):
    user = login(dev)
    ref = import_aes(user, KEY)
    assert encrypt(user, ref).fields[Tag.RESULT] == aes_ecb(KEY)
    other = VirtualHSM(dev.state_dir)
    try:
        conn = login(other)
        assert run(conn, "GPKD", OBJECT=ref, READ_WRITE=True, SESSION=1).ok
        assert import_aes(conn, b"\x42" * 32) == ref
    finally:
        other.close()
    r = encrypt(user, ref)
    assert r.ok and r.fields[Tag.RESULT] == aes_ecb(b"\x42" * 32)


# ------------------------------------------------------------------ session objects

def test_session_objects_are_not_stored(dev):
    conn = login(dev)
    ref = import_aes(conn, KEY, token=False)
    assert ref >= SESSION_BASE
    assert dev.store.count_keys() == 0
    assert encrypt(conn, ref).fields[Tag.RESULT] == aes_ecb(KEY)


def test_sesc_drops_only_that_sessions_objects(dev):
    conn = login(dev)
    one = import_aes(conn, b"\x01" * 16, label="s1", token=False, session=1)
    two = import_aes(conn, b"\x02" * 16, label="s2", token=False, session=2)
    tok = import_aes(conn, b"\x03" * 16, label="tok", session=1)
    found = run(conn, "GPKM", TEMPLATE={ck.CKA_CLASS: ck.CKO_SECRET_KEY}).fields[Tag.OBJECTS]
    assert set(found) == {one, two, tok}

    assert run(conn, "SESC", SESSION=1).ok
    r = run(conn, "GPKS", OBJECT=one, ATTR_TYPES=[ck.CKA_LABEL])
    assert not r.ok and r.reason == ck.CKR_OBJECT_HANDLE_INVALID
    assert get_attr(conn, two, ck.CKA_LABEL) == (0, "s2")
    assert get_attr(conn, tok, ck.CKA_LABEL) == (0, "tok")  # token objects outlive sessions
    found = run(conn, "GPKM", TEMPLATE={ck.CKA_CLASS: ck.CKO_SECRET_KEY}).fields[Tag.OBJECTS]
    assert set(found) == {two, tok}
    assert encrypt(conn, two).ok


def test_sesc_drops_that_sessions_operation_contexts(dev):
    conn = login(dev)
    ref = import_aes(conn, KEY)
    r1 = run(conn, "GPSE", OBJECT=ref, MECHANISM=ck.CKM_AES_ECB, SESSION=1)
    r2 = run(conn, "GPSE", OBJECT=ref, MECHANISM=ck.CKM_AES_ECB, SESSION=2)
    assert run(conn, "SESC", SESSION=1).ok
    r = run(conn, "GPSE", CONTEXT=r1.fields[Tag.CONTEXT], PHASE=Phase.FINAL, DATA=bytes(16))
    assert not r.ok and r.reason == ck.CKR_OPERATION_NOT_INITIALIZED
    r = run(conn, "GPSE", CONTEXT=r2.fields[Tag.CONTEXT], PHASE=Phase.FINAL, DATA=bytes(16))
    assert r.ok and r.fields[Tag.RESULT] == aes_ecb(KEY)


def test_other_connection_cannot_see_session_objects(dev):
    mine, theirs = login(dev), login(dev)
    ref = import_aes(mine, KEY, label="mine", token=False)
    assert run(theirs, "GPKM", TEMPLATE={}).fields[Tag.OBJECTS] == []
    assert run(theirs, "GPKM", TEMPLATE={ck.CKA_LABEL: "mine"}).fields[Tag.OBJECTS] == []
    r = run(theirs, "GPKS", OBJECT=ref, ATTR_TYPES=[ck.CKA_LABEL])
    assert not r.ok and r.reason == ck.CKR_OBJECT_HANDLE_INVALID
    r = encrypt(theirs, ref)
    assert not r.ok and r.reason == ck.CKR_KEY_HANDLE_INVALID
    r = run(theirs, "GPKD", OBJECT=ref, READ_WRITE=True, SESSION=1)
    assert not r.ok and r.reason == ck.CKR_OBJECT_HANDLE_INVALID
    # each connection resolves references in its own session objects only
    theirs_ref = import_aes(theirs, b"\x05" * 16, label="theirs", token=False)
    assert get_attr(theirs, theirs_ref, ck.CKA_LABEL) == (0, "theirs")
    assert run(mine, "GPKM", TEMPLATE={}).fields[Tag.OBJECTS] == [ref]
    assert get_attr(mine, ref, ck.CKA_LABEL) == (0, "mine")
    assert run(mine, "GPKM", TEMPLATE={ck.CKA_LABEL: "theirs"}).fields[Tag.OBJECTS] == []
