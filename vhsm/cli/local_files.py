"""Files on the administrator's side: certificates, CSRs and the FTK's card files. The shell
reads and writes them; the device (local or over the network) only sees their contents."""
from __future__ import annotations

from vhsm import shares
from vhsm.admin import AdminError


def read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise AdminError("file", f"cannot read {path}: {e.strerror}") from None


def write(path: str, data: bytes) -> None:
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise AdminError("file", f"cannot write {path}: {e.strerror}") from None


def card_folder(folder: str) -> None:
    """Make sure the cards can be written before the device loads the FTK they back up: a
    folder that cannot take them must refuse the command, not leave an FTK without cards."""
    import os
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError as e:
        raise AdminError("major key", f"cannot write the cards to {folder}: {e.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise AdminError("major key", f"cannot write the cards to {folder}: permission denied")


def write_cards(folder: str, cards: list[tuple[str, bytes]]) -> list[str]:
    try:
        return shares.write_cards(folder, [(name, bytes(data)) for name, data in cards])
    except OSError as e:
        raise AdminError("major key", f"cannot write the cards to {folder}: {e.strerror}") from None


def read_cards(folder: str, key: str) -> list[tuple[str, bytes]]:
    try:
        return shares.read_cards(folder, key)
    except shares.ShareError as e:
        raise AdminError("major key", str(e)) from None


def check_writable(path: str) -> None:
    """Refuse before the device acts when its result could not be saved."""
    import os
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK) or (
            os.path.exists(path) and not os.access(path, os.W_OK)):
        raise AdminError("file", f"cannot write {path}")
