"""The factory state of a new device: two administrators, two roles, no FTK."""
from __future__ import annotations

import secrets
from typing import Any

from vhsm.commands.catalog import whitelistable
from vhsm.passwords import hash_password

ADMINISTRATOR = "Administrator"
TRANSACTION_PROCESSING = "Transaction Processing"
ROLE_ALIASES = {"anonymous": TRANSACTION_PROCESSING}
DEFAULT_ADMINS = ("Admin1", "Admin2")
DEFAULT_PASSWORD = "safest"
KEY_TABLE_SLOTS = 1_000_000  # slots 0 .. KEY_TABLE_SLOTS-1
ALL_SLOTS = "Keys:All Slots"
FIRMWARE = "7.2.1.0-vHSM"


def canonical_role(name: str) -> str:
    return ROLE_ALIASES.get(name.lower(), name)


def ensure_initialized(store: Any) -> None:
    """Give a new state its factory contents; an initialised state is left alone."""
    if store.get_meta("serial") is not None:
        return
    if store.get_role(ADMINISTRATOR) is None:
        store.put_role({"name": ADMINISTRATOR, "kind": "admin", "perms": ["Admin"], "key_ranges": [],
                        "commands": [], "settings": {"logins_required": 2}})
    if store.get_role(TRANSACTION_PROCESSING) is None:
        # Out of the box the Transaction Processing role reaches every slot and command;
        # section 6.5.1 of the guide hardens it.
        store.put_role({"name": TRANSACTION_PROCESSING, "kind": "transaction", "perms": ["Keys", ALL_SLOTS],
                        "key_ranges": [], "commands": whitelistable(), "settings": {}})
    for name in DEFAULT_ADMINS:
        if store.get_identity(name) is None:
            store.put_identity({"name": name, "role": ADMINISTRATOR,
                                "password_hash": hash_password(DEFAULT_PASSWORD),
                                "flags": {"default_password": True}, "failed_logins": 0})
    store.set_meta("firmware", FIRMWARE)
    store.set_meta("serial", "VP" + secrets.token_hex(5).upper())
