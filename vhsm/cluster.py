"""Cluster membership of a node: which store its state directory uses, and its heartbeat.

A state directory whose `store.url` file names a PostgreSQL database is a cluster node: its
token objects, roles, identities, TLS settings and audit chain live in that database, shared
with the other nodes; its FTK stays in its own secure memory. Without the file the node keeps
everything in `vhsm.db` (SQLite), as a stand-alone device does.

Each `vhsm serve` node records itself in the `nodes` table about once a second (address, FTK
KCV, heartbeat, commands per second); `vhsm cluster status` lists them.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from vhsm.store import SQLiteStore, StoreError

log = logging.getLogger("vhsm.cluster")

STORE_FILE = "store.url"
HEARTBEAT_INTERVAL = 1.0
STALE_AFTER = 5.0  # seconds without a heartbeat before a node is shown as down


def store_url(state_dir: str) -> str | None:
    """The cluster database this state directory belongs to, or None (stand-alone)."""
    try:
        with open(os.path.join(state_dir, STORE_FILE), encoding="utf-8") as f:
            url = f.read().strip()
    except FileNotFoundError:
        return None
    return url or None


def write_store_url(state_dir: str, url: str) -> str:
    """Make `state_dir` a node of the cluster at `url` (the file may hold a password: 0600)."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    path = os.path.join(state_dir, STORE_FILE)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(url.strip() + "\n")
    os.replace(tmp, path)
    return path


def open_store(state_dir: str) -> Any:
    """The store this node uses: the cluster's PostgreSQL database, else its own SQLite file."""
    url = store_url(state_dir)
    if url is None:
        return SQLiteStore(os.path.join(state_dir, "vhsm.db"))
    try:
        from vhsm.pgstore import PgStore
    except ImportError as e:  # psycopg missing
        raise StoreError(f"{state_dir}/{STORE_FILE} names a PostgreSQL store but psycopg is not installed: {e}") from None
    return PgStore(url)


def node_name(host: str, port: int) -> str:
    """How a node is known in the nodes table: the address clients use."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Heartbeat:
    """A daemon thread that records the node in the cluster's nodes table every second."""

    def __init__(self, device: Any, name: str) -> None:
        self.device = device
        self.name = name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vhsm-heartbeat", daemon=True)
        self._last = (time.monotonic(), device.commands_served)
        self._down = False

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def beat(self) -> None:
        now, served = time.monotonic(), self.device.commands_served
        then, before = self._last
        load = (served - before) / (now - then) if now > then else 0.0
        self._last = (now, served)
        try:
            ftk = self.device.secure.load_ftk()
        except Exception:  # noqa: BLE001 - a damaged FTK file shows as no KCV
            ftk = None
        self.device.store.heartbeat(self.name, self.name, ftk.kcv if ftk else None, served, round(load, 1))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
                if self._down:
                    log.info("cluster store reachable again: heartbeat resumed")
                self._down = False
            except StoreError as e:
                if not self._down:
                    log.error("heartbeat failed: %s", e)
                self._down = True
            self._stop.wait(HEARTBEAT_INTERVAL)


def start_heartbeat(server: Any) -> Heartbeat | None:
    """For `vhsm serve`: the node's heartbeat when its store is a cluster's, else None."""
    device = server.device
    if not getattr(device.store, "shared_by_nodes", False):
        return None
    hb = Heartbeat(device, node_name(server.host, server.port)).start()
    log.info("cluster node %s on %s", hb.name, device.store.name)
    return hb
