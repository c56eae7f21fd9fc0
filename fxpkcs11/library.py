"""Slots, tokens, sessions and login state: the PKCS #11 library model.

One Token per configured <HSM> block; it owns the device connection and the login state
that all sessions on it share. Sessions hold operation state (see operations.py).
"""
from __future__ import annotations

import itertools
import os
import threading
from typing import Any

from fxpkcs11 import ck
from fxpkcs11.config import Config, HsmConfig
from fxpkcs11.errors import CKRError
from fxpkcs11.log import log
from fxpkcs11.operations import Operation
from vhsm.excrypt import Tag

LIBRARY_VERSION = (0, 1)
MANUFACTURER = "Futurex"
MODEL = "Vectera Plus"


class Token:
    def __init__(self, hsm: HsmConfig) -> None:
        self.hsm = hsm
        self.slot_id = hsm.slot
        self.user: int | None = None      # CKU_USER or CKU_SO while logged in
        self.identity: str | None = None  # the identity logged in
        self._transport: Any = None
        self._lock = threading.Lock()
        self.login_lock = threading.RLock()  # login state changes, one at a time
        self.sessions: set[int] = set()

    @property
    def transport(self) -> Any:
        t = self._transport
        if t is None:
            with self._lock:
                if self._transport is None:
                    self._transport = self._connect()
                t = self._transport
        return t

    def _connect(self) -> Any:
        if self.hsm.embedded:
            from fxpkcs11.transport import InProcessTransport
            return InProcessTransport(self.hsm.vhsm_state)
        from fxpkcs11.network import NetworkTransport
        return NetworkTransport(self.hsm)

    def call(self, code: str, fields: dict[str, Any]) -> dict[str, Any]:
        return self.transport.call(code, fields)

    @property
    def so_identity(self) -> str | None:
        """The security officer's identity: <SO-OPR>, else "<CRYPTO-OPR>-so"."""
        if self.hsm.so_opr:
            return self.hsm.so_opr
        return f"{self.hsm.crypto_opr}-so" if self.hsm.crypto_opr else None

    def fixed_identity(self, user_type: int) -> str | None:
        return self.so_identity if user_type == ck.CKU_SO else self.hsm.crypto_opr

    def identity_and_password(self, pin: bytes, user_type: int = ck.CKU_USER) -> tuple[str, str]:
        """Who a PIN logs in and with which password: the configured identity for the user
        type (<CRYPTO-OPR>, or <SO-OPR> for CKU_SO) with the PIN as its password; with none
        configured, the PIN is IDENTITY:PASSWORD."""
        text = pin_text(pin)
        fixed = self.fixed_identity(user_type)
        if fixed:
            return fixed, text
        name, sep, password = text.partition(":")
        if not sep:
            tag = "<SO-OPR>" if user_type == ck.CKU_SO else "<CRYPTO-OPR>"
            raise CKRError(ck.CKR_PIN_INCORRECT,
                           f"slot {self.slot_id}: no {tag} is configured, so the PIN must be IDENTITY:PASSWORD")
        return name, password

    def login(self, pin: bytes, user_type: int = ck.CKU_USER, username: str | None = None) -> None:
        if username:
            name, password = username, pin_text(pin)
        else:
            name, password = self.identity_and_password(pin, user_type)
        self.transport.login(name, password, user_type)
        self.user, self.identity = user_type, name

    def logout(self) -> None:
        self.user = self.identity = None
        self.transport.logout()

    def close(self) -> None:
        if self._transport is not None:
            try:
                self._transport.close()
            finally:
                self._transport = None
        self.user = self.identity = None
        self.sessions.clear()


def pin_text(pin: bytes) -> str:
    try:
        return pin.decode("utf-8")
    except UnicodeDecodeError:
        raise CKRError(ck.CKR_PIN_INCORRECT, "PIN is not UTF-8") from None


class Session:
    __slots__ = ("handle", "token", "rw", "ops", "find", "channel")

    def __init__(self, handle: int, token: Token, rw: bool, channel: Any) -> None:
        self.handle = handle
        self.token = token
        self.rw = rw
        self.ops: dict[str, Operation] = {}
        self.find: list[int] | None = None
        self.channel = channel  # where this session's commands go (its own link on a network HSM)

    @property
    def state(self) -> int:
        if self.token.user == ck.CKU_SO:
            return ck.CKS_RW_SO_FUNCTIONS
        user = self.token.user is not None
        if self.rw:
            return ck.CKS_RW_USER_FUNCTIONS if user else ck.CKS_RW_PUBLIC_SESSION
        return ck.CKS_RO_USER_FUNCTIONS if user else ck.CKS_RO_PUBLIC_SESSION

    def call(self, code: str, fields: dict[str, Any]) -> dict[str, Any]:
        return self.channel.call(code, fields)

    def begin(self, kind: str, op: Operation) -> None:
        if kind in self.ops:
            raise CKRError(ck.CKR_OPERATION_ACTIVE, f"a {kind} operation is already active")
        self.ops[kind] = op

    def op(self, kind: str) -> Operation:
        op = self.ops.get(kind)
        if op is None:
            raise CKRError(ck.CKR_OPERATION_NOT_INITIALIZED, f"no {kind} operation is active")
        return op

    def end(self, kind: str) -> None:
        op = self.ops.pop(kind, None)
        if op is not None and op.cid and not op.finished:
            try:
                self.call(op.code, {Tag.CONTEXT: op.cid, Tag.PHASE: "A"})
            except CKRError:
                pass


class Library:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.pid = os.getpid()
        self.tokens: dict[int, Token] = {h.slot: Token(h) for h in config.hsms}
        self.sessions: dict[int, Session] = {}
        self._handles = itertools.count(1)
        self._lock = threading.Lock()

    def token(self, slot_id: int) -> Token:
        t = self.tokens.get(slot_id)
        if t is None:
            raise CKRError(ck.CKR_SLOT_ID_INVALID, f"no slot {slot_id}")
        return t

    def session(self, handle: int) -> Session:
        s = self.sessions.get(handle)
        if s is None:
            raise CKRError(ck.CKR_SESSION_HANDLE_INVALID, f"no session {handle}")
        return s

    def open_session(self, token: Token, rw: bool) -> Session:
        handle = next(self._handles)
        channel = token.transport.channel()
        try:
            channel.call("SESO", {Tag.SESSION: handle})
        except CKRError:
            token.transport.release(channel)
            raise
        s = Session(handle, token, rw, channel)
        with self._lock:
            self.sessions[handle] = s
            token.sessions.add(handle)
        if token.hsm.crypto_opr_pass and token.user is None:
            with token.login_lock:
                if token.user is None:
                    try:
                        token.login(token.hsm.crypto_opr_pass.encode())
                    except CKRError as e:
                        log.error("slot %d: automatic login of %r failed: %s", token.slot_id, token.hsm.crypto_opr,
                                  e.text)
        return s

    def close_session(self, s: Session) -> None:
        with self._lock:
            if self.sessions.pop(s.handle, None) is None:
                raise CKRError(ck.CKR_SESSION_HANDLE_INVALID, f"no session {s.handle}")
            s.token.sessions.discard(s.handle)
            last = not s.token.sessions
        s.ops.clear()
        try:
            s.call("SESC", {Tag.SESSION: s.handle})
        except CKRError as e:
            # The session is gone on this side whatever happened to its link.
            log.info("session %d closed locally: %s", s.handle, e.text)
        finally:
            s.token.transport.release(s.channel)
        if last:
            with s.token.login_lock:  # a session opened meanwhile keeps the login
                if s.token.user is not None and not s.token.sessions:
                    try:
                        s.token.logout()
                    except CKRError as e:
                        log.info("logout after the last session: %s", e.text)

    def close_all(self, token: Token) -> None:
        with self._lock:
            sessions = [self.sessions.pop(h) for h in list(token.sessions) if h in self.sessions]
            token.sessions.clear()
        for s in sessions:
            s.ops.clear()
            try:
                s.call("SESC", {Tag.SESSION: s.handle})
            except CKRError as e:
                log.info("session %d closed locally: %s", s.handle, e.text)
            finally:
                token.transport.release(s.channel)
        with token.login_lock:
            if token.user is not None and not token.sessions:
                try:
                    token.logout()
                except CKRError as e:
                    log.info("logout: %s", e.text)

    def finalize(self) -> None:
        for t in self.tokens.values():
            try:
                t.close()
            except CKRError:
                pass
        self.sessions.clear()


def pad(text: str, size: int) -> bytes:
    return text.encode("utf-8")[:size].ljust(size, b" ")
