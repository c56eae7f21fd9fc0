"""The PostgreSQL store: one key table, role table and audit chain shared by several nodes.

Same interface and records as ``SQLiteStore``. Key values arrive here already wrapped under
the FTK (objects.py wraps them), so the database never sees a clear key; the FTK stays in
each node's secure memory. What makes it safe to share:

- slot allocation runs in one transaction under an advisory lock per partition, and the
  slot is the primary key, so two nodes never get the same slot;
- audit rows are appended under one advisory lock, so all nodes write one hash chain;
- every write transaction sends a NOTIFY; each process LISTENs on a background connection
  and bumps ``generation()``, so cached roles and settings are dropped on every node within
  the notification's delivery time, without a query per command.

Errors become ``StoreError`` naming the database (the dispatcher answers CKR_DEVICE_ERROR);
a broken connection is dropped and the next call connects again.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import threading
import time
import urllib.parse
import weakref
from typing import Any, Callable, Iterator

import psycopg
from psycopg import errors as pgerrors

from vhsm.attrcodec import decode_attrs, encode_attrs
from vhsm.store import (AUDIT_FIELDS, AUDIT_GENESIS, KeyRecord, SlotsFull, StoreError, _identity_row,
                        _role_row, audit_hash, check_ranges, index_columns, normalize_audit_entry)
from vhsm.storerows import (IDENTITY_COLS, ROLE_COLS, identity_from_row, role_from_row,
                            verify_audit_chain)

log = logging.getLogger("vhsm.pgstore")

SCHEMA_VERSION = 1
CHANNEL = "vhsm_store"
# advisory lock keys: (class, object); slot allocation locks (LOCK_SLOTS, hashtext(owner))
LOCK_MIGRATE, LOCK_SLOTS, LOCK_AUDIT = 0x56480001, 0x56480002, 0x56480003

_SCHEMA_V1 = """
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
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
CREATE SEQUENCE key_version;
CREATE TABLE keys (
    slot     BIGINT PRIMARY KEY CHECK (slot >= 0),
    owner    TEXT NOT NULL,
    cls      BIGINT,
    label    TEXT,
    key_id   BYTEA,
    key_type BIGINT,
    attrs    BYTEA NOT NULL,
    wrapped  BYTEA,
    version  BIGINT NOT NULL
);
CREATE INDEX keys_owner ON keys (owner, cls);
CREATE INDEX keys_label ON keys (label);
CREATE INDEX keys_id ON keys (key_id);
CREATE TABLE audit (
    seq       BIGINT PRIMARY KEY,
    time      TEXT,
    identity  TEXT,
    role      TEXT,
    command   TEXT,
    result    TEXT,
    text      TEXT,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TABLE nodes (
    name      TEXT PRIMARY KEY,
    address   TEXT NOT NULL,
    ftk_kcv   TEXT,
    pid       INTEGER,
    started   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat TIMESTAMPTZ NOT NULL DEFAULT now(),
    commands  BIGINT NOT NULL DEFAULT 0,
    load      DOUBLE PRECISION NOT NULL DEFAULT 0
)
"""

# Each entry upgrades from version i to i+1; index 0 builds a new database.
_MIGRATIONS: list[str] = [_SCHEMA_V1]

_LIVE: "weakref.WeakSet[PgStore]" = weakref.WeakSet()
# Connections inherited across fork belong to the parent: closing them in the child would end
# the parent's database sessions, so they are kept referenced and never touched.
_ABANDONED: list[Any] = []


def _after_fork_in_child() -> None:
    for store in list(_LIVE):
        store._forget_connections()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def is_store_url(text: str) -> bool:
    return text.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without its password, for messages and listings."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, psycopg.OperationalError):
        return f"database unreachable or connection lost ({text})"
    return text


class _Retry(Exception):
    """The slot picked was taken meanwhile by an overlapping range's allocation: pick again."""


class PgStore:
    """PostgreSQL backend: a small pool of connections shared by all threads."""

    shared_by_nodes = True  # several nodes use the same tables (device.py checks the FTK KCV)

    def __init__(self, url: str, *, create: bool = False, pool_size: int = 12,
                 connect_timeout: float = 3.0, acquire_timeout: float = 30.0) -> None:
        if not is_store_url(url):
            raise ValueError(f"not a PostgreSQL URL: {redact(url)!r}")
        self.url = url
        self.name = redact(url)
        self.connect_timeout = connect_timeout
        self.acquire_timeout = acquire_timeout
        self._pool_size = pool_size
        self._closed = False
        self._gen = 0
        self._gen_lock = threading.Lock()
        self._listening = False
        self._listener_pid: int | None = None
        self._forget_connections()
        _LIVE.add(self)
        try:
            self._prepare(create)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ connections
    def _forget_connections(self) -> None:
        """A fresh pool (and after fork, the parent's connections left alone)."""
        old = getattr(self, "_idle", [])
        _ABANDONED.extend(old)
        self._idle: list[psycopg.Connection] = []
        self._pool_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self._pool_size)
        self._listening = False
        self._listener_pid = None
        self._pid = os.getpid()

    def _fail(self, what: str) -> StoreError:
        return StoreError(f"PostgreSQL store {self.name}: {what}")

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout)),
                               application_name="vhsm", keepalives=1, keepalives_idle=5,
                               keepalives_interval=2, keepalives_count=3)

    @contextlib.contextmanager
    def _conn(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; psycopg errors become StoreError, broken connections are dropped."""
        if self._closed:
            raise self._fail("store is closed")
        if not self._slots.acquire(timeout=self.acquire_timeout):
            raise self._fail(f"all {self._pool_size} database connections stayed busy "
                             f"for {self.acquire_timeout:g} s")
        conn = None
        try:
            with self._pool_lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = self._connect()
            yield conn
        except psycopg.Error as exc:
            raise self._fail(_describe(exc)) from exc
        finally:
            if conn is not None:
                healthy = not conn.closed and not conn.broken and \
                    conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                if healthy and not self._closed and os.getpid() == self._pid:
                    with self._pool_lock:
                        self._idle.append(conn)
                else:
                    with contextlib.suppress(Exception):
                        conn.close()
            self._slots.release()

    @contextlib.contextmanager
    def _write(self) -> Iterator[psycopg.Connection]:
        """One transaction that tells every node (NOTIFY on commit) the store changed."""
        with self._conn() as conn:
            with conn.transaction():
                yield conn
                conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
        self._bump()

    def _query(self, sql: str, params: tuple | list | dict = ()) -> list[tuple]:
        with self._conn() as conn:
            return conn.execute(sql, params).fetchall()

    # ------------------------------------------------------------ schema
    def _prepare(self, create: bool) -> None:
        with self._conn() as conn:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_MIGRATE,))
                exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]
                if not exists:
                    if not create:
                        raise self._fail("holds no vhsm schema; create it with "
                                         f"`vhsm cluster init --store {self.name}`")
                    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                    conn.execute("INSERT INTO schema_version VALUES (0)")
                version = conn.execute("SELECT version FROM schema_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise self._fail(f"schema version {version} is newer than this software "
                                     f"({SCHEMA_VERSION})")
                for v in range(version, SCHEMA_VERSION):
                    for stmt in (s.strip() for s in _MIGRATIONS[v].split(";")):
                        if stmt:
                            conn.execute(stmt)
                    conn.execute("UPDATE schema_version SET version = %s", (v + 1,))
                    log.info("%s: schema migrated to version %d", self.name, v + 1)

    def schema_version(self) -> int:
        return self._query("SELECT version FROM schema_version")[0][0]

    # ------------------------------------------------------------ change notification
    def generation(self) -> int:
        """A counter every committed write of every node bumps (through LISTEN/NOTIFY on a
        background connection); reading it costs no query. While that connection is down,
        every read is a new value, so nothing is cached on stale data."""
        if self._listener_pid != os.getpid():
            self._start_listener()
        if not self._listening:
            self._bump()
        return self._gen

    def _bump(self) -> None:
        with self._gen_lock:
            self._gen += 1

    def _start_listener(self) -> None:
        with self._gen_lock:
            if self._listener_pid == os.getpid() or self._closed:
                return
            self._listener_pid = os.getpid()
        threading.Thread(target=self._listen, name="vhsm-pg-listen", daemon=True).start()

    def _listen(self) -> None:
        backoff = 0.2
        pid = os.getpid()
        while not self._closed and self._listener_pid == pid:
            try:
                conn = self._connect()
            except psycopg.Error as exc:
                log.warning("%s: change notifications unavailable, retrying in %.1f s: %s",
                            self.name, backoff, _describe(exc))
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            try:
                conn.execute(f"LISTEN {CHANNEL}")
                self._listening = True
                self._bump()  # changes made while nobody listened
                backoff = 0.2
                while not self._closed and self._listener_pid == pid:
                    for _ in conn.notifies(timeout=0.5):
                        self._bump()
            except psycopg.Error as exc:
                log.warning("%s: notification connection lost: %s", self.name, _describe(exc))
            finally:
                self._listening = False
                with contextlib.suppress(Exception):
                    conn.close()

    def listening(self) -> bool:
        return self._listening

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()

    def __enter__(self) -> "PgStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PgStore({self.name!r})"

    # ------------------------------------------------------------ meta
    def get_meta(self, name: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE name = %s", (name,))
        return rows[0][0] if rows else None

    def list_meta(self, prefix: str) -> dict[str, str]:
        rows = self._query("SELECT name, value FROM meta WHERE left(name, %s) = %s ORDER BY name",
                           (len(prefix), prefix))
        return dict(rows)

    def set_meta(self, name: str, value: str | None) -> None:
        with self._write() as conn:
            if value is None:
                conn.execute("DELETE FROM meta WHERE name = %s", (name,))
            else:
                conn.execute("INSERT INTO meta (name, value) VALUES (%s, %s) "
                             "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value", (name, str(value)))

    # ------------------------------------------------------------ identities
    def get_identity(self, name: str) -> dict | None:
        rows = self._query(f"SELECT {IDENTITY_COLS} FROM identities WHERE name = %s", (name,))
        return identity_from_row(rows[0]) if rows else None

    def put_identity(self, rec: dict) -> None:
        row = _identity_row(rec)
        with self._write() as conn:
            conn.execute(f"INSERT INTO identities ({IDENTITY_COLS}) VALUES (%s, %s, %s, %s, %s) "
                         "ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, "
                         "password_hash = EXCLUDED.password_hash, flags = EXCLUDED.flags, "
                         "failed_logins = EXCLUDED.failed_logins", row)

    def delete_identity(self, name: str) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM identities WHERE name = %s", (name,)).rowcount > 0

    def list_identities(self) -> list[dict]:
        return [identity_from_row(r) for r in self._query(f"SELECT {IDENTITY_COLS} FROM identities ORDER BY name")]

    # ------------------------------------------------------------ roles
    def get_role(self, name: str) -> dict | None:
        rows = self._query(f"SELECT {ROLE_COLS} FROM roles WHERE name = %s", (name,))
        return role_from_row(rows[0]) if rows else None

    def put_role(self, rec: dict) -> None:
        row = _role_row(rec)
        with self._write() as conn:
            conn.execute(f"INSERT INTO roles ({ROLE_COLS}) VALUES (%s, %s, %s, %s, %s, %s) "
                         "ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, perms = EXCLUDED.perms, "
                         "key_ranges = EXCLUDED.key_ranges, commands = EXCLUDED.commands, "
                         "settings = EXCLUDED.settings", row)

    def delete_role(self, name: str) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM roles WHERE name = %s", (name,)).rowcount > 0

    def list_roles(self) -> list[dict]:
        return [role_from_row(r) for r in self._query(f"SELECT {ROLE_COLS} FROM roles ORDER BY name")]

    # ------------------------------------------------------------ keys
    _KEY_COLS = "slot, owner, attrs, wrapped, version"

    def _key(self, row: tuple) -> KeyRecord:
        try:
            attrs = decode_attrs(bytes(row[2]))
        except ValueError as exc:
            raise self._fail(f"key slot {row[0]}: stored attributes are corrupt: {exc}") from None
        return KeyRecord(slot=row[0], owner=row[1], attrs=attrs,
                         wrapped=None if row[3] is None else bytes(row[3]), version=row[4])

    @staticmethod
    def _key_params(rec: KeyRecord) -> tuple:
        cls, label, key_id, key_type = index_columns(rec.attrs)
        try:
            attrs = encode_attrs(rec.attrs)
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        wrapped = None if rec.wrapped is None else bytes(rec.wrapped)
        return rec.owner, cls, label, key_id, key_type, attrs, wrapped

    @staticmethod
    def _free_slot(conn: psycopg.Connection, lo: int, hi: int) -> int | None:
        row = conn.execute(
            "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM keys WHERE slot = %(lo)s::bigint) THEN %(lo)s::bigint "
            "ELSE (SELECT k.slot + 1 FROM keys AS k WHERE k.slot >= %(lo)s::bigint AND k.slot < %(hi)s::bigint "
            "AND NOT EXISTS (SELECT 1 FROM keys AS n WHERE n.slot = k.slot + 1) "
            "ORDER BY k.slot LIMIT 1) END", {"lo": lo, "hi": hi}).fetchone()
        return None if row is None else row[0]

    def insert_key(self, owner: str, ranges: list[tuple[int, int]],
                   build: Callable[[int], KeyRecord]) -> KeyRecord:
        """The lowest free slot in ``ranges`` (in order), taken under the partition's advisory
        lock; an overlapping range of another role racing for the same slot loses the primary
        key and picks again."""
        return self.insert_keys(owner, ranges, [build])[0]

    def insert_keys(self, owner: str, ranges: list[tuple[int, int]],
                    builds: list[Callable[[int], KeyRecord]]) -> list[KeyRecord]:
        """``insert_key`` for several keys in one transaction (a key pair): all or none."""
        ranges = check_ranges(ranges)
        for _ in range(50):
            try:
                out = []
                with self._write() as conn:
                    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_SLOTS, owner))
                    for build in builds:
                        for lo, hi in ranges:
                            slot = self._free_slot(conn, lo, hi)
                            if slot is not None:
                                break
                        else:
                            raise SlotsFull(ranges)
                        rec = build(slot)
                        if rec.slot != slot or rec.owner != owner:
                            raise ValueError(f"build({slot}) returned a record for slot {rec.slot} "
                                             f"owned by {rec.owner!r}, expected {owner!r}")
                        params = self._key_params(rec)
                        got = conn.execute(
                            "INSERT INTO keys (slot, owner, cls, label, key_id, key_type, attrs, wrapped, version) "
                            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, nextval('key_version')) "
                            "ON CONFLICT (slot) DO NOTHING RETURNING version", (slot, *params)).fetchone()
                        if got is None:
                            raise _Retry()
                        out.append(dataclasses.replace(rec, version=got[0]))
                return out
            except _Retry:
                continue
        raise self._fail("could not allocate a key slot: other nodes kept taking the free ones")

    def get_key(self, slot: int) -> KeyRecord | None:
        rows = self._query(f"SELECT {self._KEY_COLS} FROM keys WHERE slot = %s", (slot,))
        return self._key(rows[0]) if rows else None

    def update_key(self, rec: KeyRecord, expected_version: int | None = None) -> KeyRecord:
        params = self._key_params(rec)
        with self._write() as conn:
            row = conn.execute("SELECT version FROM keys WHERE slot = %s FOR UPDATE", (rec.slot,)).fetchone()
            if row is None:
                raise self._fail(f"key slot {rec.slot} is empty")
            if expected_version is not None and row[0] != expected_version:
                raise self._fail(f"concurrent update of key slot {rec.slot} "
                                 f"(version {row[0]}, expected {expected_version})")
            version = conn.execute(
                "UPDATE keys SET owner = %s, cls = %s, label = %s, key_id = %s, key_type = %s, attrs = %s, "
                "wrapped = %s, version = nextval('key_version') WHERE slot = %s RETURNING version",
                (*params, rec.slot)).fetchone()[0]
        return dataclasses.replace(rec, version=version)

    def delete_key(self, slot: int) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM keys WHERE slot = %s", (slot,)).rowcount > 0

    def find_keys(self, owner: str | None, cls: int | None = None, label: str | None = None,
                  key_id: bytes | None = None, key_type: int | None = None) -> list[KeyRecord]:
        where, params = [], []
        for column, value in (("owner", owner), ("cls", cls), ("label", label),
                              ("key_id", None if key_id is None else bytes(key_id)),
                              ("key_type", key_type)):
            if value is not None:
                where.append(f"{column} = %s")
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
        return self._query("SELECT COUNT(*) FROM keys WHERE owner = %s", (owner,))[0][0]

    def delete_keys_in(self, owner: str) -> int:
        with self._write() as conn:
            return conn.execute("DELETE FROM keys WHERE owner = %s", (owner,)).rowcount

    # ------------------------------------------------------------ audit
    def append_audit(self, entry: dict) -> None:
        """One row of the hash chain all nodes share, appended under the audit lock."""
        fields = normalize_audit_entry(entry)
        with self._write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_AUDIT,))
            last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (1, AUDIT_GENESIS) if last is None else (last[0] + 1, last[1])
            digest = audit_hash(prev, seq, fields)
            conn.execute("INSERT INTO audit (seq, time, identity, role, command, result, text, prev_hash, hash) "
                         "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                         (seq, *(fields[f] for f in AUDIT_FIELDS), prev, digest))
            conn.execute("INSERT INTO meta (name, value) VALUES ('audit.head', %s) "
                         "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value", (f"{seq}:{digest}",))

    def audit_rows(self) -> list[dict]:
        cols = ("seq",) + AUDIT_FIELDS + ("prev_hash", "hash")
        rows = self._query(f"SELECT {', '.join(cols)} FROM audit ORDER BY seq")
        return [dict(zip(cols, r)) for r in rows]

    def verify_audit(self) -> tuple[bool, str]:
        with self._conn() as conn:
            with conn.transaction():  # rows and head from one snapshot
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cols = ("seq",) + AUDIT_FIELDS + ("prev_hash", "hash")
                rows = [dict(zip(cols, r)) for r in
                        conn.execute(f"SELECT {', '.join(cols)} FROM audit ORDER BY seq").fetchall()]
                head = conn.execute("SELECT value FROM meta WHERE name = 'audit.head'").fetchone()
        return verify_audit_chain(rows, head[0] if head else None)

    # ------------------------------------------------------------ cluster nodes
    def heartbeat(self, name: str, address: str, ftk_kcv: str | None, commands: int, load: float) -> None:
        """Record that node `name` is alive (not a device change: no NOTIFY)."""
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO nodes (name, address, ftk_kcv, pid, started, heartbeat, commands, load) "
                "VALUES (%s, %s, %s, %s, now(), now(), %s, %s) ON CONFLICT (name) DO UPDATE SET "
                "address = EXCLUDED.address, ftk_kcv = EXCLUDED.ftk_kcv, pid = EXCLUDED.pid, "
                "started = CASE WHEN nodes.pid = EXCLUDED.pid THEN nodes.started ELSE now() END, "
                "heartbeat = now(), commands = EXCLUDED.commands, load = EXCLUDED.load",
                (name, address, ftk_kcv, os.getpid(), commands, load))

    def list_nodes(self) -> list[dict]:
        rows = self._query("SELECT name, address, ftk_kcv, pid, started, heartbeat, commands, load, "
                           "extract(epoch FROM now() - heartbeat) FROM nodes ORDER BY name")
        cols = ("name", "address", "ftk_kcv", "pid", "started", "heartbeat", "commands", "load", "age")
        return [dict(zip(cols, r)) for r in rows]

    def forget_node(self, name: str) -> bool:
        with self._conn() as conn:
            return conn.execute("DELETE FROM nodes WHERE name = %s", (name,)).rowcount > 0
