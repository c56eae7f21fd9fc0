"""TLS over a blocking socket through memory BIOs, for both ends of an Excrypt link.

An `ssl.SSLSocket` with a timeout polls before every write and every empty read, reads each
record in two system calls and allocates its receive buffer per call. Here the socket stays
blocking, the kernel enforces the timeout (SO_RCVTIMEO / SO_SNDTIMEO), and each message
costs one send and, usually, one receive.

A receive first polls the socket for a short while before it blocks (see `_poll`): on a
virtual machine, a thread that blocks puts its idle vCPU to sleep, and waking it again costs
tens of microseconds on each side of every round trip, more than the work the message asks.
"""
from __future__ import annotations

import mmap
import os
import socket
import ssl
import struct
import time

_CHUNK = 65536  # below malloc's mmap threshold: reading never maps fresh memory


def _spin_setting(text: str | None, default_us: int = 500) -> float:
    """VHSM_SPIN_US in seconds; a value that is not a whole number of microseconds keeps the
    default rather than failing the import of the library in its host."""
    try:
        return max(0, int(text)) / 1e6 if text is not None else default_us / 1e6
    except ValueError:
        return default_us / 1e6


SPIN_S = _spin_setting(os.environ.get("VHSM_SPIN_US"))  # the longest a receive polls before it blocks
_PROBE_EVERY = 32  # a stream whose waits run long still polls once in this many receives
_ALONE_S = 0.005  # polling needs this stream to be the only busy one for this long
# The stream that began a receive last and when, then the same for the last other stream:
# this process's own, or shared by a server's worker processes (share_between_processes).
_BOARD = struct.Struct("=QdQd")
_LAST = struct.Struct("=Q")
_board: bytearray | mmap.mmap = bytearray(_BOARD.size)
_PREEMPTED_S = 150e-6  # a gap this long inside the polling loop: the core was wanted elsewhere
_BACK_OFF_S = 0.05
_quiet_until = 0.0  # no polling in this process before then


def share_between_processes() -> None:
    """Called before a server forks its workers: a worker then polls only while no other
    worker is busy either, so the workers leave the cores to the work."""
    global _board
    _board = mmap.mmap(-1, _BOARD.size)


class TlsStream:
    def __init__(self, raw: socket.socket, ctx: ssl.SSLContext, *, server_side: bool,
                 server_hostname: str | None = None, timeout: float | None = None) -> None:
        self.raw = raw
        raw.settimeout(None)
        self.set_timeout(timeout)
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.ssl = ctx.wrap_bio(self._in, self._out, server_side=server_side, server_hostname=server_hostname)
        self._buf = bytearray(_CHUNK)
        self._view = memoryview(self._buf)
        self._eof = False
        self._unread = False
        self._key = ((os.getpid() << 40) ^ id(self)) & 0xFFFFFFFFFFFFFFFF
        self._waits: dict = {}  # recent receive waits (seconds, moving average) by what is awaited
        self._receives = 0

    def set_timeout(self, seconds: float | None) -> None:
        """How long one receive or send may block; None waits for ever."""
        usec = 0 if not seconds else max(1, int(seconds * 1_000_000))
        tv = struct.pack("ll", usec // 1_000_000, usec % 1_000_000)
        self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)

    def handshake(self) -> None:
        """Raises ssl.SSLError for a refused handshake (after sending the alert that says why),
        socket.timeout, or OSError."""
        while True:
            try:
                self.ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill():
                    raise ssl.SSLEOFError("the peer closed the connection during the handshake") from None
            except ssl.SSLError:
                try:
                    self._flush()
                except OSError:
                    pass
                raise
        self._flush()
        # The handshake may have taken in the peer's first records too, where neither the
        # BIO nor SSL_pending shows them: the first read must look.
        self._unread = True

    def getpeercert(self) -> bytes | None:
        return self.ssl.getpeercert(binary_form=True)

    def version(self) -> str | None:
        return self.ssl.version()

    def cipher(self) -> tuple[str, str, int] | None:
        return self.ssl.cipher()

    def peer_chain(self) -> list[bytes]:
        """The peer's certificate chain as verified (DER), leaf first; the leaf alone when
        this Python cannot tell."""
        try:
            return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in self.ssl._sslobj.get_verified_chain()]  # type: ignore[attr-defined]
        except AttributeError:
            leaf = self.getpeercert()
            return [leaf] if leaf else []

    def sendall(self, data: bytes) -> None:
        self.ssl.write(data)
        self._flush()

    def recv(self, awaiting: object = None) -> bytes:
        """The next application data, waiting for it; b"" when the peer closed. `awaiting`
        names what is expected (a command's reply): waits are learnt per name, so a slow
        reply does not stop the polling for quick ones."""
        while True:
            if not (self._in.pending or self._unread or self.ssl.pending()):
                # Nothing buffered: wait for bytes first instead of paying for SSLWantReadError.
                if self._out.pending:
                    self._flush()
                if not self._fill(awaiting):
                    return b""
            try:
                return self.ssl.read(_CHUNK)
            except ssl.SSLWantReadError:
                self._unread = False
                if self._out.pending:  # a post-handshake message (key update) wants an answer
                    self._flush()
                if not self._fill(awaiting):
                    return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def pending(self) -> bool:
        """Bytes already received and not yet read: a reply, or the peer's close."""
        return bool(self.ssl.pending() or self._in.pending)

    def _flush(self) -> None:
        data = self._out.read()
        if data:
            try:
                self.raw.sendall(data)
            except BlockingIOError:
                raise socket.timeout("send timed out") from None

    def _fill(self, awaiting: object = None) -> bool:
        if self._eof:
            return False
        start = time.perf_counter()
        try:
            n = self._poll(start, awaiting)
            if n is None:
                n = self.raw.recv_into(self._buf)
        except BlockingIOError:
            raise socket.timeout("receive timed out") from None
        except ConnectionResetError:
            n = 0  # gone, as a close is (a peer that closes with our bytes unread resets)
        if n == 0:
            self._eof = True
            self._in.write_eof()
            return False
        waits = self._waits
        waits[awaiting] = 0.75 * waits.get(awaiting, 0.0) + 0.25 * (time.perf_counter() - start)
        self._in.write(self._view[:n])
        return True

    def _poll(self, start: float, awaiting: object) -> int | None:
        """Bytes read without blocking, or None when none came within SPIN_S. Polls only
        while this stream's recent waits were short (a reply that takes a millisecond is not
        worth a core), and only while no other stream of this process is in use: threads
        that poll side by side would fight over the interpreter lock and the cores that the
        work itself needs."""
        global _quiet_until
        me, board = self._key, _board
        last, last_at, other, other_at = _BOARD.unpack_from(board)
        if last == me:
            _BOARD.pack_into(board, 0, me, start, other, other_at)
        else:
            _BOARD.pack_into(board, 0, me, start, last, last_at)
            other_at = last_at
        alone = start - other_at > _ALONE_S
        self._receives += 1
        if (not SPIN_S or not alone or start < _quiet_until
                or (self._waits.get(awaiting, 0.0) > SPIN_S and self._receives % _PROBE_EVERY)):
            return None
        recv_into, buf, flags, clock = self.raw.recv_into, self._buf, socket.MSG_DONTWAIT, time.perf_counter
        end = start + SPIN_S
        before = start
        while True:
            try:
                return recv_into(buf, 0, flags)
            except BlockingIOError:
                now = clock()
                if now - before > _PREEMPTED_S:  # another thread or process needed this core
                    _quiet_until = now + _BACK_OFF_S
                    return None
                if now > end or _LAST.unpack_from(board)[0] != me:
                    return None
                before = now
            except InterruptedError:
                continue

    def close(self) -> None:
        try:
            self.raw.close()
        except OSError:
            pass
