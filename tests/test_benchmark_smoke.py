"""benchmarks/run.sh still runs end to end: a very short run of one op prints the comparison
table with a ratio. A smoke test, not a measurement (the numbers are not checked)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from support import ROOT, build_library

RUN = os.path.join(ROOT, "benchmarks", "run.sh")
P11BENCH = os.environ.get("P11BENCH_DIR") or os.path.join(ROOT, "..", "shared", "tools", "p11bench")
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"


def test_benchmark_prints_a_table_with_ratios():
    missing = [what for what, ok in (("p11bench sources", os.path.isfile(os.path.join(P11BENCH, "p11bench.c"))),
                                     ("SoftHSMv2", os.path.isfile(SOFTHSM)),
                                     ("softhsm2-util", shutil.which("softhsm2-util")),
                                     ("cc", shutil.which("cc")), ("openssl", shutil.which("openssl")))
               if not ok]
    if missing:
        pytest.skip("benchmark prerequisites missing: " + ", ".join(missing))
    build_library()
    p = subprocess.run(["bash", RUN, "--seconds", "0.2", "--ops", "random32", "--objects", "1000"], cwd=ROOT,
                       capture_output=True,
                       text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"run.sh -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    lines = [ln.strip() for ln in p.stdout.splitlines()]
    header = next((ln for ln in lines if ln.startswith("| op |")), None)
    assert header, p.stdout
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert any("SoftHSMv2" in c for c in cols) and any("/" in c for c in cols), header  # a ratio column
    assert any(re.fullmatch(r"\|[-:|]+\|", ln) for ln in lines), p.stdout  # the separator row
    row = next((ln for ln in lines if ln.startswith("| random32 |")), None)
    assert row, p.stdout
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == len(cols), (header, row)
    ratios = [c for c in cells if re.fullmatch(r"\d+(\.\d+)?x", c)]
    assert ratios, row
    assert all(float(r[:-1]) > 0 for r in ratios), row
    rates = [c for c in cells[1:] if re.fullmatch(r"[\d,]+(\.\d+)?", c)]
    assert rates and all(float(r.replace(",", "")) > 0 for r in rates), row
    # the scaling figures ran too: threads, workers, and a partition with many objects
    for figure in ("client threads", "workers", "token objects", "resident memory", "TLS round trip floor"):
        assert any(figure in ln for ln in lines), (figure, p.stdout)
