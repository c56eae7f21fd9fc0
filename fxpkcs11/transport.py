"""How the provider reaches a device. The embedded default runs the device in this
process and hands it command objects; a network transport adds only the framing."""
from __future__ import annotations

import threading
from typing import Any

from fxpkcs11 import ck
from fxpkcs11.errors import CKRError
from fxpkcs11.log import log, trace
import fxpkcs11.log as logmod
from vhsm.excrypt import DeviceError, Tag

_devices: dict[str, Any] = {}
_devices_lock = threading.Lock()


def embedded_device(state_dir: str) -> Any:
    """One VirtualHSM per state directory per process, shared by its slots."""
    from vhsm.device import VirtualHSM
    with _devices_lock:
        dev = _devices.get(state_dir)
        if dev is None:
            try:
                dev = VirtualHSM(state_dir)
            except DeviceError as e:
                raise CKRError(ck.CKR_DEVICE_ERROR, f"virtual HSM at {state_dir}: {e.text}") from None
            _devices[state_dir] = dev
        return dev


def forget_devices() -> None:
    """After fork the parent's devices (and their database handles) are not ours to use."""
    with _devices_lock:
        _devices.clear()


def check_reply(code: str, reply: Any) -> dict[str, Any]:
    """A reply's fields, or its failure as a CKRError (logged)."""
    if logmod.tracing:
        trace("excrypt %s -> %s", code, reply.status if reply.ok else f"{reply.status} {reply.error_text}")
    if reply.ok:
        return reply.fields
    text = reply.error_text
    if reply.reason in (ck.CKR_FUNCTION_FAILED, ck.CKR_DEVICE_ERROR, ck.CKR_DEVICE_MEMORY):
        log.error("%s: %s", code, text)
    else:
        log.info("%s: %s", code, text)
    raise CKRError(reply.reason, f"{code}: {text}")


class InProcessTransport:
    """The embedded device: one application per token, every session on it."""

    def __init__(self, state_dir: str) -> None:
        self.device = embedded_device(state_dir)
        self.conn = self.device.connect()

    def call(self, code: str, fields: dict[str, Any]) -> dict[str, Any]:
        try:
            out = self.conn.run(code, fields)
        except DeviceError as e:
            return check_reply(code, e.reply(code))  # raises the refusal as a CKRError, logged
        if logmod.tracing:
            trace("excrypt %s -> Y", code)
        return out

    def channel(self) -> "InProcessTransport":
        return self

    def release(self, channel: Any) -> None:
        pass

    def login(self, name: str, password: str, user_type: int | None = None) -> None:
        fields = {Tag.USER: name, Tag.PASSWORD: password}
        if user_type is not None:
            fields[Tag.USER_TYPE] = user_type
        self.call("LOGI", fields)

    def password_changed(self, name: str, password: str) -> None:
        pass  # nothing kept: the one connection stays logged in

    def logout(self) -> None:
        self.call("LOGO", {})

    def close(self) -> None:
        self.device.leave(self.conn)
