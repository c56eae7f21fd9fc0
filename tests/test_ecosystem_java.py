"""libfxpkcs11.so under Java's SunPKCS11 provider (OpenJDK 17), driven for real.

examples/java/run.sh generates an RSA and an EC key pair in the vHSM, stores a certificate for
each next to it (same CKA_ID; Java lists a key as a PrivateKeyEntry only then), writes the
provider configuration (`name = Futurex`, `library = ...`, `slot = 0`), runs
`keytool -list -storetype PKCS11 -providerClass sun.security.pkcs11.SunPKCS11 -providerArg CFG`
and compiles examples/java/SignWithVhsm.java with javac into the work directory, which signs
with both keys through SunPKCS11 and verifies outside the HSM.

java, javac and keytool come from openjdk-17-jdk-headless (in scripts/apt-deps.sh): missing
tools fail these tests.
"""
from __future__ import annotations

import re

import pytest

from test_ecosystem_openssl import require, run_example, served_config


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    cfg, server = served_config(str(tmp_path_factory.mktemp("served")))
    yield cfg, server
    server.stop()


def check(out: str, work) -> None:
    assert "Keystore provider: SunPKCS11-Futurex" in out
    rsa_alias = re.search(r"^(java-rsa-[0-9a-f]+), PrivateKeyEntry", out, re.M)
    ec_alias = re.search(r"^(java-ec-[0-9a-f]+), PrivateKeyEntry", out, re.M)
    assert rsa_alias and ec_alias, out
    assert re.search(rf"^{rsa_alias.group(1)}: SunPKCS11-Futurex SHA256withRSA signature \(256 bytes\) verified "
                     rf"with CN={rsa_alias.group(1)}$", out, re.M), out
    assert re.search(rf"^{ec_alias.group(1)}: SunPKCS11-Futurex SHA256withECDSA signature \(\d+ bytes\) verified",
                     out, re.M), out
    assert out.rstrip().endswith("OK")
    assert (work / "classes" / "SignWithVhsm.class").exists()  # compiled by javac in the test's tmp


def test_java_example_embedded(tmp_path):
    require("java", "javac", "keytool", "pkcs11-tool", "openssl")
    check(run_example("java", str(tmp_path)).stdout, tmp_path)


def test_java_example_against_vhsm_serve(served, tmp_path):
    require("java", "javac", "keytool", "pkcs11-tool", "openssl")
    cfg, server = served
    check(run_example("java", str(tmp_path), cfg).stdout, tmp_path)
    assert "connected (ProductionLink, client certificate)" in server.log_text()
