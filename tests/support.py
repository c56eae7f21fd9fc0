"""Shared test helpers: build the library, make a configured vHSM state, write configs."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "fxpkcs11", "lib", "libfxpkcs11.so")
PIN = "safest"
IDENTITY = "crypto1"
PARTITION = "App"


def build_library() -> str:
    if not os.path.exists(LIB):
        subprocess.run([sys.executable, os.path.join(ROOT, "native", "build.py"), os.path.dirname(LIB)],
                       check=True, stdout=subprocess.DEVNULL)
    return LIB


@dataclass
class State:
    dir: str
    identity: str = IDENTITY
    password: str = PIN
    partition: str = PARTITION


def make_state(path: str, *, ftk: bool = True, partitions: dict[str, tuple[int, int]] | None = None,
               commands: list[str] | None = None) -> State:
    """A device with an FTK, application partitions with their key ranges, and one identity
    per partition (crypto1 for App, then <partition-lower>1 for the others)."""
    from vhsm.commands.catalog import whitelistable
    from vhsm.device import VirtualHSM
    from vhsm.majorkeys import generate_ftk
    from vhsm.passwords import hash_password

    dev = VirtualHSM(path)
    if ftk:
        dev.load_ftk(generate_ftk())
    for name, rng in (partitions or {PARTITION: (0, 999)}).items():
        dev.store.put_role({"name": name, "kind": "application", "perms": ["Keys", "Keys:Authorized"],
                            "key_ranges": [rng], "commands": list(commands or whitelistable()), "settings": {}})
        ident = IDENTITY if name == PARTITION else name.lower() + "1"
        dev.store.put_identity({"name": ident, "role": name, "password_hash": hash_password(PIN),
                                "flags": {}, "failed_logins": 0})
    dev.close()
    return State(path)


def write_config(path: str, state_dir: str, *, identity: str | None = IDENTITY, auto_login: str | None = None,
                 log_file: str | None = None, log_mode: str = "INFO", label: str = "Futurex",
                 extra: str = "") -> str:
    lines = ["<HSM>", "  <SLOT> 0 </SLOT>", f"  <LABEL> {label} </LABEL>", f"  <VHSM-STATE> {state_dir} </VHSM-STATE>"]
    if identity:
        lines.append(f"  <CRYPTO-OPR> {identity} </CRYPTO-OPR>")
    if auto_login:
        lines.append(f"  <CRYPTO-OPR-PASS> {auto_login} </CRYPTO-OPR-PASS>")
    lines.append("</HSM>")
    lines.append(f"<LOG-MODE> {log_mode} </LOG-MODE>")
    lines.append(f"<LOG-FILE> {log_file or os.path.join(os.path.dirname(path), 'fxpkcs11.log')} </LOG-FILE>")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n" + textwrap.dedent(extra))
    return path


def child_env(cfg: str, **extra: str) -> dict[str, str]:
    """An environment like a plain shell's: no virtualenv, no PYTHONPATH, our config."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = ":".join(p for p in env.get("PATH", "").split(":") if ".venv" not in p)
    env["FXPKCS11_CFG"] = cfg
    env.update(extra)
    return env
