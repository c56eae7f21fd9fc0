"""Persistence of the device state.

``Store`` is the interface every backend implements; ``SQLiteStore`` is the
default backend. Records cross the interface as plain values (dicts and
``KeyRecord``), never as backend rows.
"""

from __future__ import annotations

import contextlib
import mmap
import struct
import dataclasses
import datetime
import errno
import hashlib
import json
import logging
import os
import sqlite3
import threading
import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, runtime_checkable

from . import walcheck
from .attrcodec import decode_attrs, encode_attrs
from .storerows import identity_from_row, role_from_row, verify_audit_chain

CKA_CLASS = 0x0
CKA_LABEL = 0x3
CKA_KEY_TYPE = 0x100
CKA_ID = 0x102

ROLE_KINDS = ("admin", "transaction", "application")
AUDIT_FIELDS = ("time", "identity", "role", "command", "result", "text")
AUDIT_GENESIS = "0" * 64


@dataclass
class KeyRecord:
    slot: int                 # key table slot number (>= 0)
    owner: str                # owning role (application partition) name
    attrs: dict[int, Any]     # PKCS #11 attributes that are not secret
    wrapped: bytes | None     # secret material wrapped under the FTK
    version: int = 0          # changed by every write; see Store.update_key


class SlotsFull(Exception):
    """No free slot in any of the given key slot ranges."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges = list(ranges)
        if not self.ranges:
            msg = "no key slot range is assigned"
        elif len(self.ranges) == 1:
            msg = f"key slot range {_fmt_range(self.ranges[0])} is full"
        else:
            msg = "key slot ranges " + ", ".join(map(_fmt_range, self.ranges)) + " are full"
        super().__init__(msg)


class StoreError(Exception):
    """The database is unusable or an operation on it failed."""


class StoreFull(StoreError):
    """The disk holding the database is full; the write was rolled back."""


def _fmt_range(r: tuple[int, int]) -> str:
    return f"({r[0]},{r[1]})"


@runtime_checkable
class Store(Protocol):
    """Everything the device persists. Implementations are shared by many threads."""

    def get_meta(self, name: str) -> str | None: ...
    def set_meta(self, name: str, value: str | None) -> None: ...
    def list_meta(self, prefix: str) -> dict[str, str]: ...

    def get_identity(self, name: str) -> dict | None: ...
    def put_identity(self, rec: dict) -> None: ...
    def delete_identity(self, name: str) -> bool: ...
    def list_identities(self) -> list[dict]: ...

    def get_role(self, name: str) -> dict | None: ...
    def put_role(self, rec: dict) -> None: ...
    def delete_role(self, name: str) -> bool: ...
    def list_roles(self) -> list[dict]: ...

    def insert_key(self, owner: str, ranges: list[tuple[int, int]],
                   build: Callable[[int], KeyRecord]) -> KeyRecord: ...
    def get_key(self, slot: int) -> KeyRecord | None: ...
    def update_key(self, rec: KeyRecord, expected_version: int | None = None) -> KeyRecord: ...
    def delete_key(self, slot: int) -> bool: ...
    def find_keys(self, owner: str | None, cls: int | None = None, label: str | None = None,
                  key_id: bytes | None = None, key_type: int | None = None) -> list[KeyRecord]: ...
    def list_keys(self, owner: str | None = None) -> list[KeyRecord]: ...
    def count_keys(self, owner: str | None = None) -> int: ...
    def delete_keys_in(self, owner: str) -> int: ...

    def append_audit(self, entry: dict) -> None: ...
    def audit_rows(self) -> list[dict]: ...
    def verify_audit(self) -> tuple[bool, str]: ...

    def close(self) -> None: ...


# --- helpers shared by backends -------------------------------------------------

def index_columns(attrs: dict[int, Any]) -> tuple[int | None, str | None, bytes | None, int | None]:
    """(class, label, id, key_type) as indexed, from typed attribute values."""
    def as_int(v: Any) -> int | None:
        return v if type(v) is int else None
    label = attrs.get(CKA_LABEL)
    key_id = attrs.get(CKA_ID)
    return (as_int(attrs.get(CKA_CLASS)),
            label if isinstance(label, str) else None,
            bytes(key_id) if isinstance(key_id, (bytes, bytearray)) else None,
            as_int(attrs.get(CKA_KEY_TYPE)))


def check_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for r in ranges:
        lo, hi = int(r[0]), int(r[1])
        if lo < 0 or hi < lo:
            raise ValueError(f"bad key slot range {_fmt_range((lo, hi))}")
        out.append((lo, hi))
    return out


def audit_hash(prev_hash: str, seq: int, fields: dict[str, str | None]) -> str:
    """Chain hash: sha256(prev_hash || canonical JSON of the row's content)."""
    body = dict(fields, seq=seq)
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(prev_hash.encode("ascii") + canon.encode("utf-8")).hexdigest()


def normalize_audit_entry(entry: dict) -> dict[str, str | None]:
    unknown = set(entry) - set(AUDIT_FIELDS)
    if unknown:
        raise ValueError(f"unknown audit fields: {', '.join(sorted(unknown))}")
    fields = {f: (None if entry.get(f) is None else str(entry[f])) for f in AUDIT_FIELDS}
    if fields["time"] is None:
        fields["time"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
    return fields


def _identity_row(rec: dict) -> tuple:
    allowed = {"name", "role", "password_hash", "flags", "failed_logins"}
    unknown = set(rec) - allowed
    if unknown:
        raise ValueError(f"unknown identity fields: {', '.join(sorted(unknown))}")
    name = rec.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("identity name must be a non-empty str")
    role = rec.get("role")
    if role is not None and not isinstance(role, str):
        raise ValueError("identity role must be a str")
    pw = rec.get("password_hash")
    if pw is not None and not isinstance(pw, str):
        raise ValueError("password_hash must be a str")
    flags = rec.get("flags") or {}
    if not isinstance(flags, dict):
        raise ValueError("identity flags must be a dict")
    failed = rec.get("failed_logins", 0)
    if type(failed) is not int or failed < 0:
        raise ValueError("failed_logins must be a non-negative int")
    return name, role, pw, json.dumps(flags, sort_keys=True), failed


def _role_row(rec: dict) -> tuple:
    allowed = {"name", "kind", "perms", "key_ranges", "commands", "settings"}
    unknown = set(rec) - allowed
    if unknown:
        raise ValueError(f"unknown role fields: {', '.join(sorted(unknown))}")
    name = rec.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("role name must be a non-empty str")
    kind = rec.get("kind")
    if kind not in ROLE_KINDS:
        raise ValueError(f"role kind must be one of {', '.join(ROLE_KINDS)}")
    ranges = [list(r) for r in check_ranges(rec.get("key_ranges") or [])]
    settings = rec.get("settings") or {}
    if not isinstance(settings, dict):
        raise ValueError("role settings must be a dict")
    return (name, kind, json.dumps(list(rec.get("perms") or [])), json.dumps(ranges),
            json.dumps(list(rec.get("commands") or [])), json.dumps(settings, sort_keys=True))


# --- SQLite ---------------------------------------------------------------------

SCHEMA_VERSION = 1
APPLICATION_ID = 0x56485331  # "VHS1": marks the file as a vhsm store
_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA_V1 = """
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('key_version', 0);
CREATE TABLE identities (
    name          TEXT PRIMARY KEY,
    role          TEXT,
    password_hash TEXT,
    flags         TEXT NOT NULL DEFAULT '{}',
    failed_logins INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE roles (
    name       TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('admin', 'transaction', 'application')),
    perms      TEXT NOT NULL DEFAULT '[]',
    key_ranges TEXT NOT NULL DEFAULT '[]',
    commands   TEXT NOT NULL DEFAULT '[]',
    settings   TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE keys (
    slot     INTEGER PRIMARY KEY CHECK (slot >= 0),
    owner    TEXT NOT NULL,
    cls      INTEGER,
    label    TEXT,
    key_id   BLOB,
    key_type INTEGER,
    attrs    BLOB NOT NULL,
    wrapped  BLOB,
    version  INTEGER NOT NULL
);
CREATE INDEX keys_owner ON keys (owner, cls);
CREATE INDEX keys_label ON keys (label);
CREATE INDEX keys_id ON keys (key_id);
CREATE TABLE slot_hints (
    lo   INTEGER NOT NULL,
    hi   INTEGER NOT NULL,
    next INTEGER NOT NULL,
    PRIMARY KEY (lo, hi)
) WITHOUT ROWID;
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY,
    time      TEXT,
    identity  TEXT,
    role      TEXT,
    command   TEXT,
    result    TEXT,
    text      TEXT,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
"""

# Each entry upgrades from version i to i+1; index 0 builds a new database.
_MIGRATIONS: list[str] = [_SCHEMA_V1]

_ERROR_TEXT = {
    "SQLITE_FULL": "disk full",
    "SQLITE_BUSY": "database is locked (timed out waiting for another writer)",
    "SQLITE_LOCKED": "database table is locked",
    "SQLITE_CORRUPT": "database is corrupt",
    "SQLITE_NOTADB": "file is not a database",
    "SQLITE_READONLY": "database is read-only",
    "SQLITE_CANTOPEN": "cannot open database file",
    "SQLITE_PERM": "permission denied",
    "SQLITE_NOMEM": "out of memory",
}

# Connections inherited across fork must never be used or closed by the child
# (closing could checkpoint or unlink the parent's WAL); keep them referenced
# so garbage collection does not close them either.
_ABANDONED: list[sqlite3.Connection] = []
_LIVE_STORES: "weakref.WeakSet[SQLiteStore]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # a lock held by another parent thread at fork time would never be released
    for store in list(_LIVE_STORES):
        store._conns_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _ForkGate:
    """fork() while another thread is inside SQLite (which runs without the GIL) leaves
    SQLite's process-wide mutexes -- the shared-memory node of a WAL database, the VFS
    lists -- locked for ever in the child, which then hangs opening the same database.
    Every use of SQLite passes this gate; a fork waits until no thread is inside and
    keeps others out until it is done."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active = 0
        self._forking = False
        self._local = threading.local()

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        local = self._local
        depth = getattr(local, "depth", 0)
        if depth == 0:
            with self._cond:
                while self._forking:
                    self._cond.wait()
                self._active += 1
        local.depth = depth + 1
        try:
            yield
        finally:
            local.depth = depth
            if depth == 0:
                with self._cond:
                    self._active -= 1
                    if self._active == 0:
                        self._cond.notify_all()

    def before_fork(self) -> None:
        mine = 1 if getattr(self._local, "depth", 0) else 0  # a fork from inside the gate
        self._cond.acquire()  # held until after the fork
        self._forking = True
        while self._active > mine:
            self._cond.wait()

    def after_fork_in_parent(self) -> None:
        self._forking = False
        self._cond.notify_all()
        self._cond.release()

    def after_fork_in_child(self) -> None:
        depth = getattr(self._local, "depth", 0)
        self.__init__()  # a fresh lock; the other threads are gone
        if depth:  # the forking thread was inside the gate: it still is
            self._active, self._local.depth = 1, depth


_FORK_GATE = _ForkGate()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_FORK_GATE.before_fork, after_in_parent=_FORK_GATE.after_fork_in_parent,
                        after_in_child=_FORK_GATE.after_fork_in_child)


def _quick_check(conn: sqlite3.Connection) -> str | None:
    """What SQLite's structural check finds wrong with the database, None when sound."""
    rows = conn.execute("PRAGMA quick_check").fetchall()
    if rows == [("ok",)]:
        return None
    return "database is corrupt: " + "; ".join(str(r[0]) for r in rows[:3])


def _describe(exc: sqlite3.Error) -> str:
    name = getattr(exc, "sqlite_errorname", "") or ""
    for prefix, text in _ERROR_TEXT.items():
        if name == prefix or name.startswith(prefix + "_"):
            return f"{text} ({exc})"
    if name.startswith("SQLITE_IOERR"):
        return f"I/O error ({exc})"
    return str(exc) or type(exc).__name__


_GEN = struct.Struct("<Q")
# Up to this size the whole database is checked before the open returns (a few ms); a larger
# key table is checked by a thread started at the open, refusing every use once damage shows.
QUICK_CHECK_INLINE = 8 << 20


class SQLiteStore:
    """SQLite backend: WAL mode, one connection per thread, durable commits."""

    def __init__(self, path: str, *, busy_timeout: float = 15.0) -> None:
        path = os.fspath(path)
        if path == ":memory:" or path.startswith("file:"):
            raise ValueError("SQLiteStore needs a file path")
        self.path = os.path.abspath(path)
        self.busy_timeout = float(busy_timeout)
        self._local = threading.local()
        self._conns: list[tuple[int, sqlite3.Connection]] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        self._damage: str | None = None  # what a background integrity check found
        _LIVE_STORES.add(self)
        self._open()
        try:
            self._gen = self._open_generation()
        except OSError as e:
            raise self._fail(f"cannot open the generation counter: {e}") from None

    # -- opening, checking, migrating --------------------------------------------

    def _fail(self, what: str) -> StoreError:
        return StoreError(f"{self.path}: {what}")

    def _open(self) -> None:
        try:
            directory = os.path.dirname(self.path)
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o700, exist_ok=True)
                os.chmod(directory, 0o700)
            if not os.path.exists(self.path):
                self._create()
            walcheck.refuse_if_marked(self.path, self._fail)
            self._check_header()
            self._check_and_migrate()
        except OSError as exc:
            self.close()
            raise self._fail(f"cannot open: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def _check_and_migrate(self) -> None:
        with self._sql():
            conn = self._conn()
            if os.path.getsize(self.path) <= QUICK_CHECK_INLINE:
                problem = _quick_check(conn)
                if problem:
                    raise self._fail(problem)
            else:
                # A large key table is checked beside the first commands instead of before
                # them: the check reads every page (tens of milliseconds per 100,000 keys).
                threading.Thread(target=self._check_in_background, name="vhsm-store-check", daemon=True).start()
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            if app_id != APPLICATION_ID:
                raise self._fail("not a vhsm store (foreign SQLite database)")
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode.lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            self._check_wal(conn)
            self._migrate(conn)

    def _check_wal(self, conn: sqlite3.Connection) -> None:
        """Refuse a WAL whose damage would make SQLite silently skip committed transactions.
        Under the write lock no other process appends to the log or moves its index, so the
        frames SQLite reads (the index's mxFrame) and the file's frames can be compared."""
        conn.execute("BEGIN IMMEDIATE")
        # A second connection asks for the frame count: a checkpoint cannot run inside the
        # transaction that holds the lock. (Never open the -shm file itself: closing any
        # descriptor of it drops this process's POSIX locks on it, SQLite's included.)
        probe = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            frames = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
            try:
                with open(self.path + "-wal", "rb") as fh:
                    data = fh.read()
            except FileNotFoundError:
                return
        finally:
            probe.close()
            conn.execute("ROLLBACK")
        lost = walcheck.lost_commits(data, frames) if frames >= 0 else None
        if lost is None:
            return
        what = "its header" if lost[1] < 0 else f"frame {lost[0]}"
        count = "every transaction in it" if lost[1] < 0 else f"{lost[1]} committed transaction(s) after it"
        msg = f"write-ahead log {self.path}-wal is damaged at {what}: {count} cannot be read"
        # closing the connection would checkpoint what SQLite could read and delete the
        # log: keep the evidence, and refuse every later open until someone looks
        raise self._fail(walcheck.mark_damaged(self.path, msg, data))

    def _create(self) -> None:
        """Build a new database beside ``path`` and link it into place.

        Building aside means an existing file at ``path`` is always a store
        someone finished creating: an empty or half-written file there is
        reported as corrupt instead of silently becoming a fresh device.
        """
        tmp = f"{self.path}.init-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)
        try:
            with _FORK_GATE.inside():
                conn = sqlite3.connect(tmp, isolation_level=None)
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                    self._apply_migrations(conn)
                finally:
                    conn.close()
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process finished first; use its database
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                    raise
                if not os.path.exists(self.path):  # no hard links: best effort
                    os.rename(tmp, self.path)
            dfd = os.open(os.path.dirname(self.path), os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except sqlite3.Error as exc:
            raise self._fail(f"cannot create database: {_describe(exc)}") from exc
        finally:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp + suffix)

    def _check_header(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(100)
        except OSError as exc:
            raise self._fail(f"cannot read database: {exc}") from exc
        if not head:
            raise self._fail("database file is empty (truncated?)")
        if head[:16] != _SQLITE_MAGIC[:len(head[:16])]:
            raise self._fail("not an SQLite database (garbage or overwritten file)")
        if len(head) < 100:
            raise self._fail("database file is truncated")

    @staticmethod
    def _apply_migrations(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # re-read inside the write lock: another process may have migrated
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            for version in range(current, SCHEMA_VERSION):
                for stmt in _split_sql(_MIGRATIONS[version]):
                    conn.execute(stmt)
                conn.execute(f"PRAGMA user_version={version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise self._fail(f"schema version {version} is newer than this software ({SCHEMA_VERSION})")
        if version == 0:
            raise self._fail("not a vhsm store (no schema)")
        if version < 0:
            raise self._fail(f"schema version {version} is impossible (damaged database header)")
        if version < SCHEMA_VERSION:
            self._apply_migrations(conn)

    # -- connections -----------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"{self.path}: store is closed")
        local = self._local
        conn = getattr(local, "conn", None)
        pid = os.getpid()
        if conn is not None and local.pid == pid:
            return conn
        if conn is not None:
            _ABANDONED.append(conn)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout,
                               isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            # FULL: a key is on disk once insert_key returns (NORMAL in WAL
            # mode may lose the last commits on power failure).
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        local.conn, local.pid = conn, pid
        with self._conns_lock:
            self._conns.append((pid, conn))
        return conn

    def _check_in_background(self) -> None:
        try:
            with _FORK_GATE.inside():
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
                try:
                    problem = _quick_check(conn)
                finally:
                    conn.close()
        except sqlite3.Error as exc:
            problem = _describe(exc)  # the check itself hit the damage
        if problem:
            self._damage = problem
            logging.getLogger("vhsm").error("%s: %s; every later use of it is refused", self.path, problem)

    @contextlib.contextmanager
    def _sql(self) -> Iterator[None]:
        """Map sqlite3 errors to StoreError naming the file and the cause."""
        if self._damage:
            raise self._fail(self._damage)
        with _FORK_GATE.inside():
            try:
                yield
            except sqlite3.Error as exc:
                if (getattr(exc, "sqlite_errorname", "") or "").startswith("SQLITE_FULL"):
                    raise StoreFull(f"{self.path}: {_describe(exc)}") from exc
                raise self._fail(_describe(exc)) from exc

    def generation(self) -> int:
        """A counter that every write transaction of every process bumps. Caches of roles,
        identities and settings are keyed by it; reading it costs no query."""
        return _GEN.unpack_from(self._gen)[0]

    def _bump_generation(self) -> None:
        # Called inside the write transaction, so SQLite's write lock serialises bumps.
        _GEN.pack_into(self._gen, 0, (_GEN.unpack_from(self._gen)[0] + 1) & 0xFFFFFFFFFFFFFFFF)

    def _open_generation(self) -> mmap.mmap:
        fd = os.open(self.path + ".gen", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _GEN.size:
                os.ftruncate(fd, _GEN.size)
            return mmap.mmap(fd, _GEN.size)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with BEGIN IMMEDIATE."""
        with self._sql():
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            self._bump_generation()
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            # Again after the commit: a reader that saw the first bump may have read the
            # snapshot before this commit; this one makes it look again.
            self._bump_generation()

    def _query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        with self._sql():
            return self._conn().execute(sql, params).fetchall()

    def release_thread(self) -> None:
        """Close the calling thread's connection (a server's per-client thread ends): kept,
        each finished thread would hold its SQLite handle, two file descriptors and its
        page cache until the process exits."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            return
        local.conn = None
        with _FORK_GATE.inside(), self._conns_lock:
            self._conns = [(p, c) for p, c in self._conns if c is not conn]
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def close(self) -> None:
        """Close this process's connections. No other thread may be using the store."""
        with _FORK_GATE.inside(), self._conns_lock:
            if self._closed:
                return
            self._closed = True
            pid = os.getpid()
            for owner_pid, conn in self._conns:
                if owner_pid == pid:
                    with contextlib.suppress(sqlite3.Error):
                        conn.close()
                else:
                    _ABANDONED.append(conn)
            self._conns.clear()

    def __enter__(self) -> "SQLiteStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # -- meta ------------------------------------------------------------------

    def get_meta(self, name: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def list_meta(self, prefix: str) -> dict[str, str]:
        """Every setting whose name starts with `prefix`."""
        rows = self._query("SELECT name, value FROM meta WHERE substr(name, 1, ?) = ? ORDER BY name",
                           (len(prefix), prefix))
        return dict(rows)

    def set_meta(self, name: str, value: str | None) -> None:
        with self._write() as conn:
            if value is None:
                conn.execute("DELETE FROM meta WHERE name = ?", (name,))
            else:
                conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                             (name, str(value)))

    # -- identities ------------------------------------------------------------

    @staticmethod
    def _identity(row: tuple) -> dict:
        return identity_from_row(row)

    def get_identity(self, name: str) -> dict | None:
        rows = self._query("SELECT name, role, password_hash, flags, failed_logins "
                           "FROM identities WHERE name = ?", (name,))
        return self._identity(rows[0]) if rows else None

    def put_identity(self, rec: dict) -> None:
        row = _identity_row(rec)
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO identities "
                         "(name, role, password_hash, flags, failed_logins) "
                         "VALUES (?, ?, ?, ?, ?)", row)

    def delete_identity(self, name: str) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM identities WHERE name = ?", (name,)).rowcount > 0

    def list_identities(self) -> list[dict]:
        rows = self._query("SELECT name, role, password_hash, flags, failed_logins "
                           "FROM identities ORDER BY name")
        return [self._identity(r) for r in rows]

    # -- roles -----------------------------------------------------------------

    @staticmethod
    def _role(row: tuple) -> dict:
        return role_from_row(row)

    def get_role(self, name: str) -> dict | None:
        rows = self._query("SELECT name, kind, perms, key_ranges, commands, settings "
                           "FROM roles WHERE name = ?", (name,))
        return self._role(rows[0]) if rows else None

    def put_role(self, rec: dict) -> None:
        row = _role_row(rec)
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO roles "
                         "(name, kind, perms, key_ranges, commands, settings) "
                         "VALUES (?, ?, ?, ?, ?, ?)", row)

    def delete_role(self, name: str) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM roles WHERE name = ?", (name,)).rowcount > 0

    def list_roles(self) -> list[dict]:
        rows = self._query("SELECT name, kind, perms, key_ranges, commands, settings "
                           "FROM roles ORDER BY name")
        return [self._role(r) for r in rows]

    # -- keys ------------------------------------------------------------------

    _KEY_COLS = "slot, owner, attrs, wrapped, version"

    def _key(self, row: tuple) -> KeyRecord:
        try:
            attrs = decode_attrs(row[2])
        except ValueError as exc:
            raise self._fail(f"key slot {row[0]}: stored attributes are corrupt: {exc}") from None
        return KeyRecord(slot=row[0], owner=row[1], attrs=attrs,
                         wrapped=None if row[3] is None else bytes(row[3]), version=row[4])

    @staticmethod
    def _next_version(conn: sqlite3.Connection) -> int:
        # Versions come from one store-wide counter so a slot that is deleted
        # and reused never repeats a (slot, version) pair a cache may hold.
        return conn.execute("UPDATE counters SET value = value + 1 "
                            "WHERE name = 'key_version' RETURNING value").fetchone()[0]

    @staticmethod
    def _free_slot(conn: sqlite3.Connection, lo: int, hi: int) -> int | None:
        if conn.execute("SELECT 1 FROM keys WHERE slot = ?", (lo,)).fetchone() is None:
            return lo
        # first used slot in range whose successor is free; walks the rowid
        # b-tree in order and stops at the first gap
        row = conn.execute(
            "SELECT k.slot + 1 FROM keys AS k WHERE k.slot >= ? AND k.slot < ? "
            "AND NOT EXISTS (SELECT 1 FROM keys AS n WHERE n.slot = k.slot + 1) "
            "ORDER BY k.slot LIMIT 1", (lo, hi)).fetchone()
        return None if row is None else row[0]

    def _key_params(self, rec: KeyRecord) -> tuple:
        cls, label, key_id, key_type = index_columns(rec.attrs)
        try:
            attrs = encode_attrs(rec.attrs)
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        wrapped = None if rec.wrapped is None else bytes(rec.wrapped)
        return rec.owner, cls, label, key_id, key_type, attrs, wrapped

    @classmethod
    def _allocate(cls, conn: sqlite3.Connection, lo: int, hi: int) -> int | None:
        # slot_hints caches, per range, a slot below which every slot is used,
        # so allocation in a densely filled table does not rescan it. Every
        # delete lowers or drops the hints in the same transaction; a stale
        # hint could only skip a free slot, never hand out a used one.
        row = conn.execute("SELECT next FROM slot_hints WHERE lo = ? AND hi = ?",
                           (lo, hi)).fetchone()
        start = lo if row is None else max(lo, row[0])
        slot = None if start > hi else cls._free_slot(conn, start, hi)
        conn.execute("INSERT OR REPLACE INTO slot_hints (lo, hi, next) VALUES (?, ?, ?)",
                     (lo, hi, hi + 1 if slot is None else slot + 1))
        return slot

    def insert_key(self, owner: str, ranges: list[tuple[int, int]],
                   build: Callable[[int], KeyRecord]) -> KeyRecord:
        """Allocate the lowest free slot in ``ranges`` (in order) and store ``build(slot)``.

        Everything happens in one write transaction, so concurrent callers
        (threads or processes) never receive the same slot.
        """
        return self.insert_keys(owner, ranges, [build])[0]

    def insert_keys(self, owner: str, ranges: list[tuple[int, int]],
                    builds: list[Callable[[int], KeyRecord]]) -> list[KeyRecord]:
        """``insert_key`` for several keys in one transaction (a key pair): all are stored
        or none is, whatever fails (a full disk, a kill)."""
        ranges = check_ranges(ranges)
        out = []
        with self._write() as conn:
            for build in builds:
                for lo, hi in ranges:
                    slot = self._allocate(conn, lo, hi)
                    if slot is not None:
                        break
                else:
                    raise SlotsFull(ranges)
                rec = build(slot)
                if rec.slot != slot or rec.owner != owner:
                    raise ValueError(f"build({slot}) returned a record for slot {rec.slot} "
                                     f"owned by {rec.owner!r}, expected {owner!r}")
                params = self._key_params(rec)
                version = self._next_version(conn)
                conn.execute("INSERT INTO keys (slot, owner, cls, label, key_id, key_type, "
                             "attrs, wrapped, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (slot, *params, version))
                out.append(dataclasses.replace(rec, version=version))
        return out

    def get_key(self, slot: int) -> KeyRecord | None:
        rows = self._query(f"SELECT {self._KEY_COLS} FROM keys WHERE slot = ?", (slot,))
        return self._key(rows[0]) if rows else None

    def update_key(self, rec: KeyRecord, expected_version: int | None = None) -> KeyRecord:
        """Rewrite slot ``rec.slot``; the returned record carries the new version.

        Raises StoreError("... concurrent update ...") when ``expected_version``
        is given and the stored version differs, and StoreError when the slot
        is empty.
        """
        params = self._key_params(rec)
        with self._write() as conn:
            row = conn.execute("SELECT version FROM keys WHERE slot = ?", (rec.slot,)).fetchone()
            if row is None:
                raise self._fail(f"key slot {rec.slot} is empty")
            if expected_version is not None and row[0] != expected_version:
                raise self._fail(f"concurrent update of key slot {rec.slot} "
                                 f"(version {row[0]}, expected {expected_version})")
            version = self._next_version(conn)
            conn.execute("UPDATE keys SET owner = ?, cls = ?, label = ?, key_id = ?, "
                         "key_type = ?, attrs = ?, wrapped = ?, version = ? WHERE slot = ?",
                         (*params, version, rec.slot))
        return dataclasses.replace(rec, version=version)

    def delete_key(self, slot: int) -> bool:
        with self._write() as conn:
            if conn.execute("DELETE FROM keys WHERE slot = ?", (slot,)).rowcount == 0:
                return False
            conn.execute("UPDATE slot_hints SET next = ? WHERE lo <= ? AND next > ?",
                         (slot, slot, slot))
            return True

    def find_keys(self, owner: str | None, cls: int | None = None, label: str | None = None,
                  key_id: bytes | None = None, key_type: int | None = None) -> list[KeyRecord]:
        """Keys matching every filter that is not None, ordered by slot."""
        where, params = [], []
        for column, value in (("owner", owner), ("cls", cls), ("label", label),
                              ("key_id", None if key_id is None else bytes(key_id)),
                              ("key_type", key_type)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {self._KEY_COLS} FROM keys"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [self._key(r) for r in self._query(sql + " ORDER BY slot", params)]

    def list_keys(self, owner: str | None = None) -> list[KeyRecord]:
        return self.find_keys(owner)

    def count_keys(self, owner: str | None = None) -> int:
        if owner is None:
            return self._query("SELECT COUNT(*) FROM keys")[0][0]
        return self._query("SELECT COUNT(*) FROM keys WHERE owner = ?", (owner,))[0][0]

    def delete_keys_in(self, owner: str) -> int:
        with self._write() as conn:
            count = conn.execute("DELETE FROM keys WHERE owner = ?", (owner,)).rowcount
            if count:
                conn.execute("DELETE FROM slot_hints")  # rebuilt on the next inserts
            return count

    # -- audit -----------------------------------------------------------------

    def append_audit(self, entry: dict) -> None:
        """Append one row to the hash-chained audit log.

        ``entry`` may hold time, identity, role, command, result and text;
        values are stored as text and time defaults to now (UTC, ISO 8601).
        """
        fields = normalize_audit_entry(entry)
        with self._write() as conn:
            last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (1, AUDIT_GENESIS) if last is None else (last[0] + 1, last[1])
            digest = audit_hash(prev, seq, fields)
            conn.execute("INSERT INTO audit (seq, time, identity, role, command, result, text, "
                         "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (seq, *(fields[f] for f in AUDIT_FIELDS), prev, digest))
            # the head lets verify_audit notice rows cut off the end of the chain
            conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('audit.head', ?)",
                         (f"{seq}:{digest}",))

    def audit_rows(self) -> list[dict]:
        cols = ("seq",) + AUDIT_FIELDS + ("prev_hash", "hash")
        rows = self._query(f"SELECT {', '.join(cols)} FROM audit ORDER BY seq")
        return [dict(zip(cols, r)) for r in rows]

    def verify_audit(self) -> tuple[bool, str]:
        """Check the chain; the message names the first bad row."""
        return verify_audit_chain(self.audit_rows(), self.get_meta("audit.head"))


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
