"""`vhsm serve`: the virtual HSM as a network appliance.

The production port (PROD-PORT, 9100) speaks Excrypt frames over TLS; each connection is a
link to an application (its login and session objects), and the same dispatcher and policy
as the in-process transport run every command. The management port carries the admin
shell's operations (`connect tcp`) and is the only place they are accepted.

One thread per connection: a slow or stalled client holds only its own thread. Limits: a
maximum frame size, a handshake timeout and an idle timeout. SIGTERM stops accepting, lets
in-flight commands finish and closes.
"""
from __future__ import annotations

import hashlib
import logging
import os
import select
import signal
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from fxpkcs11 import ck
from vhsm import cluster, wire
from vhsm.admin import REMOTE_METHODS, AdminError, AdminSession, Outcome
from vhsm.device import Connection, VirtualHSM
from vhsm.excrypt import STATUS_FAIL, Command, DeviceError, Reply, Tag
from vhsm.store import StoreError
from vhsm.tlsports import TlsSetupError, port_pki, server_context
from vhsm.tlsstream import TlsStream

log = logging.getLogger("vhsm.server")

PROD_PORT = 9100
ADMIN_PORT = 9101
PRODUCTION = "Excrypt Port"


@dataclass
class Limits:
    max_message: int = wire.MAX_MESSAGE
    handshake_timeout: float = 10.0
    idle_timeout: float = 300.0
    max_clients: int = 512


def error_frame(code: str, reason: int, text: str) -> bytes:
    return wire.encode_reply(DeviceError(reason, text).reply(code or "ERRR"))


class ProductionLink:
    """One TLS connection on the production port."""

    def __init__(self, server: "Server", peer: str, identity: str | None) -> None:
        self.server = server
        self.peer = peer
        self.client = identity  # the client certificate's fingerprint, None when anonymous
        self.closed = False
        self.app: Connection = server.device.connect()
        self.app.client = identity

    def handle(self, frame: bytes) -> bytes:
        try:
            cmd = wire.decode_command(frame)
        except wire.WireError as e:
            log.warning("%s: malformed frame refused: %s", self.peer, e)
            return error_frame("ERRR", ck.CKR_ARGUMENTS_BAD, f"malformed frame: {e}")
        if cmd.code == "APPN":
            return self._reply(Reply("APPN", "Y", {Tag.APPLICATION: self.app.app_id, Tag.FRAMING: wire.BINARY}))
        if cmd.code == "APPJ":
            return self._join(cmd)
        if cmd.code == "ADMN":
            return error_frame("ADMN", ck.CKR_FUNCTION_FAILED,
                               "admin commands are not accepted on the production port")
        return self._reply(self.app.execute(cmd), binary=wire.is_envelope(frame))

    def _join(self, cmd: Command) -> bytes:
        target = self.server.device.join(str(cmd.fields.get(Tag.APPLICATION, "")))
        if target is None or getattr(target, "client", None) != self.client:
            if target is not None:
                self.server.device.leave(target)
            return error_frame("APPJ", ck.CKR_SESSION_HANDLE_INVALID, "no such application on this server")
        self.server.device.leave(self.app)
        self.app = target
        return self._reply(Reply("APPJ", "Y", {Tag.APPLICATION: target.app_id, Tag.FRAMING: wire.BINARY}))

    def _reply(self, reply: Reply, binary: bool = False) -> bytes:
        try:
            return wire.encode_reply(reply, binary=binary)
        except (wire.WireError, ValueError, TypeError) as e:
            log.error("%s: %s reply cannot be framed: %s", self.peer, reply.code, e)
            return error_frame(reply.code, ck.CKR_DEVICE_ERROR, "reply cannot be framed")

    def close_if_idle(self) -> bool:
        """Leave the application if this idle link may go (it keeps other links, or has
        nothing to lose); decided and done at once. True when the link left."""
        if self.closed:
            return True
        if not self.app.leave_if_idle():
            return False
        self.closed = True
        return True

    def close(self) -> None:
        if not self.closed:  # once: an idle link leaves before its thread's final close
            self.closed = True
            self.server.device.leave(self.app)


class AdminLink:
    """One TLS connection on the management port: an administrator session."""

    def __init__(self, server: "Server", peer: str, identity: str | None) -> None:
        self.peer = peer
        self.session = AdminSession(server.device, audit_source=f"tcp {peer}")

    def handle(self, frame: bytes) -> bytes:
        try:
            cmd = wire.decode_command(frame)
        except wire.WireError as e:
            return error_frame("ERRR", ck.CKR_ARGUMENTS_BAD, f"malformed frame: {e}")
        if cmd.code == "ECHO":
            return wire.encode_reply(Reply("ECHO", "Y", {Tag.FIRMWARE: self.session.store.get_meta("firmware")}))
        if cmd.code != "ADMN":
            return error_frame(cmd.code, ck.CKR_FUNCTION_NOT_SUPPORTED, "the management port takes ADMN only")
        method = cmd.fields.get(Tag.ADMIN_METHOD, "")
        args = cmd.fields.get(Tag.ADMIN_ARGS) or {}
        if method not in REMOTE_METHODS or not isinstance(args, dict):
            return error_frame("ADMN", ck.CKR_ARGUMENTS_BAD, f"unknown admin operation {method!r}")
        try:
            result = getattr(self.session, method)(**args)
        except AdminError as e:
            return wire.encode_reply(Reply("ADMN", STATUS_FAIL, {Tag.ADMIN_RULE: e.rule, "BB": e.text}))
        except TypeError as e:
            return error_frame("ADMN", ck.CKR_ARGUMENTS_BAD, f"{method}: {e}")
        if isinstance(result, Outcome):
            result = {"text": result.text, "data": result.data}
        return wire.encode_reply(Reply("ADMN", "Y", {Tag.ADMIN_RESULT: result}))

    def close_if_idle(self) -> bool:
        return True

    def close(self) -> None:
        pass


class Server:
    def __init__(self, state_dir: str, host: str = "127.0.0.1", port: int = PROD_PORT,
                 admin_port: int | None = ADMIN_PORT, limits: Limits | None = None) -> None:
        self.device = VirtualHSM(state_dir)
        self.host, self.port, self.admin_port = host, port, admin_port
        self.limits = limits or Limits()
        self._settings = AdminSession(self.device, audit_source="server")
        self._listeners: list[tuple[socket.socket, type]] = []
        self._contexts: dict[str, tuple[Any, ssl.SSLContext]] = {}
        self._stop = threading.Event()
        self._links: set[Any] = set()
        self._links_lock = threading.Lock()
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._idle_lock = threading.Lock()

    # ------------------------------------------------------------ TLS
    def context(self, admin: bool) -> ssl.SSLContext:
        """The port's TLS context, rebuilt when tls-ports settings (or the device) changed."""
        self.device.refresh()
        settings = self._settings.tls_settings(PRODUCTION)
        stamp = (self.device.store.generation() if settings["pki_source"] == "Generated" else 0,
                 repr(sorted(settings.items())))
        key = "admin" if admin else "prod"
        cached = self._contexts.get(key)
        if cached is None or cached[0] != stamp:
            pkey, chain, cas, settings = port_pki(self._settings, PRODUCTION)
            ctx = server_context(pkey, chain, cas, require_client=admin or not settings["anon"],
                                 scratch_dir=self.device.state_dir)
            self._contexts[key] = (stamp, ctx)
            cached = self._contexts[key]
        return cached[1]

    # ------------------------------------------------------------ lifecycle
    def bind(self) -> None:
        self.context(False)  # fail now, not at the first client, if the PKI is unusable
        for port, link in ((self.port, ProductionLink), (self.admin_port, AdminLink)):
            if port is None:
                continue
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.host, port))
            s.listen(128)
            self._listeners.append((s, link))
            if port == 0:  # an ephemeral port: record what the kernel chose
                chosen = s.getsockname()[1]
                if link is ProductionLink:
                    self.port = chosen
                else:
                    self.admin_port = chosen
        log.info("serving %s on %s:%s (management %s), state %s", self.device.serial, self.host, self.port,
                 self.admin_port, self.device.state_dir)

    def serve_forever(self) -> None:
        socks = {s: link for s, link in self._listeners}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(socks), [], [], 0.5)
            for s in ready:
                try:
                    conn, addr = s.accept()
                except OSError:
                    continue
                self.start_link(conn, addr, socks[s])
        for s in socks:
            s.close()

    def start_link(self, conn: socket.socket, addr: Any, kind: type) -> None:
        """Serve an accepted connection on its own thread, unless the server is full."""
        with self._links_lock:
            full = len(self._links) >= self.limits.max_clients
        if full:
            log.warning("%s: refused, %d clients connected", addr, self.limits.max_clients)
            conn.close()
            return
        threading.Thread(target=self._link_thread, args=(conn, addr, kind), daemon=True).start()

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting; idle links close now, busy ones after their command."""
        self._stop.set()
        with self._links_lock:
            links = list(self._links)
        for sock, _ in links:
            try:
                # socket.socket's shutdown, not SSLSocket's: that one drops the TLS state, and a
                # busy link's reply would then go out in clear text.
                socket.socket.shutdown(sock, socket.SHUT_RD)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while self._busy and time.monotonic() < deadline:
            time.sleep(0.02)

    # ------------------------------------------------------------ one connection
    def _link_thread(self, raw: socket.socket, addr: Any, kind: type) -> None:
        try:
            self._serve_link(raw, addr, kind)
        finally:
            release = getattr(self.device.store, "release_thread", None)
            if release is not None:  # the thread's database handle goes with it
                release()

    def _serve_link(self, raw: socket.socket, addr: Any, kind: type) -> None:
        peer = f"{addr[0]}:{addr[1]}"
        try:
            ctx = self.context(kind is AdminLink)
        except (TlsSetupError, ssl.SSLError, OSError, DeviceError, StoreError) as e:  # Store: a cluster's database
            log.error("%s: no usable TLS setup: %s", peer, e)
            raw.close()
            return
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # replies go out at once
        tls = TlsStream(raw, ctx, server_side=True, timeout=self.limits.handshake_timeout)
        try:
            tls.handshake()
        except (ssl.SSLError, OSError) as e:
            log.warning("%s: TLS handshake failed: %s", peer, e)
            self._linger_close(raw)
            return
        cert = tls.getpeercert()
        identity = hashlib.sha256(cert).hexdigest() if cert else None
        link = kind(self, peer, identity)
        entry = (tls.raw, link)
        with self._links_lock:
            self._links.add(entry)
        log.info("%s: connected (%s, %s)", peer, kind.__name__, "client certificate" if cert else "anonymous")
        try:
            self._frames(tls, link, peer)
        finally:
            with self._links_lock:
                self._links.discard(entry)
            link.close()
            try:
                tls.close()
            except OSError:
                pass
            log.info("%s: disconnected", peer)

    def _frames(self, tls: TlsStream, link: Any, peer: str) -> None:
        reader = wire.FrameReader(self.limits.max_message)
        tls.set_timeout(self.limits.idle_timeout)
        while not self._stop.is_set():
            try:
                data = tls.recv()
            except socket.timeout:
                # Decide and leave under one lock: two idle links of one application timing out
                # together would otherwise each see the other and both go, ending it.
                with self._idle_lock:
                    if not link.close_if_idle():
                        continue  # the application's last link, holding its login or objects
                log.info("%s: idle for %.0f s, closing", peer, self.limits.idle_timeout)
                return
            except (ssl.SSLError, OSError):
                return
            if not data:
                if reader.buf:
                    log.warning("%s: connection closed with an unfinished frame (%d bytes)", peer, len(reader.buf))
                return
            reader.feed(data)
            while True:
                try:
                    frame = reader.next_frame()
                except wire.WireError as e:
                    log.warning("%s: %s; closing", peer, e)
                    self._send(tls, error_frame("ERRR", ck.CKR_ARGUMENTS_BAD, str(e)))
                    return
                if frame is None:
                    break
                with self._busy_lock:
                    self._busy += 1
                try:
                    reply = link.handle(frame)
                    sent = self._send(tls, reply)  # busy until the reply is out: stop() waits for it
                finally:
                    with self._busy_lock:
                        self._busy -= 1
                if not sent:
                    return

    @staticmethod
    def _linger_close(raw: socket.socket) -> None:
        """Close after a refused handshake without resetting the connection: with TLS 1.3 the
        client may already have sent its first frame, and closing with it unread would reset
        the connection and lose the alert that tells the client why (certificate required,
        unknown CA). Drain for a moment instead."""
        try:
            raw.shutdown(socket.SHUT_WR)
            raw.settimeout(1.0)
            for _ in range(16):
                if not raw.recv(65536):
                    break
        except OSError:
            pass
        raw.close()

    @staticmethod
    def _send(tls: TlsStream, data: bytes) -> bool:
        try:
            tls.sendall(data)
            return True
        except (ssl.SSLError, OSError):
            return False


def run(state_dir: str, host: str, port: int, admin_port: int | None, *, pid_file: str | None = None,
        limits: Limits | None = None) -> int:
    """Serve until SIGTERM or SIGINT (used by `vhsm serve`)."""
    server = Server(state_dir, host, port, admin_port, limits)
    server.bind()
    heartbeat = cluster.start_heartbeat(server)  # None unless the state is a cluster node

    def stop() -> None:
        server.stop()
        if heartbeat is not None:
            heartbeat.stop()
    return serve_until_signalled(server.serve_forever, server._stop.set, stop, pid_file)


def serve_until_signalled(serve: Callable[[], None], request_stop: Callable[[], None], stop: Callable[[], None],
                          pid_file: str | None) -> int:
    """Write the pid file, serve until SIGTERM or SIGINT calls `request_stop`, then `stop`
    and remove the pid file (one server process, or the parent of `--workers`)."""
    if pid_file:
        with open(pid_file, "w") as f:
            f.write(f"{os.getpid()}\n")

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        serve()
    finally:
        stop()
        if pid_file:
            try:
                os.unlink(pid_file)
            except OSError:
                pass
        log.info("stopped")
    return 0
