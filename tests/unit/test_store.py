import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from vhsm.store import KeyRecord, SlotsFull, SQLiteStore, Store, StoreError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CKA_CLASS, CKA_LABEL, CKA_KEY_TYPE, CKA_ID = 0x0, 0x3, 0x100, 0x102


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "state" / "vhsm.db"))
    yield s
    s.close()


def builder(owner="app1", label="k", key_id=b"\x01", cls=4, key_type=0x1F):
    def build(slot):
        attrs = {CKA_CLASS: cls, CKA_LABEL: label, CKA_ID: key_id, CKA_KEY_TYPE: key_type,
                 0x1: True, 0x600: [1, 2]}
        return KeyRecord(slot=slot, owner=owner, attrs=attrs, wrapped=b"W%d" % slot)
    return build


def test_is_a_store(store):
    assert isinstance(store, Store)


def test_file_modes(tmp_path):
    path = tmp_path / "newdir" / "vhsm.db"
    s = SQLiteStore(str(path))
    s.set_meta("serial", "123")
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    for name in os.listdir(path.parent):  # db, -wal and -shm
        assert stat.S_IMODE(os.stat(path.parent / name).st_mode) == 0o600, name
    s.close()
    assert sorted(os.listdir(path.parent)) == ["vhsm.db", "vhsm.db.gen"]  # no leftover temp files


def test_meta(store):
    assert store.get_meta("serial") is None
    store.set_meta("serial", "FX12345")
    store.set_meta("ftk_kcv", "849F")
    assert store.get_meta("serial") == "FX12345"
    store.set_meta("serial", "FX2")
    assert store.get_meta("serial") == "FX2"
    store.set_meta("serial", None)
    assert store.get_meta("serial") is None


def test_reopen_keeps_data(tmp_path):
    path = str(tmp_path / "vhsm.db")
    s = SQLiteStore(path)
    s.set_meta("a", "1")
    rec = s.insert_key("app1", [(0, 9)], builder())
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.get_meta("a")
    s = SQLiteStore(path)
    assert s.get_meta("a") == "1"
    assert s.get_key(rec.slot) == rec
    s.close()


# --- keys -------------------------------------------------------------------

def test_key_roundtrip(store):
    rec = store.insert_key("app1", [(0, 999)], builder(label="aes1", key_id=b"\x07"))
    assert rec.slot == 0
    got = store.get_key(0)
    assert got == rec
    assert got.attrs[0x1] is True and got.attrs[0x600] == [1, 2]
    assert store.get_key(1) is None


def test_lowest_free_and_gap_reuse(store):
    slots = [store.insert_key("app1", [(10, 20)], builder()).slot for _ in range(5)]
    assert slots == [10, 11, 12, 13, 14]
    assert store.delete_key(12) and store.delete_key(10)
    assert not store.delete_key(12)
    assert store.insert_key("app1", [(10, 20)], builder()).slot == 10
    assert store.insert_key("app1", [(10, 20)], builder()).slot == 12
    assert store.insert_key("app1", [(10, 20)], builder()).slot == 15
    # a slot freed below a cached position is found again
    store.delete_key(11)
    assert store.insert_key("app1", [(10, 20)], builder()).slot == 11
    # a different range overlapping the same slots sees them as used
    assert store.insert_key("app1", [(0, 30)], builder()).slot == 0
    assert store.insert_key("app1", [(0, 30)], builder()).slot == 1
    assert store.insert_key("app1", [(5, 30)], builder()).slot == 5


def test_multiple_ranges_in_order(store):
    ranges = [(100, 101), (5, 6)]
    got = [store.insert_key("app1", ranges, builder()).slot for _ in range(4)]
    assert got == [100, 101, 5, 6]
    with pytest.raises(SlotsFull) as err:
        store.insert_key("app1", ranges, builder())
    assert err.value.ranges == ranges
    assert "(100,101)" in str(err.value) and "(5,6)" in str(err.value)
    store.delete_key(101)
    assert store.insert_key("app1", ranges, builder()).slot == 101


def test_slots_full_message(store):
    for _ in range(3):
        store.insert_key("app1", [(0, 2)], builder())
    with pytest.raises(SlotsFull, match=r"key slot range \(0,2\) is full"):
        store.insert_key("app1", [(0, 2)], builder())
    with pytest.raises(SlotsFull):
        store.insert_key("app1", [], builder())
    with pytest.raises(ValueError):
        store.insert_key("app1", [(5, 4)], builder())


def test_delete_keys_in_reopens_slots(store):
    for _ in range(3):
        store.insert_key("a", [(0, 9)], builder(owner="a"))
    store.insert_key("b", [(0, 9)], builder(owner="b"))
    assert store.delete_keys_in("a") == 3
    assert store.count_keys() == 1
    assert store.insert_key("a", [(0, 9)], builder(owner="a")).slot == 0


def test_build_failure_rolls_back(store):
    def bad(slot):
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        store.insert_key("app1", [(0, 9)], bad)
    with pytest.raises(ValueError):
        store.insert_key("app1", [(0, 9)], lambda slot: KeyRecord(slot + 1, "app1", {}, None))
    with pytest.raises(ValueError):
        store.insert_key("app1", [(0, 9)], builder(owner="other"))
    assert store.count_keys() == 0
    assert store.insert_key("app1", [(0, 9)], builder()).slot == 0


def test_large_table_allocation_is_fast(store):
    conn = sqlite3.connect(store.path)
    with conn:
        conn.executemany(
            "INSERT INTO keys (slot, owner, attrs, version) VALUES (?, 'app1', ?, 0)",
            ((i, b"\x01\x00\x00\x00\x00") for i in range(50000)))
    conn.close()
    start = time.perf_counter()
    slots = [store.insert_key("app1", [(0, 99999)], builder()).slot for _ in range(200)]
    assert slots == list(range(50000, 50200))
    assert time.perf_counter() - start < 5


def test_update_versions(store):
    rec = store.insert_key("app1", [(0, 9)], builder(label="old"))
    rec.attrs[CKA_LABEL] = "new"
    up = store.update_key(rec, expected_version=rec.version)
    assert up.version > rec.version
    assert store.get_key(rec.slot) == up
    assert store.find_keys("app1", label="new") == [up]
    assert store.find_keys("app1", label="old") == []
    with pytest.raises(StoreError, match="concurrent update"):
        store.update_key(rec, expected_version=rec.version)
    up2 = store.update_key(up)  # no check requested
    assert up2.version > up.version
    with pytest.raises(StoreError):
        store.update_key(KeyRecord(77, "app1", {}, None))


def test_versions_never_repeat_for_a_reused_slot(store):
    a = store.insert_key("app1", [(0, 0)], builder())
    store.delete_key(0)
    b = store.insert_key("app1", [(0, 0)], builder())
    assert (a.slot, a.version) != (b.slot, b.version)


def test_find_keys(store):
    store.insert_key("app1", [(0, 99)], builder(label="aes", key_id=b"\x01", cls=4, key_type=0x1F))
    store.insert_key("app1", [(0, 99)], builder(label="pub", key_id=b"\x02", cls=2, key_type=0))
    store.insert_key("app1", [(0, 99)], builder(label="priv", key_id=b"\x02", cls=3, key_type=0))
    store.insert_key("app2", [(100, 199)], builder(owner="app2", label="aes", key_id=b"\x01"))
    slots = lambda recs: [r.slot for r in recs]  # noqa: E731
    assert slots(store.find_keys("app1", label="aes")) == [0]
    assert slots(store.find_keys(None, label="aes")) == [0, 100]
    assert slots(store.find_keys("app1", key_id=b"\x02")) == [1, 2]
    assert slots(store.find_keys("app1", cls=3, key_id=b"\x02")) == [2]
    assert slots(store.find_keys("app1", key_type=0)) == [1, 2]
    assert slots(store.find_keys("app2")) == [100]
    assert slots(store.find_keys("app1", label="AES")) == []
    assert slots(store.list_keys()) == [0, 1, 2, 100]
    assert slots(store.list_keys("app1")) == [0, 1, 2]
    assert store.count_keys() == 4 and store.count_keys("app2") == 1


def test_key_without_secret_or_index_attrs(store):
    rec = store.insert_key("app1", [(0, 9)], lambda s: KeyRecord(s, "app1", {0x3: b"bytes"}, None))
    assert store.get_key(rec.slot).wrapped is None
    assert store.find_keys("app1", cls=4) == []


def test_threads_allocate_distinct_slots(store):
    got, errors = [], []

    def work():
        try:
            for _ in range(20):
                got.append(store.insert_key("app1", [(0, 999)], builder()).slot)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(got) == list(range(100))


WORKER = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, sys.argv[1])
    from vhsm.store import KeyRecord, SQLiteStore
    path, go, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
    while not os.path.exists(go):
        time.sleep(0.001)
    store = SQLiteStore(path)
    slots = [store.insert_key("app1", [(0, 999)],
                              lambda s: KeyRecord(s, "app1", {3: "k%d" % s}, b"w")).slot
             for _ in range(count)]
    store.close()
    print(json.dumps(slots))
""")


def _run_workers(tmp_path, path, nproc, count):
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, ROOT, path, str(go), str(count)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(nproc)]
    time.sleep(0.3)
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_two_processes_allocate_distinct_slots(tmp_path):
    path = str(tmp_path / "vhsm.db")
    SQLiteStore(path).close()
    a, b = _run_workers(tmp_path, path, 2, 50)
    assert len(a) == len(b) == 50
    assert sorted(a + b) == list(range(100))
    s = SQLiteStore(path)
    assert s.count_keys() == 100
    s.close()


def test_processes_create_database_at_once(tmp_path):
    path = str(tmp_path / "fresh" / "vhsm.db")
    results = _run_workers(tmp_path, path, 4, 5)
    assert sorted(sum(results, [])) == list(range(20))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_gets_own_connection(store):
    store.set_meta("parent", "1")
    parent_conn = store._local.conn
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            store.set_meta("child", "2")
            if store._local.conn is not parent_conn and store.get_meta("parent") == "1":
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get_meta("child") == "2"
    assert store._local.conn is parent_conn


# --- identities and roles ---------------------------------------------------

def test_identities_crud(store):
    alice = {"name": "alice", "role": "Administrator", "password_hash": "scrypt$x",
             "flags": {"must_change": True}, "failed_logins": 0}
    store.put_identity(alice)
    store.put_identity({"name": "Alice", "role": "App", "password_hash": None})
    assert store.get_identity("alice") == alice
    assert store.get_identity("ALICE") is None
    assert store.get_identity("Alice")["flags"] == {}
    store.put_identity(dict(alice, failed_logins=3))
    assert store.get_identity("alice")["failed_logins"] == 3
    assert [i["name"] for i in store.list_identities()] == ["Alice", "alice"]
    assert store.delete_identity("alice")
    assert not store.delete_identity("alice")
    assert store.get_identity("alice") is None
    with pytest.raises(ValueError):
        store.put_identity({"name": "", "role": "x"})
    with pytest.raises(ValueError):
        store.put_identity({"name": "x", "role": "x", "colour": "red"})


def test_roles_crud(store):
    role = {"name": "App1", "kind": "application", "perms": ["Keys:All"],
            "key_ranges": [(0, 999), (2000, 2999)], "commands": ["GPGS", "ECHO"],
            "settings": {"login_required": 1}}
    store.put_role(role)
    store.put_role({"name": "Admin", "kind": "admin"})
    assert store.get_role("App1") == role
    assert store.get_role("app1") is None
    assert store.get_role("Admin") == {"name": "Admin", "kind": "admin", "perms": [],
                                       "key_ranges": [], "commands": [], "settings": {}}
    assert [r["name"] for r in store.list_roles()] == ["Admin", "App1"]
    store.put_role(dict(role, commands=["ECHO"]))
    assert store.get_role("App1")["commands"] == ["ECHO"]
    assert store.delete_role("App1") and not store.delete_role("App1")
    with pytest.raises(ValueError):
        store.put_role({"name": "x", "kind": "superuser"})
    with pytest.raises(ValueError):
        store.put_role({"name": "x", "kind": "admin", "key_ranges": [(9, 1)]})


# --- audit ------------------------------------------------------------------

def _fill_audit(store, n=5):
    for i in range(n):
        store.append_audit({"identity": "alice", "role": "Admin", "command": "GPGS",
                            "result": "Y" if i % 2 else "N", "text": f"entry {i}"})


def test_audit_chain_verifies(store):
    assert store.verify_audit()[0]
    _fill_audit(store)
    rows = store.audit_rows()
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["prev_hash"] == "0" * 64
    assert all(rows[i]["prev_hash"] == rows[i - 1]["hash"] for i in range(1, 5))
    assert rows[2]["text"] == "entry 2" and rows[2]["time"]
    ok, msg = store.verify_audit()
    assert ok, msg
    with pytest.raises(ValueError):
        store.append_audit({"colour": "red"})


def _tamper(store, sql):
    conn = sqlite3.connect(store.path)
    with conn:
        conn.execute(sql)
    conn.close()


def test_audit_detects_edited_row(store):
    _fill_audit(store)
    _tamper(store, "UPDATE audit SET result = 'Y' WHERE seq = 3")
    ok, msg = store.verify_audit()
    assert not ok and "row 3" in msg


def test_audit_detects_deleted_row(store):
    _fill_audit(store)
    _tamper(store, "DELETE FROM audit WHERE seq = 2")
    ok, msg = store.verify_audit()
    assert not ok and "row 3" in msg and "2" in msg


def test_audit_detects_deleted_renumbered_row(store):
    _fill_audit(store)
    _tamper(store, "DELETE FROM audit WHERE seq = 2")
    _tamper(store, "UPDATE audit SET seq = seq - 1 WHERE seq > 2")
    ok, msg = store.verify_audit()
    assert not ok and "row 2" in msg


def test_audit_detects_removed_tail(store):
    _fill_audit(store)
    _tamper(store, "DELETE FROM audit WHERE seq = 5")
    ok, msg = store.verify_audit()
    assert not ok and "5" in msg


# --- corrupt files and errors -----------------------------------------------

def test_garbage_file_rejected(tmp_path):
    path = tmp_path / "vhsm.db"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(StoreError, match="vhsm.db"):
        SQLiteStore(str(path))


def test_empty_file_rejected(tmp_path):
    path = tmp_path / "vhsm.db"
    path.write_bytes(b"")
    with pytest.raises(StoreError, match="vhsm.db"):
        SQLiteStore(str(path))


def test_truncated_database_rejected(tmp_path):
    path = tmp_path / "vhsm.db"
    s = SQLiteStore(str(path))
    for i in range(300):
        s.insert_key("app1", [(0, 9999)], builder(label="x" * 200))
    s.close()
    assert not os.path.exists(str(path) + "-wal")  # all checkpointed into the file
    size = path.stat().st_size
    for cut in (size // 2, size - 4096, 50):
        damaged = tmp_path / f"cut{cut}.db"
        damaged.write_bytes(path.read_bytes()[:cut])
        with pytest.raises(StoreError, match=f"cut{cut}.db"):
            SQLiteStore(str(damaged))


def test_foreign_sqlite_database_rejected(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="other.db"):
        SQLiteStore(str(path))


def test_locked_database_times_out_with_store_error(tmp_path):
    path = str(tmp_path / "vhsm.db")
    s = SQLiteStore(path, busy_timeout=0.2)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="locked"):
            s.set_meta("x", "1")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    s.set_meta("x", "1")
    s.close()


def test_disk_full_maps_to_store_error(store):
    conn = store._conn()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(StoreError, match="disk full"):
        for _ in range(1000):
            store.insert_key("app1", [(0, 99999)], builder(label="x" * 1000))
    conn.execute("PRAGMA max_page_count=1073741823")
    store.set_meta("still", "works")


def test_generation_moves_with_every_write_from_any_store(tmp_path):
    a = SQLiteStore(str(tmp_path / "vhsm.db"))
    b = SQLiteStore(str(tmp_path / "vhsm.db"))
    g0 = a.generation()
    b.set_meta("x", "1")
    assert a.generation() != g0
    g1 = a.generation()
    a.get_meta("x")
    assert a.generation() == g1  # reads do not move it
    a.close()
    b.close()


# --- the integrity check of a large key table runs beside the first commands ----------------

def _filled(path: str, n: int) -> None:
    s = SQLiteStore(path)
    for start in range(0, n, 500):
        s.insert_keys("app1", [(0, 99999)], [builder(label=f"k{i}") for i in range(start, start + 500)])
    s.close()


def test_large_store_is_checked_in_the_background(tmp_path, monkeypatch):
    import vhsm.store as store_mod
    monkeypatch.setattr(store_mod, "QUICK_CHECK_INLINE", 0)  # every store counts as large
    path = str(tmp_path / "vhsm.db")
    _filled(path, 2000)
    s = SQLiteStore(path)  # sound: the check finds nothing and the store keeps working
    time.sleep(0.5)
    assert s.count_keys() == 2000
    s.close()
    with open(path, "r+b") as f:  # damage a page in the middle of the key table's b-tree
        page = int.from_bytes(open(path, "rb").read(18)[16:18], "big")
        f.seek(page * (os.path.getsize(path) // page // 2))
        f.write(b"\xff" * 64)
    try:
        s = SQLiteStore(path)
    except StoreError as e:  # found before the open returned: as good
        assert "corrupt" in str(e) or "malformed" in str(e), e
        return
    deadline = time.monotonic() + 10
    while True:
        try:
            s.count_keys()
        except StoreError as e:
            assert "corrupt" in str(e) or "malformed" in str(e), e
            break
        assert time.monotonic() < deadline, "the damage was never reported"
        time.sleep(0.05)
    with pytest.raises(StoreError, match="corrupt"):
        s.get_meta("serial")  # and every later use is refused
    s.close()
