"""Run tests/fuzz/entry_fuzzer.py in a child process and read libFuzzer's account of it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
FUZZER = os.path.join(HERE, "entry_fuzzer.py")
CRASHES = os.path.join(HERE, "crashes")  # inputs that once broke an invariant, replayed every run


@dataclass
class FuzzRun:
    returncode: int
    output: str
    timed_out: bool

    @property
    def executions(self) -> int:
        m = re.findall(r"^Done (\d+) runs", self.output, re.M) or re.findall(r"^#(\d+)\s", self.output, re.M)
        return int(m[-1]) if m else 0

    @property
    def crashed(self) -> bool:
        return self.timed_out or self.returncode != 0 or "ERROR: libFuzzer" in self.output

    @property
    def exception(self) -> str:
        """The Python exception that ended the target: libFuzzer calls that "fuzz target exited"."""
        m = re.search(r"=== Uncaught Python exception: ===\n(?:.*\n)*?(\w[\w.]*(?:Error|Exception|Exit|Interrupt)\b.*)",
                      self.output)
        return m.group(1) if m else ""

    def tail(self, n: int = 60) -> str:
        lines = [ln for ln in self.output.splitlines() if not ln.startswith(("INFO: Instrumenting", "#"))]
        return "\n".join(lines[-n:])


def fuzz(workdir: str, seconds: int, env: dict[str, str] | None = None, extra: list[str] | None = None) -> FuzzRun:
    """Fuzz for `seconds` with a corpus in workdir; crash inputs land in workdir/artifacts."""
    corpus = os.path.join(workdir, "corpus")
    artifacts = os.path.join(workdir, "artifacts")
    os.makedirs(corpus, exist_ok=True)
    os.makedirs(artifacts, exist_ok=True)
    argv = [sys.executable, FUZZER, f"-max_total_time={seconds}", "-timeout=20", "-max_len=1024",
            "-rss_limit_mb=4096", f"-artifact_prefix={artifacts}/", *(extra or []), corpus]
    return _run(argv, workdir, seconds + 120, env)


def replay(paths: list[str], workdir: str, env: dict[str, str] | None = None) -> FuzzRun:
    """Run the fuzzer's target once on each input (no fuzzing)."""
    return _run([sys.executable, FUZZER, "-timeout=20", *paths], workdir, 300, env)


def _run(argv: list[str], cwd: str, timeout: float, env: dict[str, str] | None) -> FuzzRun:
    try:
        r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        return FuzzRun(r.returncode, r.stdout + r.stderr, False)
    except subprocess.TimeoutExpired as t:
        out = (t.stdout or b"") + (t.stderr or b"")
        return FuzzRun(-1, out.decode(errors="replace") if isinstance(out, bytes) else out, True)


def known_crashes() -> list[str]:
    return sorted(os.path.join(CRASHES, f) for f in os.listdir(CRASHES))
