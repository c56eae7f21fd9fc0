"""Per-role policy: the command whitelist and the key slot ranges.

Every command passes `authorize` before its handler runs, whichever transport carried it.
"""
from __future__ import annotations

from typing import Protocol

from fxpkcs11 import ck
from vhsm.commands.catalog import CommandInfo
from vhsm.excrypt import DeviceError
from vhsm.factory import ADMINISTRATOR, ALL_SLOTS, KEY_TABLE_SLOTS

# The CKR a whitelist refusal maps to: CKR_FUNCTION_FAILED is the one failure code every
# PKCS #11 function may return; the log line carries the command, role and fix.
DENIED = ck.CKR_FUNCTION_FAILED


LEARN = "learn"  # role setting: the learn-mode epoch while the partition is learning


class Recorder(Protocol):
    def record_learned(self, role: str, epoch: str, code: str) -> None: ...
    def record_denied(self, identity: str | None, role: str, code: str, text: str) -> None: ...


def learning(role: dict) -> str | None:
    return role["settings"].get(LEARN)


def authorize(role: dict, info: CommandInfo, recorder: Recorder | None = None,
              identity: str | None = None) -> None:
    """Refuse a command outside the role's whitelist. A partition in learn mode runs every
    command and each one it uses is recorded; every refusal is recorded too."""
    if info.session_control:
        return
    epoch = learning(role)
    if epoch:
        if recorder is not None:
            recorder.record_learned(role["name"], epoch, info.code)
        return
    if info.code in (role.get("command_set") or role["commands"]):
        return
    name = role["name"]
    text = (f"command {info.code} is not enabled for role {name!r}; enable it with "
            f"`vhsm role modify --name \"{name}\" --add-perm Excrypt:{info.code}`")
    if recorder is not None:
        recorder.record_denied(identity, name, info.code, text)
    raise DeviceError(DENIED, text)


def slot_ranges(role: dict) -> list[tuple[int, int]]:
    """Where this role's new keys go."""
    ranges = [tuple(r) for r in role["key_ranges"]]
    if not ranges and ALL_SLOTS in role["perms"]:
        return [(0, KEY_TABLE_SLOTS - 1)]
    return ranges


def may_use(role: dict, slot: int, owner: str) -> bool:
    """Whether a role reaches a key table slot. The device's own keys (TLS CA and port keys,
    owned by the Administrator role) never reach an application; otherwise a key belongs to
    the partition that made it, inside that partition's ranges, or to a role with All Slots."""
    if owner == ADMINISTRATOR:
        return False
    if ALL_SLOTS in role["perms"]:
        return True
    return owner == role["name"] and any(lo <= slot <= hi for lo, hi in role["key_ranges"])
