"""Run the security model checks and write each one with its result.

The checks are pytest tests (tests/test_security_model.py, tests/test_tls_policy.py and the
hand-picked hostile frames of tests/test_wire_hostile.py); `--budget long` adds the checks
of the same model that live beside the features they guard (partition isolation and keys on
disk, the wrapping policy, the TLS and malformed-frame tests of the network, the audit
chain). Results come from pytest's JUnit XML report: one row per check.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from common import parse_args, write_result  # noqa: E402

CI = ["tests/test_security_model.py", "tests/test_tls_policy.py",
      "tests/test_wire_hostile.py::test_hostile_frame_is_refused_and_the_connection_goes_on"]
LONG = CI + [
    "tests/test_device_rules.py::test_partition_isolation",
    "tests/test_device_rules.py::test_no_key_value_in_clear_on_disk",
    "tests/test_object_semantics.py::test_sensitive_and_extractable_are_one_way",
    "tests/test_object_semantics.py::test_wrap_then_decrypt_is_blocked",
    "tests/test_object_semantics.py::test_known_wrapping_keys_cannot_wrap_sensitive_keys",
    "tests/test_object_semantics.py::test_trusted_keys_are_set_by_the_security_officer",
    "tests/test_network.py::test_malformed_frames",
    "tests/test_network.py::test_admin_commands_are_refused_on_the_production_port",
    "tests/test_network.py::test_client_without_a_certificate_is_refused",
    "tests/test_network.py::test_server_certificate_is_checked_against_prod_tls_ca",
    "tests/test_network.py::test_tls_1_1_is_refused",
    "tests/test_learn_audit.py",
    "tests/unit/test_passwords.py",
]


def run(selection: list[str], report: str) -> int:
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *selection]
    return subprocess.run(argv, cwd=ROOT, stdin=subprocess.DEVNULL, timeout=1800).returncode


def rows_from(report: str) -> tuple[list[tuple[str, str]], list[str]]:
    rows, notes = [], []
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "FAILED"
                notes.append(f"{name}: {(child.get('message') or '')[:200]}")
            elif child.tag == "skipped":
                outcome = "skipped"
        rows.append((name, f"{outcome} ({float(case.get('time', 0)):.1f} s)"))
    return rows, notes


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    selection = LONG if args.budget == "long" else CI
    with tempfile.TemporaryDirectory(prefix="security-") as tmp:
        report = os.path.join(tmp, "junit.xml")
        code = run(selection, report)
        rows, notes = rows_from(report) if os.path.exists(report) else ([], [f"pytest exited {code}, no report"])
    failed = sum(1 for _, v in rows if v.startswith("FAILED"))
    summary = [("checks run", len(rows)), ("checks failed", failed)]
    passed = code == 0 and failed == 0 and bool(rows)
    write_result(args.out, "security", "Security model checks (pytest), one row per check", summary + rows,
                 passed, notes[:20])
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
