"""Stress part: the wire codec's C fast path built under AddressSanitizer and
UndefinedBehaviorSanitizer, fed random and mutated frames, each checked against
vhsm/wire.py's own codec (tests/wire_differential.py).

The server decodes every frame it reads with this C code first, so a read past a buffer or
undefined behaviour on hostile input must show here: the sanitizers end the run at the
first fault.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import sysconfig
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from common import parse_args, write_result  # noqa: E402

BUDGET_S = {"ci": 15, "long": 120}
SANITIZERS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def build(folder: str) -> str:
    """The extension built with the sanitizers into `folder`; its path."""
    out = os.path.join(folder, "_wirecodec" + sysconfig.get_config_var("EXT_SUFFIX"))
    subprocess.run(["gcc", "-O1", "-g", *SANITIZERS, "-shared", "-fPIC",
                    "-I" + sysconfig.get_paths()["include"], os.path.join(ROOT, "native", "wirecodec.c"),
                    "-o", out], check=True)
    return out


def runtime() -> str:
    """LD_PRELOAD for the sanitizers' runtimes: they must be in the process before Python."""
    libs = [subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True,
                           check=True).stdout.strip() for name in ("libasan.so", "libubsan.so")]
    return ":".join(libs)


def child(module_path: str, seconds: float, seed: int) -> None:
    """Runs in the sanitized process: the checks, until the time is up."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("vhsm._wirecodec", module_path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules["vhsm._wirecodec"] = mod  # vhsm.wire configures and uses this build
    sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
    from vhsm import wire
    from wire_differential import round_of_checks
    assert wire._fast is mod
    rng = random.Random(seed)
    checked, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        checked += round_of_checks(rng, 20)
    print(f"checked {checked}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
        return 0
    args = parse_args(__doc__)
    seconds = BUDGET_S[args.budget]
    seed = int(time.time())
    with tempfile.TemporaryDirectory(prefix="fxp-codec-") as d:
        module = build(d)
        # PYTHONMALLOC=malloc: every allocation through malloc, where ASan sees its bounds
        env = dict(os.environ, LD_PRELOAD=runtime(), PYTHONMALLOC="malloc", ASAN_OPTIONS="detect_leaks=0",
                   UBSAN_OPTIONS="print_stacktrace=1")
        p = subprocess.run([sys.executable, __file__, "--child", module, str(seconds), str(seed)],
                           capture_output=True, text=True, env=env, timeout=seconds + 120)
    out = p.stdout + p.stderr
    checked = next((line.split()[1] for line in p.stdout.splitlines() if line.startswith("checked ")), "0")
    passed = p.returncode == 0 and "ERROR: AddressSanitizer" not in out and "runtime error" not in out
    rows = [("budget", f"{seconds} s"), ("seed", seed), ("frames checked", checked),
            ("sanitizer reports", 0 if passed else "see notes")]
    notes = [] if passed else [out[-3000:]]
    write_result(args.out, "fuzz_codec", "The wire codec's C fast path under ASan and UBSan, "
                 "against vhsm/wire.py", rows, passed, notes)
    if not passed:
        print(out[-3000:], file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
