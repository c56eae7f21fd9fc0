"""The wire codec's C fast path under AddressSanitizer and UndefinedBehaviorSanitizer, on
random and mutated frames checked against vhsm/wire.py (tests/stress/fuzz_codec.py, for a
short budget; `make stress` runs it for two minutes)."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_the_c_codec_under_the_sanitizers(tmp_path):
    out = tmp_path / "fuzz_codec.json"
    p = subprocess.run([sys.executable, os.path.join(HERE, "stress", "fuzz_codec.py"), "--budget", "ci",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    checked = int(next(line.split(": ")[1] for line in p.stdout.splitlines() if line.startswith("frames checked")))
    assert checked > 10000
