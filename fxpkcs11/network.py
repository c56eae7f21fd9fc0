"""The network transport: TLS links to one or more `vhsm serve` production ports.

Each PKCS #11 session gets its own link (so sessions run in parallel); all links to one
server join one application there, which holds the login and the session objects. With
several addresses, <FX-LOAD-BALANCE> YES spreads new sessions round-robin over the servers
that answer; NO uses the first that answers (failover). A server that fails is skipped and
retried after a back-off. While logged in, the library keeps the identity's password in
memory so that a session landing on another server (or on a restarted one) can log in there.
A call on a session whose link broke fails with CKR_DEVICE_ERROR; new sessions reconnect.
"""
from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from fxpkcs11 import ck
from fxpkcs11.config import HsmConfig
from fxpkcs11.errors import CKRError
from fxpkcs11.link import ClosedUnanswered, Link, LinkError
from fxpkcs11.log import log
from fxpkcs11.tlsclient import ClientTls, TlsConfigError, client_context
from fxpkcs11.transport import check_reply
from vhsm.excrypt import Command, Tag

BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
IDLE_LINKS = 8


class Endpoint:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.app_id: str | None = None
        self.logged_in_app: str | None = None
        self.down_until = 0.0
        self.backoff = BACKOFF_FIRST
        self.idle: list[Link] = []
        self.lock = threading.Lock()

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    def failed(self) -> None:
        self.down_until = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)

    def recovered(self) -> None:
        self.down_until, self.backoff = 0.0, BACKOFF_FIRST


class Channel:
    """A link bound to one server's application; a session's own, or the token's."""

    def __init__(self, transport: "NetworkTransport", endpoint: Endpoint, link: Link) -> None:
        self.transport = transport
        self.endpoint = endpoint
        self.link = link
        self.app_id = endpoint.app_id  # the application this channel's session belongs to

    def call(self, code: str, fields: dict[str, Any]) -> dict[str, Any]:
        try:
            if not self.link.usable():
                self._rejoin()
            try:
                reply = self.link.call(Command(code, fields))
            except ClosedUnanswered:
                # Closed as idle just as the command went out: it did not run; send it again.
                self._rejoin()
                reply = self.link.call(Command(code, fields))
        except LinkError as e:
            log.error("%s: %s", code, e)
            raise CKRError(ck.CKR_DEVICE_ERROR, f"{code}: {e}") from None
        return check_reply(code, reply)

    def _rejoin(self) -> None:
        """The HSM closed this link while it sat idle. If the application still lives there
        (it dropped only a spare link), join it again on a new link: nothing was lost. If it
        is gone (the HSM restarted), the session's objects and operations went with it."""
        ep = self.endpoint
        app = self.app_id
        link = Link(ep.host, ep.port, self.transport.ctx, connect_timeout=self.transport.hsm.connect_timeout,
                    reply_timeout=self.transport.hsm.reply_timeout)
        reply = link.call(Command("APPJ", {Tag.APPLICATION: app or ""})) if app else None
        if reply is None or not reply.ok:
            link.close()
            raise LinkError(f"{ep}: the HSM no longer holds this session (restarted?)")
        self.link = link


class NetworkTransport:
    def __init__(self, hsm: HsmConfig) -> None:
        if not hsm.prod_enabled:
            raise CKRError(ck.CKR_DEVICE_ERROR, f"slot {hsm.slot}: <PROD-ENABLED> is NO")
        if not hsm.prod_tls_enabled:
            raise CKRError(ck.CKR_DEVICE_ERROR, f"slot {hsm.slot}: the production port requires TLS "
                                                "(<PROD-TLS-ENABLED> YES)")
        try:
            self.ctx = client_context(ClientTls(list(hsm.prod_tls_ca), hsm.prod_tls_cert, hsm.prod_tls_key,
                                                hsm.prod_tls_key_pass, hsm.prod_tls_anonymous))
        except TlsConfigError as e:
            log.error("slot %d: %s", hsm.slot, e)  # the slot cannot work: say why at the default log level
            raise CKRError(ck.CKR_DEVICE_ERROR, f"slot {hsm.slot}: {e}") from None
        self.hsm = hsm
        self.endpoints = [Endpoint(h, p) for h, p in hsm.endpoints()]
        self._rr = itertools.count()
        self._creds: tuple[str, str] | None = None
        self._lock = threading.Lock()
        self._token: Channel | None = None

    # ------------------------------------------------------------ channels
    def _candidates(self) -> list[Endpoint]:
        now = time.monotonic()
        up = [e for e in self.endpoints if e.down_until <= now]
        order = up or list(self.endpoints)  # all down: try them anyway
        if self.hsm.fx_load_balance and len(order) > 1:
            start = next(self._rr) % len(order)
            order = order[start:] + order[:start]
        return order

    def channel(self) -> Channel:
        errors = []
        for ep in self._candidates():
            try:
                return self._open(ep)
            except LinkError as e:
                ep.failed()
                errors.append(str(e))
                log.error("HSM %s unavailable, retried in %.0f s: %s", ep, ep.backoff, e)
        raise CKRError(ck.CKR_DEVICE_ERROR, "no HSM answered: " + "; ".join(errors))

    def _open(self, ep: Endpoint) -> Channel:
        with ep.lock:
            link = None
            while ep.idle:
                candidate = ep.idle.pop()
                if candidate.usable(probe=True):  # not one the HSM closed while it waited here
                    link = candidate
                    break
        if link is not None:
            return Channel(self, ep, link)
        link = Link(ep.host, ep.port, self.ctx, connect_timeout=self.hsm.connect_timeout,
                    reply_timeout=self.hsm.reply_timeout)
        try:
            self._attach(ep, link)
        except LinkError:
            link.close()
            raise
        ep.recovered()
        return Channel(self, ep, link)

    def _attach(self, ep: Endpoint, link: Link) -> None:
        """Join the server's application for this library, or start one (logging it in)."""
        with ep.lock:
            if ep.app_id is not None:
                reply = link.call(Command("APPJ", {Tag.APPLICATION: ep.app_id}))
                if reply.ok:
                    return
                log.info("HSM %s no longer knows this application (restarted?): starting a new one", ep)
            reply = link.call(Command("APPN", {}))
            if not reply.ok:
                raise LinkError(f"{ep}: the HSM refused a new application: {reply.error_text}")
            ep.app_id = reply.fields[Tag.APPLICATION]
            creds = self._creds
            if creds is not None:
                r = link.call(Command("LOGI", {Tag.USER: creds[0], Tag.PASSWORD: creds[1]}))
                if not r.ok:
                    raise LinkError(f"{ep}: login of {creds[0]!r} failed there: {r.error_text}")
                ep.logged_in_app = ep.app_id

    def release(self, channel: Any) -> None:
        if not isinstance(channel, Channel) or channel is self._token:
            return
        ep = channel.endpoint
        with ep.lock:
            if channel.link.alive and len(ep.idle) < IDLE_LINKS:
                ep.idle.append(channel.link)
                return
        channel.link.close()

    def _token_channel(self) -> Channel:
        ch = self._token
        # Always probed: after a restart the token channel starts a new application here,
        # where a session's channel can only report its loss.
        if ch is None or not ch.link.usable(probe=True):
            with self._lock:
                ch = self._token
                if ch is None or not ch.link.usable(probe=True):
                    ch = self._token = self.channel()
        return ch

    # ------------------------------------------------------------ the transport interface
    def call(self, code: str, fields: dict[str, Any]) -> dict[str, Any]:
        return self._token_channel().call(code, fields)

    def login(self, name: str, password: str, user_type: int | None = None) -> None:
        ch = self._token_channel()
        fields = {Tag.USER: name, Tag.PASSWORD: password}
        if user_type is not None:
            fields[Tag.USER_TYPE] = user_type  # re-logins elsewhere leave it out: the identity says which
        ch.call("LOGI", fields)
        self._creds = (name, password)
        ch.endpoint.logged_in_app = ch.endpoint.app_id
        for ep in self.endpoints:  # the other servers this library has sessions on
            if ep is ch.endpoint or ep.app_id is None or ep.logged_in_app == ep.app_id:
                continue
            try:
                other = self._open(ep)
                other.call("LOGI", {Tag.USER: name, Tag.PASSWORD: password})
                ep.logged_in_app = ep.app_id
                self.release(other)
            except (CKRError, LinkError) as e:
                log.error("HSM %s: login there failed: %s", ep, e)

    def password_changed(self, name: str, password: str) -> None:
        """C_SetPIN changed the logged-in identity's password: log in with the new one later."""
        if self._creds is not None and self._creds[0] == name:
            self._creds = (name, password)

    def logout(self) -> None:
        self._creds = None
        first_error: CKRError | None = None
        for ep in self.endpoints:
            if ep.app_id is None or ep.logged_in_app != ep.app_id:
                continue
            ep.logged_in_app = None
            try:
                ch = self._token_channel() if self._token and self._token.endpoint is ep else self._open(ep)
                ch.call("LOGO", {})
                self.release(ch)
            except (CKRError, LinkError) as e:
                first_error = first_error or (e if isinstance(e, CKRError) else CKRError(ck.CKR_DEVICE_ERROR, str(e)))
        if first_error is not None:
            raise first_error

    def close(self) -> None:
        self._creds = None
        for ep in self.endpoints:
            with ep.lock:
                for link in ep.idle:
                    link.close()
                ep.idle.clear()
            ep.app_id = ep.logged_in_app = None
        if self._token is not None:
            self._token.link.close()
            self._token = None
