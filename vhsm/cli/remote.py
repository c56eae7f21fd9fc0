"""The admin shell's side of `connect tcp`: the same operations as a local AdminSession,
carried to a running `vhsm serve` over its management port (mutual TLS)."""
from __future__ import annotations

import inspect
from typing import Any, Callable

from fxpkcs11.link import Link, LinkError
from fxpkcs11.tlsclient import ClientTls, TlsConfigError, client_context
from vhsm.admin import REMOTE_METHODS, AdminError, AdminSession, Outcome
from vhsm.excrypt import Command, Tag

TIMEOUT = 60.0


class RemoteAdminSession:
    def __init__(self, host: str, port: int, *, ca: list[str], cert: str | None, key: str | None,
                 key_pass: str | None) -> None:
        try:
            ctx = client_context(ClientTls(list(ca), cert, key, key_pass, anonymous=False))
        except TlsConfigError as e:
            raise AdminError("connection", str(e)) from None
        try:
            self.link = Link(host, port, ctx, connect_timeout=10.0, reply_timeout=TIMEOUT)
        except LinkError as e:
            raise AdminError("connection", str(e)) from None

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in REMOTE_METHODS:
            raise AttributeError(name)
        signature = inspect.signature(getattr(AdminSession, name))

        def call(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(None, *args, **kwargs)
            params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in bound.arguments.items()
                      if k != "self"}
            try:
                reply = self.link.call(Command("ADMN", {Tag.ADMIN_METHOD: name, Tag.ADMIN_ARGS: params}))
            except LinkError as e:
                raise AdminError("connection", str(e)) from None
            if not reply.ok:
                raise AdminError(reply.fields.get(Tag.ADMIN_RULE, "device"), reply.error_text)
            result = reply.fields.get(Tag.ADMIN_RESULT)
            if isinstance(result, dict) and set(result) == {"text", "data"}:
                return Outcome(result["text"], result["data"])
            return result
        return call

    def close(self) -> None:
        self.link.close()
