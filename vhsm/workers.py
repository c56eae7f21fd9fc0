"""`vhsm serve --workers N`: one parent, N worker processes, one set of ports and one state.

The parent binds the ports, creates the application registry (vhsm/apps.py) and forks the
workers; each opens its own device (store connections, FTK, caches) after the fork. The
parent accepts every connection and hands it to the next worker in turn over a Unix socket
(SCM_RIGHTS): two links opened one after the other always land on different workers, which
the kernel's own spreading (SO_REUSEPORT hashing, or workers racing for accept) does not
promise. A worker serves a handed-over connection exactly as the single-process server
serves an accepted one. SIGTERM (or SIGINT) on the parent stops the workers cleanly; a worker
that dies is replaced, and its links are struck from the registry.
"""
from __future__ import annotations

import errno
import logging
import os
import select
import signal
import socket
import time
from typing import Any

from vhsm import cluster, tlsstream
from vhsm.apps import AppRegistry, SharedApps
from vhsm.server import AdminLink, Limits, ProductionLink, Server, serve_until_signalled

log = logging.getLogger("vhsm.server")

KINDS = {b"P": ProductionLink, b"A": AdminLink}
RESTART_PAUSE = 0.5  # a worker that keeps dying is not restarted in a tight loop


class WorkerServer(Server):
    """A worker: the single-process server, fed connections by the parent."""

    def serve_channel(self, chan: socket.socket) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([chan], [], [], 0.5)
            if not ready:
                continue
            try:
                msg, fds, _, _ = socket.recv_fds(chan, 16, 16)
            except OSError:
                return
            if not msg:
                log.error("the parent process is gone: stopping")
                return
            for kind, fd in zip(msg, fds):
                self.adopt(socket.socket(fileno=fd), KINDS.get(bytes([kind]), ProductionLink))

    def adopt(self, conn: socket.socket, kind: type) -> None:
        try:
            addr = conn.getpeername()
        except OSError:
            conn.close()
            return
        self.start_link(conn, addr, kind)  # the thread releases its database handle when it ends


class Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.pid = 0
        self.chan: socket.socket | None = None


class Supervisor:
    """The parent: ports, registry, workers."""

    def __init__(self, state_dir: str, host: str, port: int, admin_port: int | None, workers: int,
                 limits: Limits | None = None) -> None:
        self.state_dir = state_dir
        self.host = host
        self.limits = limits or Limits()
        probe = Server(state_dir, host, port, admin_port, self.limits)
        probe.bind()  # checks the TLS setup and binds the ports (an ephemeral port is chosen here)
        self.port, self.admin_port = probe.port, probe.admin_port
        self.listeners = [(s, b"P" if kind is ProductionLink else b"A") for s, kind in probe._listeners]
        probe.device.close()  # no store connection may cross the fork
        self.registry = AppRegistry.create(state_dir)
        tlsstream.share_between_processes()
        self.workers = [Worker(i) for i in range(workers)]
        self._next = 0
        self._stopping = False

    # ------------------------------------------------------------ workers
    def spawn(self, w: Worker) -> None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                parent_end.close()
                code = self._worker_main(w.index, child_end)
            except BaseException:
                log.exception("worker %d failed", w.index)
            finally:
                logging.shutdown()
                os._exit(code)
        child_end.close()
        w.pid, w.chan = pid, parent_end
        log.info("worker %d started (pid %d)", w.index, pid)

    def _worker_main(self, index: int, chan: socket.socket) -> int:
        for s, _ in self.listeners:
            s.close()
        for other in self.workers:
            if other.chan is not None:
                other.chan.close()
        server = WorkerServer(self.state_dir, port=None, admin_port=None, limits=self.limits)
        server.device.shared = SharedApps(AppRegistry(self.registry.path))
        heartbeat = None
        if getattr(server.device.store, "shared_by_nodes", False):  # a cluster node: each worker reports
            heartbeat = cluster.Heartbeat(server.device,
                                          f"{cluster.node_name(self.host, self.port)} worker {index}").start()

        def on_signal(signum: int, frame: Any) -> None:
            server._stop.set()
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            server.serve_channel(chan)
        finally:
            if heartbeat is not None:
                heartbeat.stop()
            server.stop()
        return 0

    def _hand_over(self, conn: socket.socket, kind: bytes) -> None:
        for _ in range(len(self.workers)):
            w = self.workers[self._next % len(self.workers)]
            self._next += 1
            if w.chan is None:
                continue
            try:
                socket.send_fds(w.chan, [kind], [conn.fileno()])
                return
            except OSError as e:
                log.warning("worker %d (pid %d) does not take connections: %s", w.index, w.pid, e)
        log.error("no worker takes connections: one refused")

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = next((w for w in self.workers if w.pid == pid), None)
            if w is None:
                continue
            if w.chan is not None:
                w.chan.close()
            w.pid, w.chan = 0, None
            if self._stopping:
                continue
            log.error("worker %d (pid %d) died (%s): restarting it", w.index, pid, _describe(status))
            try:
                ended = self.registry.forget_worker(pid)
                log.info("worker %d's links removed; %d application(s) ended with it", w.index, ended)
            except Exception as e:  # the registry must not keep the parent from restarting the worker
                log.error("registry clean-up after worker %d failed: %s", w.index, e)
            finally:
                self.registry.close()  # no registry connection may cross the fork either
            time.sleep(RESTART_PAUSE)
            self.spawn(w)

    # ------------------------------------------------------------ the parent's loop
    def serve_forever(self) -> None:
        for w in self.workers:
            self.spawn(w)
        socks = {s: kind for s, kind in self.listeners}
        while not self._stopping:
            try:
                ready, _, _ = select.select(list(socks), [], [], 0.2)
            except InterruptedError:
                ready = []
            for s in ready:
                try:
                    conn, _ = s.accept()
                except OSError:
                    continue
                try:
                    self._hand_over(conn, socks[s])
                finally:
                    conn.close()  # the worker has its own descriptor now
            self._reap()

    def stop(self, grace: float = 10.0) -> None:
        self._stopping = True
        for s, _ in self.listeners:
            s.close()
        for w in self.workers:
            if w.pid:
                _signal(w.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace + 2.0
        while any(w.pid for w in self.workers) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for w in self.workers:
            if w.pid:
                log.error("worker %d (pid %d) did not stop: killing it", w.index, w.pid)
                _signal(w.pid, signal.SIGKILL)
        while any(w.pid for w in self.workers):
            self._reap()
            time.sleep(0.05)
        self.registry.remove()


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError as e:
        if e.errno != errno.ESRCH:
            raise


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.WEXITSTATUS(status)}"


def run(state_dir: str, host: str, port: int, admin_port: int | None, workers: int, *,
        pid_file: str | None = None, limits: Limits | None = None) -> int:
    """`vhsm serve --workers N`: serve until SIGTERM or SIGINT."""
    sup = Supervisor(state_dir, host, port, admin_port, workers, limits)
    log.info("serving on %s:%s (management %s) with %d workers, state %s", host, sup.port, sup.admin_port,
             workers, os.path.abspath(state_dir))

    def request_stop() -> None:
        sup._stopping = True
    return serve_until_signalled(sup.serve_forever, request_stop, sup.stop, pid_file)
