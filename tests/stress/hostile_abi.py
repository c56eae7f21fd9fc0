"""Stress part: tests/c/hostile.c, every hostile row of its table, for several rounds."""
from __future__ import annotations

import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fuzz"))
from abi_env import compile_hostile, make_two_slot_env, run_hostile  # noqa: E402
from common import parse_args, write_result  # noqa: E402

ROUNDS = {"ci": 1, "long": 20}


def main() -> int:
    args = parse_args(__doc__)
    rounds = ROUNDS[args.budget]
    with tempfile.TemporaryDirectory(prefix="fxp-hostile-") as d:
        env = make_two_slot_env(os.path.join(d, "env"))
        binary = compile_hostile(os.path.join(d, "hostile"))
        r = run_hostile(binary, env, rounds=rounds, timeout=120 + 60 * rounds)
    s = r.summary()
    ckrs = r.ckrs()
    passed = not r.timed_out and r.returncode == 0 and s.get("mismatches", 1) == 0
    rows = [("rounds (whole table each)", f"{s.get('rounds_done', 0)}/{rounds}"),
            ("hostile calls made", s.get("calls", 0)),
            ("write-back checks", s.get("checks", 0)),
            ("distinct CKRs seen", len(ckrs)),
            ("CKRs seen (count)", ", ".join(f"{k} {v}" for k, v in ckrs.most_common())),
            ("CKR_OK / CKR_GENERAL_ERROR / CKR_FUNCTION_FAILED", f"{ckrs['OK']} / {ckrs['GENERAL_ERROR']} / "
                                                              f"{ckrs['FUNCTION_FAILED']}"),
            ("mismatches", s.get("mismatches", "n/a")),
            ("crash or hang", "hang" if r.timed_out else (f"signal {-r.returncode}" if r.returncode < 0 else "none"))]
    notes = ["CKR_OK rows are the set-up steps and the calls a row expects to succeed (length queries, retries "
             "after CKR_BUFFER_TOO_SMALL)."]
    if not passed:
        notes += r.mismatches[:20]
    write_result(args.out, "hostile_abi", "Hostile calls at the C ABI (tests/c/hostile.c)", rows, passed, notes)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
