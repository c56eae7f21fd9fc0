"""One TLS connection to an HSM port: send a command frame, read its reply frame."""
from __future__ import annotations

import select
import socket
import ssl
import threading
import time

from vhsm import wire
from vhsm.tlsstream import TlsStream
from vhsm.excrypt import Command, Reply, Tag


def _openssl_err_clear():
    """ERR_clear_error of the libcrypto the ssl module uses, or None.

    The library runs inside its host's process and so shares the host's OpenSSL and its
    per-thread error queue. A host that uses OpenSSL itself (OpenSSL's pkcs11 engine, for one,
    queues an error for every CKR it handles, such as CKR_ATTRIBUTE_TYPE_INVALID) leaves
    entries there; SSL_get_error() then reports a read that merely has to wait for the reply as
    a fatal SSL error ("connection lost: Attribute type invalid"). OpenSSL requires the queue
    to be empty before a TLS I/O call, so each call clears it first."""
    import ctypes
    import ctypes.util
    try:
        import _ssl
        candidates = [getattr(_ssl, "__file__", None), ctypes.util.find_library("crypto")]
    except ImportError:
        return None
    for path in candidates:
        if not path:
            continue
        try:
            fn = ctypes.CDLL(path).ERR_clear_error
        except (OSError, AttributeError):
            continue
        fn.restype, fn.argtypes = None, []
        return fn
    return None


_err_clear = _openssl_err_clear()


def clear_openssl_errors() -> None:
    if _err_clear is not None:
        _err_clear()


# A link that answered this recently cannot have been closed as idle: skip the readability probe.
FRESH = 0.5


class LinkError(Exception):
    """The connection failed or broke; the link cannot be used again."""


class ClosedUnanswered(LinkError):
    """The HSM closed the connection before any byte of the reply: it did not run the
    command (it closes only idle links, or after answering what it read when it stops)."""


class Link:
    def __init__(self, host: str, port: int, ctx: ssl.SSLContext, *, connect_timeout: float,
                 reply_timeout: float) -> None:
        self.host, self.port = host, port
        self.reply_timeout = reply_timeout
        self.lock = threading.Lock()
        self.alive = False
        try:
            raw = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as e:
            raise LinkError(f"{host}:{port}: cannot connect: {e.strerror or e}") from None
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            clear_openssl_errors()
            self.sock = TlsStream(raw, ctx, server_side=False, timeout=connect_timeout)
            self.sock.handshake()
        except (ssl.SSLError, OSError) as e:
            raw.close()
            raise LinkError(f"{host}:{port}: TLS handshake failed: {e}") from None
        self.sock.set_timeout(reply_timeout)
        self.reader = wire.FrameReader()
        self.last_used = time.monotonic()
        self.binary = False
        self.alive = True

    def call(self, cmd: Command) -> Reply:
        data = wire.encode_command(cmd, binary=self.binary)
        awaiting = (cmd.code, cmd.fields.get(Tag.PHASE))  # what the stream learns reply waits by
        with self.lock:
            if not self.alive:
                raise LinkError(f"{self.host}:{self.port}: connection is closed")
            try:
                # The host's stale OpenSSL errors would fail this call. The queue is per thread
                # and no host code runs on this thread until the call returns: once is enough.
                clear_openssl_errors()
                try:
                    self.sock.sendall(data)
                except (ssl.SSLError, OSError) as e:
                    raise LinkError(f"{self.host}:{self.port}: connection lost: {self._reason(e)}") from None
                answered = False
                while True:
                    frame = self.reader.next_frame()
                    if frame is not None:
                        self.last_used = time.monotonic()
                        reply = wire.decode_reply(frame)
                        if reply.fields.get(Tag.FRAMING) == wire.BINARY:
                            self.binary = True  # this server reads binary envelopes
                        return reply
                    chunk = self.sock.recv(awaiting)
                    if not chunk:
                        kind = LinkError if answered else ClosedUnanswered
                        raise kind(f"{self.host}:{self.port}: the HSM closed the connection")
                    answered = True
                    self.reader.feed(chunk)
            except socket.timeout:
                self._kill()
                raise LinkError(f"{self.host}:{self.port}: no reply within {self.reply_timeout:g} s") from None
            except (ssl.SSLError, OSError) as e:
                self._kill()
                raise LinkError(f"{self.host}:{self.port}: connection lost: {e}") from None
            except wire.WireError as e:
                self._kill()
                raise LinkError(f"{self.host}:{self.port}: unreadable reply: {e}") from None
            except LinkError:
                self._kill()
                raise

    def _reason(self, error: Exception) -> Exception:
        """Why a send failed. With TLS 1.3 the client's handshake ends before the HSM has
        checked the client certificate; a refusal then shows as a failed first send, and the
        alert that says why (certificate required, unknown CA) is still there to read."""
        try:
            self.sock.set_timeout(0.5)
            self.sock.recv()
        except ssl.SSLError as alert:
            if "ALERT" in str(alert).upper():
                return alert
        except OSError:
            pass
        return error

    def usable(self, *, probe: bool = False) -> bool:
        """Whether a link that sat unused can take a call. An idle link has nothing to read:
        anything readable is the HSM closing it (restarted, killed, idle timeout); such a link
        is closed and False returned. A link busy in another thread's call counts as usable.
        A link that answered within FRESH seconds is not probed unless `probe` (a pooled link
        may have sat there while the HSM restarted)."""
        if not probe and time.monotonic() - self.last_used < FRESH:
            return self.alive
        if not self.lock.acquire(blocking=False):
            return self.alive
        try:
            if not self.alive:
                return False
            try:
                readable = self.sock.pending() or bool(select.select([self.sock.raw], [], [], 0)[0])
            except (OSError, ValueError):
                readable = True
            if readable:
                self._kill()
            return not readable
        finally:
            self.lock.release()

    def _kill(self) -> None:
        self.alive = False
        try:
            self.sock.close()
        except OSError:
            pass

    def close(self) -> None:
        with self.lock:
            self._kill()
