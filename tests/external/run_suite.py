"""Run python-pkcs11 0.10.1's own test suite against libfxpkcs11.so and compare the outcome
with the list of accepted non-passes in tests/external/README.md.

    python tests/external/run_suite.py [--workdir DIR] [--keep]

The sdist is downloaded from PyPI (pip download) into ~/.cache/fxpkcs11; its tests/ folder is
the suite. A fresh vHSM is set up by tests/external/suite-setup.fxcli. Exit status 0 when
every test passes except those the README lists, each with its reason.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VERSION = "0.10.1"
VENV = os.path.join(ROOT, ".venv", "bin")
LIB = os.path.join(ROOT, "fxpkcs11", "lib", "libfxpkcs11.so")
USER_PIN, SO_PIN = "p11-user-pin", "p11-so-pin"


def sdist() -> str:
    cache = os.path.join(os.path.expanduser("~"), ".cache", "fxpkcs11")
    os.makedirs(cache, exist_ok=True)
    for name in os.listdir(cache):
        if name.startswith(f"python_pkcs11-{VERSION}") and name.endswith(".tar.gz"):
            return os.path.join(cache, name)
    subprocess.run([os.path.join(VENV, "python"), "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
                    ":all:", f"python-pkcs11=={VERSION}", "-d", cache], check=True)
    return sdist()


def extract_tests(archive: str, dest: str) -> str:
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if re.match(r"[^/]+/tests/", m.name)]
        tar.extractall(dest, members=members, filter="data")
    top = os.path.join(dest, os.listdir(dest)[0])
    return top


def setup_device(work: str) -> str:
    state = os.path.join(work, "state")
    subprocess.run([os.path.join(VENV, "vhsm"), "--state", state, "-f", os.path.join(HERE, "suite-setup.fxcli")],
                   check=True, stdout=subprocess.DEVNULL)
    cfg = os.path.join(work, "fxpkcs11.cfg")
    with open(cfg, "w") as f:
        f.write(f"<HSM>\n  <SLOT> 0 </SLOT>\n  <LABEL> Futurex </LABEL>\n  <CRYPTO-OPR> p11test </CRYPTO-OPR>\n"
                f"  <SO-OPR> p11so </SO-OPR>\n  <VHSM-STATE> {state} </VHSM-STATE>\n</HSM>\n"
                f"<LOG-FILE> {work}/fxpkcs11.log </LOG-FILE>\n<LOG-MODE> ERROR </LOG-MODE>\n")
    return cfg


def accepted() -> dict[str, str]:
    """test id -> reason, from the README's table."""
    out = {}
    with open(os.path.join(HERE, "README.md")) as f:
        for line in f:
            m = re.match(r"\|\s*`([^`]+)`\s*\|\s*(skip|fail)\s*\|\s*(.+?)\s*\|\s*$", line)
            if m:
                out[m.group(1)] = m.group(3)
    return out


def outcomes(junit: str) -> dict[str, str]:
    res = {}
    for case in ET.parse(junit).iter("testcase"):
        name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        state = "pass"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                state = "skip" if tag == "skipped" else "fail"
        res[name] = state
    return res


def run_forced(top: str, env: dict, work: str, tests: list[str]) -> list[str]:
    """Run tests the suite gates on SoftHSMv2's file name under that name; return failures."""
    if not tests:
        return []
    alias = os.path.join(work, "libsofthsm2.so")
    if not os.path.exists(alias):
        os.symlink(LIB, alias)
    junit = os.path.join(work, "junit-forced.xml")
    names = " or ".join(t.split("::")[1] for t in tests)
    subprocess.run([os.path.join(VENV, "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", "-k",
                    names, f"--junitxml={junit}", "-o", "junit_family=xunit1"], cwd=top,
                   env={**env, "PKCS11_MODULE": alias})
    got = outcomes(junit)
    bad = [t for t in tests if got.get(t) != "pass"]
    for t in bad:
        print(f"FORCED {got.get(t, 'missing')}: {t}")
    print(f"forced under the SoftHSMv2 file name: {len(tests) - len(bad)} of {len(tests)} passed")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    work = a.workdir or tempfile.mkdtemp(prefix="p11suite-")
    try:
        top = extract_tests(sdist(), os.path.join(work, "src"))
        cfg = setup_device(work)
        junit = os.path.join(work, "junit.xml")
        env = {**os.environ, "FXPKCS11_CFG": cfg, "PKCS11_MODULE": LIB, "PKCS11_TOKEN_LABEL": "Futurex",
               "PKCS11_TOKEN_PIN": USER_PIN, "PKCS11_TOKEN_SO_PIN": SO_PIN}
        subprocess.run([os.path.join(VENV, "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests",
                        f"--junitxml={junit}", "-o", "junit_family=xunit1"], cwd=top, env=env)
        got = outcomes(junit)
        allowed = accepted()
        unexpected = {t: s for t, s in got.items() if s != "pass" and t not in allowed}
        counts = {k: sum(1 for s in got.values() if s == k) for k in ("pass", "fail", "skip")}
        print(f"python-pkcs11 {VERSION} suite: {counts['pass']} passed, {counts['fail']} failed, "
              f"{counts['skip']} skipped; {len(allowed)} accepted non-passes listed in tests/external/README.md")
        for t, s in sorted(unexpected.items()):
            print(f"UNEXPECTED {s}: {t}")
        stale = [t for t in allowed if got.get(t) == "pass"]
        for t in stale:
            print(f"now passes, remove from README: {t}")
        forced_bad = run_forced(top, env, work, [t for t, why in allowed.items() if "passes when forced" in why])
        return 1 if unexpected or forced_bad else 0
    finally:
        if not a.keep and not a.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
