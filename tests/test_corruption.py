"""A damaged state is detected when it opens, or when the damaged key is first used, with
CKR_DEVICE_ERROR and a message naming the file and what is wrong; never silently wrong.

Each case builds a state through the real library (a python-pkcs11 child that creates keys and
is then killed, so the write-ahead log still holds its commits), damages one thing, and opens
it again in a new process.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import time

import pytest

from integration_fixtures import make_env, run_child
from support import ROOT, build_library

VHSM = os.path.join(ROOT, ".venv", "bin", "vhsm")
KEYS = 6

MAKE = f"""
import os
from pkcs11 import KeyType, Mechanism
s = pkcs11.lib(LIB).get_token(token_label="Futurex").open(rw=True, user_pin=PIN)
kcv = {{}}
for i in range({KEYS}):
    k = s.generate_key(KeyType.AES, 256, label=f"k{{i}}", store=True)
    kcv[f"k{{i}}"] = k.encrypt(bytes(16), mechanism=Mechanism.AES_ECB)[:3].hex()
out(kcv=kcv)
if os.environ.get("DIE"):
    os.kill(os.getpid(), 9)  # leave the write-ahead log as a crash does
"""

USE = """
from pkcs11 import Attribute, Mechanism
r = {}
try:
    s = pkcs11.lib(LIB).get_token(token_label="Futurex").open(rw=True, user_pin=PIN)
    kcv = {}
    for o in s.get_objects():
        try:
            kcv[o[Attribute.LABEL]] = o.encrypt(bytes(16), mechanism=Mechanism.AES_ECB)[:3].hex()
        except pkcs11.PKCS11Error as e:
            kcv[o[Attribute.LABEL]] = type(e).__name__
    r["kcv"] = kcv
except pkcs11.PKCS11Error as e:
    r["error"] = type(e).__name__
out(**r)
"""


@pytest.fixture(scope="module", autouse=True)
def _lib():
    build_library()


def made(tmp_path, *, crash: bool = True):
    env = make_env(str(tmp_path / "p11"))
    r = run_child(env.cfg, MAKE, check=False, **({"DIE": "1"} if crash else {}))
    assert len(r.get("kcv", {})) == KEYS, r
    return env, r["kcv"]


def use(env) -> dict:
    return run_child(env.cfg, USE)


def db(env) -> str:
    return os.path.join(env.state, "vhsm.db")


def flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def refused(env, *needles: str) -> str:
    """The state is refused: CKR_DEVICE_ERROR, the log and `vhsm audit verify` say why."""
    r = use(env)
    assert r.get("error") == "DeviceError", r
    log = env.log_text()
    for n in needles:
        assert n in log, f"{n!r} not in the log:\n{log[-3000:]}"
    cli = subprocess.run([VHSM, "--state", env.state, "audit", "verify"], capture_output=True, text=True, timeout=60)
    assert cli.returncode != 0
    for n in needles:
        assert n in cli.stdout + cli.stderr, cli.stdout + cli.stderr
    return log


def wal_frames(env) -> tuple[int, int]:
    size = os.path.getsize(db(env) + "-wal")
    page = int.from_bytes(open(db(env) + "-wal", "rb").read(12)[8:12], "big")
    return (size - 32) // (24 + page), page


# ------------------------------------------------------------------ the database file

def test_truncated_database_is_refused(tmp_path):
    env, _ = made(tmp_path, crash=False)
    os.truncate(db(env), os.path.getsize(db(env)) // 2)
    refused(env, "vhsm.db", "corrupt")


def test_overwritten_database_header_is_refused(tmp_path):
    env, _ = made(tmp_path, crash=False)
    with open(db(env), "r+b") as f:
        f.write(b"\x00garbage garbage")
    refused(env, "vhsm.db", "not an SQLite database")


def test_damaged_schema_version_is_refused(tmp_path):
    env, _ = made(tmp_path, crash=False)
    flip(db(env), 60)  # the header's user_version, where the schema version lives
    refused(env, "vhsm.db", "damaged database header")


# ------------------------------------------------------------------ the write-ahead log

def test_damaged_wal_frame_is_refused_and_stays_refused(tmp_path):
    env, _ = made(tmp_path)
    frames, page = wal_frames(env)
    assert frames > 4
    flip(db(env) + "-wal", 32 + (frames // 2) * (24 + page) + 24 + 100)  # page data of a middle frame
    refused(env, "vhsm.db-wal is damaged at frame", "committed transaction(s) after it cannot be read")
    # opening once checkpointed and deleted the log; the marker keeps the finding
    assert os.path.exists(db(env) + "-wal.damaged")
    refused(env, "state marked damaged", "vhsm.db.damaged")


def test_damaged_wal_header_is_refused(tmp_path):
    env, _ = made(tmp_path)
    flip(db(env) + "-wal", 5)
    refused(env, "vhsm.db-wal is damaged at its header")


def test_torn_wal_tail_is_not_damage(tmp_path):
    """A process killed while appending leaves half a frame: the commits before it are all there."""
    env, kcv = made(tmp_path)
    frames, page = wal_frames(env)
    with open(db(env) + "-wal", "ab") as f:
        f.write(open(db(env) + "-wal", "rb").read()[32:32 + 24 + page // 2])  # half of a frame
    assert use(env)["kcv"] == kcv


# ------------------------------------------------------------------ secure memory and the generation file

@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_ftk_file_is_refused(tmp_path, damage):
    env, _ = made(tmp_path, crash=False)
    ftk = os.path.join(env.state, "secure", "ftk.bin")
    flip(ftk, 30) if damage == "flip" else os.truncate(ftk, 20)
    r = use(env)
    assert r.get("error") == "DeviceError", r
    assert "FTK file" in env.log_text() and "ftk.bin is corrupt" in env.log_text()


def test_damaged_device_key_is_refused(tmp_path):
    env, _ = made(tmp_path, crash=False)
    os.truncate(os.path.join(env.state, "secure", "device.key"), 7)
    r = use(env)
    assert r.get("error") == "DeviceError", r
    assert "device.key is corrupt" in env.log_text()


@pytest.mark.parametrize("damage", [b"", b"garbage!!", b"\xff" * 8])
def test_generation_file_is_only_a_change_counter(tmp_path, damage):
    """vhsm.db.gen only tells processes that the store changed: any content is as good as any
    other, so a damaged one is rebuilt and every key still answers with its own KCV."""
    env, kcv = made(tmp_path, crash=False)
    with open(os.path.join(env.state, "vhsm.db.gen"), "wb") as f:
        f.write(damage)
    assert use(env)["kcv"] == kcv


# ------------------------------------------------------------------ one damaged key

def _tamper(env, slot_column: str, change) -> int:
    with sqlite3.connect(db(env)) as c:
        slot, value = c.execute(f"SELECT slot, {slot_column} FROM keys WHERE label = 'k2'").fetchone()
        c.execute(f"UPDATE keys SET {slot_column} = ? WHERE slot = ?", (change(bytes(value)), slot))
    return slot


def test_flipped_byte_in_a_wrapped_key_is_that_keys_damage(tmp_path):
    env, kcv = made(tmp_path, crash=False)
    slot = _tamper(env, "wrapped", lambda b: b[:20] + bytes([b[20] ^ 1]) + b[21:])
    r = use(env)
    assert r["kcv"] == {**kcv, "k2": "DeviceError"}  # the others still work
    assert f"key in slot {slot} does not unwrap" in env.log_text()


def test_undecodable_key_attributes_are_named(tmp_path):
    env, _ = made(tmp_path, crash=False)
    slot = _tamper(env, "attrs", lambda b: b[:-3])
    r = use(env)
    assert r.get("error") == "DeviceError", r
    assert f"key slot {slot}: stored attributes are corrupt" in env.log_text()


# ------------------------------------------------------------------ the cost of the checks at open

def test_open_checks_are_cheap(tmp_path):
    """quick_check and the WAL scan at open, on a state of 1000 keys with a live WAL."""
    from vhsm.store import SQLiteStore

    env, _ = made(tmp_path, crash=False)
    with SQLiteStore(db(env)) as store:
        rec = store.list_keys()[0]
        for _ in range(1000):
            store.insert_key(rec.owner, [(0, 9999)], lambda slot: type(rec)(slot, rec.owner, rec.attrs, rec.wrapped))
        conn = store._conn()  # keep a reader so the WAL stays as it is
        conn.execute("BEGIN")
        conn.execute("SELECT COUNT(*) FROM keys").fetchone()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            SQLiteStore(db(env)).close()
            times.append(time.perf_counter() - t0)
        conn.execute("COMMIT")
    print(f"store open with checks: {min(times) * 1000:.1f} ms")
    assert min(times) < 0.05, times
