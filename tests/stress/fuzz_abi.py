"""Stress part: coverage-guided fuzzing of the entry layer (tests/fuzz/entry_fuzzer.py)."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fuzz"))
from abi_env import make_two_slot_env  # noqa: E402
from common import parse_args, write_result  # noqa: E402
from run import fuzz, known_crashes, replay  # noqa: E402

BUDGET_S = {"ci": 20, "long": 600}
KEEP = os.path.join(os.path.dirname(os.path.dirname(HERE)), "build", "stress", "fuzz_abi")


def main() -> int:
    args = parse_args(__doc__)
    seconds = BUDGET_S[args.budget]
    with tempfile.TemporaryDirectory(prefix="fxp-fuzz-") as d:
        e = make_two_slot_env(os.path.join(d, "env"))
        env = dict(os.environ, FXPKCS11_CFG=e.cfg, XDG_STATE_HOME=os.path.join(d, "xdg-state"))
        fixed = known_crashes()
        again = replay(fixed, d, env)
        r = fuzz(d, seconds, env)
        found = sorted(os.listdir(os.path.join(d, "artifacts")))
        keep(d, again, r)
    passed = not again.crashed and not r.crashed and not found
    rows = [("budget", f"{seconds} s"),
            ("executions (fuzz inputs, up to 12 calls each)", r.executions),
            ("executions per second", round(r.executions / seconds)),
            ("crashes found in this run", len(found) + (1 if r.crashed and not found else 0)),
            ("crashes found earlier and fixed (replayed: all pass)",
             f"{len(fixed)} ({'pass' if not again.crashed else 'FAIL'})")]
    notes = ["Fixed earlier: " + ", ".join(os.path.basename(p) for p in fixed) + " (tests/fuzz/crashes/)."]
    if not passed:
        bad = r if r.crashed else again
        notes.append(f"Python exception: {bad.exception or '(none)'}. libFuzzer output: "
                     + bad.tail(15).replace("\n", " / ") + f" (whole output and inputs kept in {KEEP})")
    write_result(args.out, "fuzz_abi", "Fuzzing the entry layer (atheris)", rows, passed, notes)
    return 0 if passed else 1


def keep(workdir: str, again, run) -> None:
    """Keep the whole output and every crash input: a failure may need the inputs before it."""
    shutil.rmtree(KEEP, ignore_errors=True)
    os.makedirs(KEEP)
    for name, r in (("replay.log", again), ("fuzz.log", run)):
        with open(os.path.join(KEEP, name), "w", encoding="utf-8") as f:
            f.write(r.output)
    for sub in ("artifacts", "corpus"):
        shutil.copytree(os.path.join(workdir, sub), os.path.join(KEEP, sub))


if __name__ == "__main__":
    sys.exit(main())
