"""Applications shared by the workers of one `vhsm serve --workers N`.

The links of one library instance (one application: its login and session objects) land on
different worker processes. The runtime registry `run/apps.db` in the state directory holds
what they must agree on: each application's login state, which workers hold links to it,
and its session objects (attributes encoded as in the key table, material wrapped under the
FTK, never clear). A counter in `run/apps.db.gen`, mapped in memory, changes after every
committed write, so a worker notices another's change at its next command without a query.

Single-process serving and the in-process transport never load this module: their
Connection keeps everything in memory. SharedConnection and SharedObjectSpace are the
same classes with the shared state behind them; VirtualHSM.connect/join/leave hand over to
AppRegistry when `device.shared` is set.
"""
from __future__ import annotations

import contextlib
import logging
import mmap
import os
import sqlite3
import struct
import threading
from typing import Any, Iterator

from fxpkcs11 import ck
from vhsm import attrcodec, factory
from vhsm.device import Connection, VirtualHSM
from vhsm.excrypt import DeviceError
from vhsm.majorkeys import WrapError
from vhsm.objects import SESSION_BASE, ObjectSpace, P11Object, material

log = logging.getLogger("vhsm.server")
RUN_DIR = "run"
_GEN = struct.Struct("<Q")

SCHEMA = """
CREATE TABLE apps (
    app_id   TEXT PRIMARY KEY,
    client   TEXT,                 -- the TLS client certificate's fingerprint, NULL when anonymous
    identity TEXT,                 -- the logged-in identity, NULL before C_Login
    role     TEXT NOT NULL,
    so       INTEGER NOT NULL DEFAULT 0,
    gen      INTEGER NOT NULL DEFAULT 0   -- bumped by every change of login or session objects
);
CREATE TABLE links (
    app_id TEXT NOT NULL,
    pid    INTEGER NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (app_id, pid)
);
CREATE TABLE session_objects (
    ref     INTEGER PRIMARY KEY,
    app_id  TEXT NOT NULL,
    session INTEGER NOT NULL,
    owner   TEXT NOT NULL,
    version INTEGER NOT NULL,
    attrs   BLOB NOT NULL,
    wrapped BLOB                  -- secret material under the FTK; NULL for objects without any
);
CREATE INDEX session_objects_app ON session_objects(app_id);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO counters VALUES ('ref', 0);
"""


def registry_path(state_dir: str, server_pid: int) -> str:
    """One registry per running server (its parent's pid): servers sharing a state directory
    share token objects, never applications."""
    return os.path.join(os.path.abspath(state_dir), RUN_DIR, f"apps-{server_pid}.db")


def _remove(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal", ".gen"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def session_aad(app_id: str, ref: int, session: int, owner: str, attrs: dict[int, Any]) -> bytes:
    """What a session object's wrapping is bound to: a blob moved to another object, session
    or application in the file does not unwrap."""
    return b"FXSO1|%s|%d|%d|%s|" % (app_id.encode(), ref, session, owner.encode()) + attrcodec.encode_attrs(attrs)


class AppRegistry:
    """The registry file of one server: one SQLite connection per thread and process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        fd = os.open(self.path + ".gen", os.O_RDWR)
        try:
            self._gen = mmap.mmap(fd, _GEN.size)
        finally:
            os.close(fd)

    @classmethod
    def create(cls, state_dir: str) -> "AppRegistry":
        """This server's fresh, empty registry; registries that servers no longer running
        left behind are wiped. The parent calls this before forking the workers."""
        path = registry_path(state_dir, os.getpid())
        run = os.path.dirname(path)
        os.makedirs(run, mode=0o700, exist_ok=True)
        os.chmod(run, 0o700)
        for name in os.listdir(run):
            pid = name[len("apps-"):].split(".", 1)[0]
            if name.startswith("apps-") and pid.isdigit() and (int(pid) == os.getpid() or not _pid_alive(int(pid))):
                _remove(os.path.join(run, f"apps-{pid}.db"))
        for name, size in ((path, 0), (path + ".gen", _GEN.size)):
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            os.ftruncate(fd, size)
            os.close(fd)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
        finally:
            conn.close()
        return cls(path)

    def close(self) -> None:
        """Close this thread's connection (the parent does, before it forks again)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def remove(self) -> None:
        """The server stopped: its applications are gone."""
        self._gen.close()
        _remove(self.path)

    # ------------------------------------------------------------ plumbing
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=15.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=15000")
            conn.execute("PRAGMA synchronous=OFF")  # runtime state: a restart wipes it anyway
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def generation(self) -> int:
        return _GEN.unpack_from(self._gen)[0]

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise DeviceError(ck.CKR_DEVICE_ERROR, f"application registry: {e}") from None
        # After the commit: a worker that sees the new count reads the new rows.
        _GEN.pack_into(self._gen, 0, (self.generation() + 1) & 0xFFFFFFFFFFFFFFFF)

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise DeviceError(ck.CKR_DEVICE_ERROR, f"application registry: {e}") from None

    # ------------------------------------------------------------ applications and links
    def add_app(self, app_id: str, pid: int) -> None:
        with self._write() as db:
            db.execute("INSERT INTO apps (app_id, role) VALUES (?, ?)", (app_id, factory.TRANSACTION_PROCESSING))
            db.execute("INSERT INTO links VALUES (?, ?, 1)", (app_id, pid))

    def set_client(self, app_id: str, client: str | None) -> None:
        with self._write() as db:
            db.execute("UPDATE apps SET client = ? WHERE app_id = ?", (client, app_id))

    def join(self, app_id: str, pid: int) -> tuple | None:
        """One more link of this worker to the application; its row, None if it ended."""
        with self._write() as db:
            row = db.execute("SELECT client, identity, role, so, gen FROM apps WHERE app_id = ?",
                             (app_id,)).fetchone()
            if row is None:
                return None
            db.execute("INSERT INTO links VALUES (?, ?, 1) ON CONFLICT (app_id, pid) DO UPDATE SET count = count + 1",
                       (app_id, pid))
        return row

    def leave(self, app_id: str, pid: int) -> bool:
        """One link of this worker to the application closed; True when that ended it (no
        link left on any worker): its row and session objects are gone."""
        with self._write() as db:
            return self._leave(db, app_id, pid)

    @staticmethod
    def _leave(db: sqlite3.Connection, app_id: str, pid: int) -> bool:
        db.execute("UPDATE links SET count = count - 1 WHERE app_id = ? AND pid = ?", (app_id, pid))
        db.execute("DELETE FROM links WHERE app_id = ? AND pid = ? AND count <= 0", (app_id, pid))
        if db.execute("SELECT 1 FROM links WHERE app_id = ? LIMIT 1", (app_id,)).fetchone():
            return False
        db.execute("DELETE FROM session_objects WHERE app_id = ?", (app_id,))
        db.execute("DELETE FROM apps WHERE app_id = ?", (app_id,))
        return True

    def leave_if_idle(self, app_id: str, pid: int) -> bool:
        """An idle link of this worker leaves only if the application keeps a link on some
        worker, or has nothing to lose (no login, no session objects). Decided and done in
        one write transaction: two workers' idle links timing out together cannot both see
        the other and both go, ending the application. True when the link left."""
        with self._write() as db:
            total = db.execute("SELECT COALESCE(SUM(count), 0) FROM links WHERE app_id = ?", (app_id,)).fetchone()[0]
            if total <= 1:
                row = db.execute("SELECT identity FROM apps WHERE app_id = ?", (app_id,)).fetchone()
                holds = db.execute("SELECT 1 FROM session_objects WHERE app_id = ? LIMIT 1", (app_id,)).fetchone()
                if (row is not None and row[0] is not None) or holds is not None:
                    return False
            self._leave(db, app_id, pid)
        return True

    def forget_worker(self, pid: int) -> int:
        """A worker died: drop its links, then the applications left without any. Returns
        how many applications ended."""
        with self._write() as db:
            db.execute("DELETE FROM links WHERE pid = ?", (pid,))
            orphans = "SELECT app_id FROM apps WHERE app_id NOT IN (SELECT app_id FROM links)"
            db.execute(f"DELETE FROM session_objects WHERE app_id IN ({orphans})")
            return db.execute(f"DELETE FROM apps WHERE app_id IN ({orphans})").rowcount

    def state(self, app_id: str) -> tuple | None:
        rows = self._read("SELECT identity, role, so, gen FROM apps WHERE app_id = ?", (app_id,))
        return rows[0] if rows else None

    def set_login(self, app_id: str, identity: str | None, role: str, so: bool) -> None:
        with self._write() as db:
            db.execute("UPDATE apps SET identity = ?, role = ?, so = ?, gen = gen + 1 WHERE app_id = ?",
                       (identity, role, int(so), app_id))

    # ------------------------------------------------------------ session objects
    def add_objects(self, app_id: str, session: int, owner: str, items: list[tuple[dict[int, Any], Any]]) -> list[int]:
        """New session objects, in one transaction; each item's `wrap(ref)` gives its wrapped
        material (or None)."""
        refs = []
        with self._write() as db:
            for attrs, wrap in items:
                ref = SESSION_BASE + db.execute(
                    "UPDATE counters SET value = value + 1 WHERE name = 'ref' RETURNING value").fetchone()[0]
                db.execute("INSERT INTO session_objects VALUES (?, ?, ?, ?, 1, ?, ?)",
                           (ref, app_id, session, owner, attrcodec.encode_attrs(attrs), wrap(ref)))
                refs.append(ref)
            db.execute("UPDATE apps SET gen = gen + 1 WHERE app_id = ?", (app_id,))
        return refs

    def update_object(self, app_id: str, ref: int, attrs: dict[int, Any], wrapped: bytes | None) -> int:
        with self._write() as db:
            row = db.execute("UPDATE session_objects SET version = version + 1, attrs = ?, wrapped = ? "
                             "WHERE app_id = ? AND ref = ? RETURNING version",
                             (attrcodec.encode_attrs(attrs), wrapped, app_id, ref)).fetchone()
            db.execute("UPDATE apps SET gen = gen + 1 WHERE app_id = ?", (app_id,))
        if row is None:
            raise DeviceError(ck.CKR_OBJECT_HANDLE_INVALID, f"session object {ref} no longer exists")
        return row[0]

    def drop_objects(self, app_id: str, *, ref: int | None = None, session: int | None = None) -> None:
        """Destroy one session object, a session's, or (neither given) all of the application's."""
        sql, params = "DELETE FROM session_objects WHERE app_id = ?", [app_id]
        if ref is not None:
            sql, params = sql + " AND ref = ?", params + [ref]
        if session is not None:
            sql, params = sql + " AND session = ?", params + [session]
        with self._write() as db:
            if db.execute(sql, params).rowcount:
                db.execute("UPDATE apps SET gen = gen + 1 WHERE app_id = ?", (app_id,))

    def objects(self, app_id: str) -> list[tuple]:
        return self._read("SELECT ref, session, owner, version, attrs, wrapped FROM session_objects "
                          "WHERE app_id = ?", (app_id,))


class SharedApps:
    """What VirtualHSM.connect/join/leave hand over to in a worker: this worker's
    connections by application id, kept in step with the registry."""

    def __init__(self, registry: AppRegistry) -> None:
        self.registry = registry
        self._apps: dict[str, SharedConnection] = {}
        self._lock = threading.Lock()

    def connect(self, device: VirtualHSM) -> "SharedConnection":
        conn = SharedConnection(device, self.registry)
        with self._lock:
            self.registry.add_app(conn.app_id, os.getpid())
            conn.links = 1
            self._apps[conn.app_id] = conn
        return conn

    def join(self, device: VirtualHSM, app_id: str) -> "SharedConnection | None":
        with self._lock:  # held over the registry too: one local connection per application
            conn = self._apps.get(app_id)
            row = self.registry.join(app_id, os.getpid())
            if row is None:
                return None
            if conn is None:
                client, identity, role, so, gen = row
                conn = SharedConnection(device, self.registry, app_id)
                conn._client = client
                conn.identity, conn.role_name, conn.so = identity, role, bool(so)
                self._apps[app_id] = conn
            conn.links += 1
            return conn

    def leave(self, conn: "SharedConnection", *, only_if_idle: bool = False) -> bool:
        """One link of this worker closed. With `only_if_idle`, an idle link that may go
        (SharedConnection.leave_if_idle); False, and nothing changed, when it must stay."""
        with self._lock:
            try:
                if only_if_idle:
                    if conn.contexts or not self.registry.leave_if_idle(conn.app_id, os.getpid()):
                        return False
                else:
                    self.registry.leave(conn.app_id, os.getpid())
            except DeviceError as e:  # the parent strikes this worker's rows if it dies; log and go on
                if only_if_idle:
                    return False
                log.error("application %s: leaving it in the registry failed: %s", conn.app_id, e.text)
            conn.links -= 1
            if conn.links > 0:
                return True
            self._apps.pop(conn.app_id, None)
        # This worker's copy goes; the application lives on while other workers hold links.
        conn.identity, conn.role_name, conn.so = None, factory.TRANSACTION_PROCESSING, False
        conn.contexts.clear()
        conn.pending_auth.clear()
        conn.objects.forget()
        return True


class SharedConnection(Connection):
    """A Connection whose login state and session objects live in the registry. Each command
    first takes in what other workers changed (one memory read when nothing did), and a
    command that changed the login writes it back."""

    def __init__(self, device: VirtualHSM, registry: AppRegistry, app_id: str | None = None) -> None:
        super().__init__(device)
        if app_id is not None:
            self.app_id = app_id
        self.registry = registry
        self._client: str | None = None
        self._seen = -1      # the registry counter when this worker last looked
        self._app_gen = -1   # the application's row generation then
        self.objects = SharedObjectSpace(self)

    @property
    def client(self) -> str | None:
        return self._client

    @client.setter
    def client(self, value: str | None) -> None:
        self._client = value
        self.registry.set_client(self.app_id, value)

    def run(self, code: str, fields: dict) -> dict:
        self.sync()
        before = (self.identity, self.role_name, self.so)
        try:
            return super().run(code, fields)
        finally:
            after = (self.identity, self.role_name, self.so)
            if after != before:
                self.registry.set_login(self.app_id, *after)

    def leave_if_idle(self) -> bool:
        # The login and session objects outlive this link while a link on any worker holds
        # the application; an operation in progress lives on this worker only, and the
        # library's new link may land on another.
        return self.device.shared.leave(self, only_if_idle=True)

    def sync(self) -> None:
        seen = self.registry.generation()
        if seen == self._seen:
            return
        row = self.registry.state(self.app_id)
        if row is not None and row[3] != self._app_gen:
            identity, role, so, gen = row
            self.identity, self.role_name, self.so = identity, role, bool(so)
            if identity is None:
                self.pending_auth.clear()
            self.objects.reload()
            self._app_gen = gen
        self._seen = seen


class SharedObjectSpace(ObjectSpace):
    """Token objects as always; session objects in the registry, with this worker's copies
    (parsed material included) in `session_objects`, refreshed by SharedConnection.sync."""

    def __init__(self, conn: SharedConnection) -> None:
        device = conn.device
        super().__init__(device.store, device.require_ftk, device.cache)
        self.app_id = conn.app_id
        self.registry = conn.registry

    def reload(self) -> None:
        fresh: dict[int, P11Object] = {}
        for ref, session, owner, version, blob, wrapped in self.registry.objects(self.app_id):
            known = self.session_objects.get(ref)
            if known is not None and known.version == version:
                fresh[ref] = known
                continue
            attrs = attrcodec.decode_attrs(blob)
            secret = None
            if wrapped is not None:
                try:
                    secret = self._ftk().unwrap(wrapped, session_aad(self.app_id, ref, session, owner, attrs))
                except WrapError:
                    raise DeviceError(ck.CKR_DEVICE_ERROR, f"session object {ref} does not unwrap under the "
                                      "loaded FTK (was the FTK changed?)") from None
            fresh[ref] = P11Object(ref, attrs, owner, session, version, secret,
                                   material(attrs[ck.CKA_CLASS], secret) if secret is not None else None)
        with self._lock:
            self.session_objects = fresh

    def create_all(self, items: list[tuple[dict[int, Any], bytes | None]], owner: str,
                   ranges: list[tuple[int, int]], session: int) -> list[P11Object]:
        out: dict[int, P11Object] = {}
        token = [i for i, (attrs, _) in enumerate(items) if attrs.get(ck.CKA_TOKEN)]
        if token:
            out.update(zip(token, super().create_all([items[i] for i in token], owner, ranges, session)))
        fresh = [i for i in range(len(items)) if i not in out]
        if fresh:
            ftk = self._ftk() if any(items[i][1] is not None for i in fresh) else None

            def wrapper(attrs: dict[int, Any], secret: bytes | None) -> Any:
                def wrap(ref: int) -> bytes | None:
                    if secret is None:
                        return None
                    return ftk.wrap(secret, session_aad(self.app_id, ref, session, owner, attrs))
                return wrap
            refs = self.registry.add_objects(self.app_id, session, owner,
                                             [(items[i][0], wrapper(*items[i])) for i in fresh])
            for i, ref in zip(fresh, refs):
                attrs, secret = items[i]
                out[i] = P11Object(ref, attrs, owner, session, 1, secret,
                                   material(attrs[ck.CKA_CLASS], secret) if secret is not None else None)
                with self._lock:
                    self.session_objects[ref] = out[i]
        return [out[i] for i in range(len(items))]

    def update(self, obj: P11Object, attrs: dict[int, Any]) -> None:
        if obj.is_token:
            return super().update(obj, attrs)
        wrapped = None
        if obj.secret is not None:  # the attributes are bound into the wrapping: wrap again
            wrapped = self._ftk().wrap(obj.secret, session_aad(self.app_id, obj.ref, obj.session, obj.owner, attrs))
        obj.version = self.registry.update_object(self.app_id, obj.ref, attrs, wrapped)
        obj.attrs = attrs

    def destroy(self, obj: P11Object) -> None:
        if obj.is_token:
            return super().destroy(obj)
        self.registry.drop_objects(self.app_id, ref=obj.ref)
        super().destroy(obj)

    def drop_session(self, session: int) -> None:
        self.registry.drop_objects(self.app_id, session=session)
        super().drop_session(session)

    def drop_all_sessions(self) -> None:
        self.registry.drop_objects(self.app_id)
        super().drop_all_sessions()

    def forget(self) -> None:
        """This worker's copies only: the registry's rows go when the application ends."""
        super().drop_all_sessions()
