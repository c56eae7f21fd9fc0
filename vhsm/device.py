"""The virtual Vectera Plus: one state directory, its store, its FTK, and connections.

A Connection is what a transport hands commands to; it carries the role (Transaction
Processing until a login), the session objects and the operation contexts of one client.
"""
from __future__ import annotations

import itertools
import os
import secrets
import threading
from typing import Any

from fxpkcs11 import ck
from vhsm import factory
from vhsm.excrypt import STATUS_OK, Command, DeviceError, Reply
from vhsm.majorkeys import MajorKey, SecureMemory, WrapError
from vhsm.objects import KeyCache, ObjectSpace
from vhsm.cluster import open_store
from vhsm.store import StoreError

class VirtualHSM:
    def __init__(self, state_dir: str) -> None:
        self.state_dir = os.path.abspath(state_dir)
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        try:
            self.store = open_store(self.state_dir)  # SQLite, or the cluster's database (vhsm/cluster.py)
        except StoreError as e:
            raise DeviceError(ck.CKR_DEVICE_ERROR, str(e)) from None
        self.secure = SecureMemory(self.state_dir)
        factory.ensure_initialized(self.store)
        self.serial = self.store.get_meta("serial") or "unknown"
        self.commands_served = 0  # the heartbeat's load figure (vhsm/cluster.py)
        self._cluster_kcv = self._read_cluster_kcv()
        self.cache = KeyCache()
        self._ftk: MajorKey | None = None
        self._ftk_stamp: tuple[int, int] | None = None
        self._ftk_lock = threading.Lock()
        self._contexts = itertools.count(1)
        self._local = threading.local()
        self._learned: set[tuple[str, str, str]] = set()
        self._apps: dict[str, Connection] = {}
        self._apps_lock = threading.Lock()
        self.shared: Any = None  # vhsm.apps.SharedApps in a `vhsm serve --workers` worker

    # ------------------------------------------------------------ FTK
    def _ftk_file_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(os.path.join(self.state_dir, "secure", "ftk.bin"))
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_ino)

    def refresh(self) -> None:
        """Once per command: if the store changed (this process or another), drop the
        cached roles and look at secure memory again, so admin changes apply at once."""
        local = self._local
        gen = self.store.generation()
        if getattr(local, "gen", None) != gen:
            local.gen, local.roles = gen, {}
            self._check_ftk()
            self._cluster_kcv = self._read_cluster_kcv()

    def _check_ftk(self) -> None:
        stamp = self._ftk_file_stamp()
        if stamp != self._ftk_stamp:
            with self._ftk_lock:
                try:
                    ftk = self.secure.load_ftk()
                except WrapError as e:
                    raise DeviceError(ck.CKR_DEVICE_ERROR, f"FTK in secure memory is damaged: {e}") from None
                if ftk is None or self._ftk is None or ftk.kcv != self._ftk.kcv:
                    self.cache.clear()
                self._ftk, self._ftk_stamp = ftk, stamp

    def ftk(self) -> MajorKey | None:
        if self._ftk_stamp is None and self._ftk is None:
            self._check_ftk()
        return self._ftk

    def require_ftk(self) -> MajorKey:
        ftk = self.ftk()
        if ftk is None:
            raise DeviceError(ck.CKR_DEVICE_ERROR,
                              "no FTK is loaded: key operations need the Futurex Key. Load one with "
                              f"`vhsm --state {self.state_dir} majorkey random --ftk` after both admins log in (guide section 6.4)")
        cluster = self._cluster_kcv
        if cluster is not None and ftk.kcv != cluster:
            raise DeviceError(ck.CKR_DEVICE_ERROR,
                              f"this node's FTK (KCV {ftk.kcv}) is not the cluster's (KCV {cluster}): it serves no "
                              f"keys until the cluster's FTK is recombined here with `vhsm --state {self.state_dir} "
                              "majorkey recombine` from the cluster's FTK cards")
        return ftk

    def _read_cluster_kcv(self) -> str | None:
        """The KCV of the FTK a cluster's key table is wrapped under (None when not clustered)."""
        if not getattr(self.store, "shared_by_nodes", False):
            return None
        try:
            return self.store.get_meta("ftk_kcv")
        except StoreError as e:
            raise DeviceError(ck.CKR_DEVICE_ERROR, str(e)) from None

    def load_ftk(self, ftk: MajorKey | None) -> None:
        with self._ftk_lock:
            self.secure.store_ftk(ftk)
            self.store.set_meta("ftk_kcv", ftk.kcv if ftk else None)
            self._ftk, self._ftk_stamp = ftk, self._ftk_file_stamp()
            self.cache.clear()

    # ------------------------------------------------------------ connections
    def connect(self) -> "Connection":
        """A new application: its own login state and session objects."""
        if self.shared is not None:
            return self.shared.connect(self)
        conn = Connection(self)
        with self._apps_lock:
            self._apps[conn.app_id] = conn
            conn.links = 1
        return conn

    def join(self, app_id: str) -> "Connection | None":
        """Another link (network connection) to an existing application."""
        if self.shared is not None:
            return self.shared.join(self, app_id)
        with self._apps_lock:
            conn = self._apps.get(app_id)
            if conn is not None:
                conn.links += 1
            return conn

    def leave(self, conn: "Connection") -> None:
        """A link dropped; the last one ends the application, its login and session objects."""
        if self.shared is not None:
            return self.shared.leave(conn)
        with self._apps_lock:
            conn.links -= 1
            if conn.links > 0:
                return
            self._apps.pop(conn.app_id, None)
        conn.identity, conn.role_name, conn.so = None, factory.TRANSACTION_PROCESSING, False
        conn.reset()

    def next_context_id(self) -> int:
        return next(self._contexts)

    def role(self, name: str) -> dict:
        roles = getattr(self._local, "roles", None)
        if roles is None:
            self.refresh()
            roles = self._local.roles
        role = roles.get(name)
        if role is None:
            try:
                role = self.store.get_role(name)
            except StoreError as e:
                raise DeviceError(ck.CKR_DEVICE_ERROR, f"role table: {e}") from None
            if role is None:
                raise DeviceError(ck.CKR_DEVICE_ERROR, f"role {name!r} no longer exists")
            role["command_set"] = frozenset(role["commands"])  # policy.authorize's lookup, per command
            roles[name] = role
        return role

    # ------------------------------------------------------------ policy records
    def record_learned(self, role: str, epoch: str, code: str) -> None:
        key = (role, epoch, code)
        if key not in self._learned:
            self.store.set_meta(f"learned:{role}:{epoch}:{code}", "1")
            self._learned.add(key)

    def record_denied(self, identity: str | None, role: str, code: str, text: str) -> None:
        try:
            self.store.append_audit({"identity": identity or "-", "role": role, "command": code,
                                     "result": "denied", "text": text})
        except StoreError:
            pass  # the refusal stands even when it cannot be written down

    def close(self) -> None:
        self.store.close()


class Connection:
    """One client application of the device: a provider token in process, or the network
    links of one library instance (they share its login and session objects)."""

    def __init__(self, device: VirtualHSM) -> None:
        self.device = device
        self.app_id = secrets.token_hex(16)
        self.links = 0
        self.role_name = factory.TRANSACTION_PROCESSING
        self.identity: str | None = None
        self.so = False  # the identity logged in as the partition's security officer (CKU_SO)
        self.pending_auth: set[int] = set()  # contexts waiting for C_Login(CKU_CONTEXT_SPECIFIC)
        self.last_resolved: Any = None  # the object the last command resolved (set by keys.resolve)
        self.admitted: tuple | None = None  # ((generation, role), codes, role): see dispatcher._admit
        self.objects = ObjectSpace(device.store, device.require_ftk, device.cache)
        self.contexts: dict[int, tuple[int, str, Any]] = {}  # id -> (session, command, context)

    @property
    def logged_in(self) -> bool:
        """A normal user is logged in: private objects are visible (never to the SO)."""
        return self.identity is not None and not self.so

    def execute(self, cmd: Command) -> Reply:
        """The command's reply: its fields, or its refusal as an error reply (the wire's form)."""
        try:
            return Reply(cmd.code, STATUS_OK, self.run(cmd.code, cmd.fields))
        except DeviceError as e:
            return e.reply(cmd.code)

    def run(self, code: str, fields: dict) -> dict:
        """The reply's fields, or the refusal raised as DeviceError. The in-process transport
        calls this directly: no command or reply object in between."""
        self.device.commands_served += 1
        return (_run_fn or _bind())(self, code, fields)

    def leave_if_idle(self) -> bool:
        """An idle link leaves when the application keeps other links, or has nothing to
        lose (no login, no session objects, no operation in progress). True when it left.
        The caller holds the server's idle lock, so the decision and the leaving are one."""
        if self.links > 1 or (self.identity is None and not self.objects.session_objects and not self.contexts):
            self.device.leave(self)
            return True
        return False

    def drop_session(self, session: int) -> None:
        self.objects.drop_session(session)
        for cid in [c for c, (s, _, _) in self.contexts.items() if s == session]:
            self.contexts.pop(cid, None)

    def reset(self) -> None:
        self.objects.drop_all_sessions()
        self.contexts.clear()
        self.pending_auth.clear()


_run_fn = None


def _bind():
    # The dispatcher imports every handler, which import this module: bind it on first use.
    global _run_fn
    if _run_fn is None:
        from vhsm.dispatcher import run
        _run_fn = run
    return _run_fn
