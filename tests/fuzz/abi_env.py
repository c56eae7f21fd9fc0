"""What the hostile-call program and the entry-layer fuzzer share: a device with two
partitions behind two slots, and the compiled C program tests/c/hostile.c."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

from support import LIB, PIN, build_library, child_env, make_state  # noqa: E402

HOSTILE_SRC = os.path.join(TESTS, "c", "hostile.c")
PARTITIONS = {"App": (0, 999), "Other": (1000, 1999)}  # slot 0 and slot 1


@dataclass
class TwoSlotEnv:
    dir: str
    state: str
    cfg: str
    log: str


def make_two_slot_env(base: str) -> TwoSlotEnv:
    """Slot 0 logs in as crypto1 on partition App, slot 1 as other1 on partition Other,
    both on one embedded device; both PINs are support.PIN."""
    os.makedirs(base, exist_ok=True)
    state = os.path.join(base, "state")
    make_state(state, partitions=PARTITIONS)
    log = os.path.join(base, "fxpkcs11.log")
    cfg = os.path.join(base, "fxpkcs11.cfg")
    blocks = []
    for slot, identity in ((0, "crypto1"), (1, "other1")):
        blocks += ["<HSM>", f"  <SLOT> {slot} </SLOT>", f"  <LABEL> Futurex{slot} </LABEL>",
                   f"  <VHSM-STATE> {state} </VHSM-STATE>", f"  <CRYPTO-OPR> {identity} </CRYPTO-OPR>", "</HSM>"]
    with open(cfg, "w") as f:
        f.write("\n".join(blocks + ["<LOG-MODE> INFO </LOG-MODE>", f"<LOG-FILE> {log} </LOG-FILE>"]) + "\n")
    return TwoSlotEnv(base, state, cfg, log)


def compile_hostile(out: str) -> str:
    r = subprocess.run(["cc", "-O1", "-Wall", "-Werror", "-o", out, HOSTILE_SRC, "-ldl", "-lpthread"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"cc failed:\n{r.stdout}{r.stderr}")
    return out


@dataclass
class HostileRun:
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool

    @property
    def mismatches(self) -> list[str]:
        return [ln for ln in self.stdout.splitlines() if ln.startswith("MISMATCH")]

    @property
    def case_lines(self) -> list[str]:
        return [ln for ln in self.stdout.splitlines() if ln.startswith(("ok ", "MISMATCH"))]

    def summary(self) -> dict[str, int]:
        m = re.search(r"^summary: rounds=(\d+)/(\d+) calls=(\d+) checks=(\d+) mismatches=(\d+)$",
                      self.stdout, re.M)
        if not m:
            return {}
        keys = ("rounds_done", "rounds", "calls", "checks", "mismatches")
        return dict(zip(keys, (int(g) for g in m.groups())))

    def ckrs(self) -> Counter:
        m = re.search(r"^summary: ckrs (.*)$", self.stdout, re.M)
        out: Counter = Counter()
        for item in (m.group(1).split() if m else []):
            name, _, n = item.rpartition("=")
            out[name] = int(n)
        return out

    def explain(self, tail: int = 40) -> str:
        lines = self.stdout.splitlines()
        how = "timed out" if self.timed_out else f"exit status {self.returncode}"
        return (f"hostile {how}\n--- mismatches:\n" + "\n".join(self.mismatches) +
                f"\n--- last output lines:\n" + "\n".join(lines[-tail:]) + f"\n--- stderr:\n{self.stderr[-3000:]}")


def run_hostile(binary: str, env: TwoSlotEnv, rounds: int = 1, timeout: float = 120) -> HostileRun:
    """The C program under a timeout, from the root directory, in a plain shell's environment."""
    build_library()
    e = child_env(env.cfg, XDG_STATE_HOME=os.path.join(env.dir, "xdg-state"))
    try:
        r = subprocess.run([binary, LIB, PIN, str(rounds)], env=e, cwd="/", capture_output=True,
                           text=True, timeout=timeout)
        return HostileRun(r.returncode, r.stdout, r.stderr, False)
    except subprocess.TimeoutExpired as t:
        out = t.stdout.decode(errors="replace") if isinstance(t.stdout, bytes) else (t.stdout or "")
        err = t.stderr.decode(errors="replace") if isinstance(t.stderr, bytes) else (t.stderr or "")
        return HostileRun(-1, out, err, True)
