"""libfxpkcs11.so under a real C consumer: OpenSC's pkcs11-tool.

pkcs11-tool runs as a child process with the plain-shell environment of child_env(cfg)
from cwd "/". It is required (CI installs opensc): a missing tool fails these tests.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from fxpkcs11 import mechs
from integration_fixtures import make_env
from support import LIB, PIN, build_library, child_env


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    build_library()
    return make_env(str(tmp_path_factory.mktemp("tool")))


@pytest.fixture(scope="module")
def tool(env):
    exe = shutil.which("pkcs11-tool")
    if exe is None:
        pytest.fail("pkcs11-tool (opensc) is not installed; CI installs it")

    def run(*args: str, check: bool = True, login: bool = False) -> subprocess.CompletedProcess:
        cmd = [exe, "--module", LIB]
        if login:
            cmd += ["--login", "--pin", PIN]
        proc = subprocess.run(cmd + list(args), cwd="/", env=child_env(env.cfg), capture_output=True, text=True,
                              timeout=180)
        if check and proc.returncode != 0:
            raise AssertionError(f"pkcs11-tool {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}\nlog:\n{env.log_text()[-3000:]}")
        return proc
    return run


@pytest.fixture(scope="module")
def rsa_id(tool):
    out = tool("--keypairgen", "--key-type", "rsa:2048", "--label", "tool-rsa", "--id", "01", login=True).stdout
    assert "Public Key Object; RSA 2048 bits" in out, out
    return "01"


@pytest.fixture(scope="module")
def ec_id(tool):
    out = tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "tool-ec", "--id", "02", login=True).stdout
    assert "EC_PARAMS:  06082a8648ce3d030107" in out, out
    return "02"


def read_public(tool, key_id: str, tmp_path) -> object:
    path = str(tmp_path / f"pub-{key_id}.der")
    tool("--read-object", "--type", "pubkey", "--id", key_id, "--output-file", path)
    with open(path, "rb") as f:
        return serialization.load_der_public_key(f.read())


def test_list_slots(tool):
    out = tool("-L").stdout
    assert re.search(r"token label\s*: Futurex\b", out), out
    assert re.search(r"token manufacturer\s*: Futurex", out), out
    assert re.search(r"token model\s*: Vectera Plus", out), out
    flags = re.search(r"token flags\s*: (.*)", out).group(1)
    for flag in ("login required", "rng", "token initialized"):
        assert flag in flags, flags


def test_list_mechanisms(tool):
    out = tool("-M").stdout
    lines = [ln for ln in out.splitlines() if ln.startswith("  ")]
    assert len(lines) == len(mechs.MECHANISM_LIST), out
    for name in ("RSA-PKCS-KEY-PAIR-GEN", "SHA256-RSA-PKCS", "RSA-PKCS-OAEP", "ECDSA-SHA256",
                 "(EC|ECDSA)-KEY-PAIR-GEN", "AES-KEY-GEN", "AES-GCM", "DES3-CBC", "SHA256-HMAC", "SHA512"):
        assert re.search(rf"^\s+{name},", out, re.M), name
    rsa_line = next(ln for ln in lines if ln.strip().startswith("RSA-PKCS,"))
    assert "keySize={1024,8192}" in rsa_line and "sign" in rsa_line and "decrypt" in rsa_line


def test_rsa_sign_verify(tool, rsa_id, tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(1000))
    sig = tmp_path / "sig.rsa"
    tool("--sign", "--mechanism", "SHA256-RSA-PKCS", "--id", rsa_id, "--input-file", str(data),
         "--output-file", str(sig), login=True)
    assert len(sig.read_bytes()) == 256
    out = tool("--verify", "--mechanism", "SHA256-RSA-PKCS", "--id", rsa_id, "--input-file", str(data),
               "--signature-file", str(sig), login=True).stdout
    assert "Signature is valid" in out
    pub = read_public(tool, rsa_id, tmp_path)
    assert isinstance(pub, rsa.RSAPublicKey) and pub.key_size == 2048
    pub.verify(sig.read_bytes(), data.read_bytes(), padding.PKCS1v15(), hashes.SHA256())
    # an altered signature is refused
    bad = tmp_path / "bad.rsa"
    bad.write_bytes(sig.read_bytes()[:-1] + bytes([sig.read_bytes()[-1] ^ 1]))
    proc = tool("--verify", "--mechanism", "SHA256-RSA-PKCS", "--id", rsa_id, "--input-file", str(data),
                "--signature-file", str(bad), login=True, check=False)
    assert "Signature is valid" not in proc.stdout
    assert "Invalid signature" in proc.stdout + proc.stderr


def test_ec_sign_verify(tool, ec_id, tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(b"message for ECDSA")
    sig = tmp_path / "sig.ec"
    tool("--sign", "--mechanism", "ECDSA-SHA256", "--id", ec_id, "--input-file", str(data),
         "--output-file", str(sig), login=True)
    raw = sig.read_bytes()
    assert len(raw) == 64  # r||s
    out = tool("--verify", "--mechanism", "ECDSA-SHA256", "--id", ec_id, "--input-file", str(data),
               "--signature-file", str(sig), login=True).stdout
    assert "Signature is valid" in out
    pub = read_public(tool, ec_id, tmp_path)
    assert isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == "secp256r1"
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    pub.verify(der, data.read_bytes(), ec.ECDSA(hashes.SHA256()))


def test_aes_keygen(tool):
    out = tool("--keygen", "--key-type", "AES:32", "--label", "tool-aes", "--id", "03", login=True).stdout
    assert "Secret Key Object; AES length 32" in out, out
    assert "tool-aes" in out


def test_list_objects(tool, rsa_id, ec_id):
    tool("--keygen", "--key-type", "AES:16", "--label", "tool-aes-list", "--id", "04", "--private", login=True)
    out = tool("-O", login=True).stdout
    assert "Public Key Object; RSA 2048 bits" in out
    assert "Private Key Object; RSA" in out
    assert "Private Key Object; EC" in out
    assert "Secret Key Object; AES length 16" in out
    for label in ("tool-rsa", "tool-ec", "tool-aes-list"):
        assert f"label:      {label}" in out, label
    # without a login the private objects stay hidden
    public = tool("-O").stdout
    assert "Public Key Object; RSA 2048 bits" in public
    assert "Private Key Object" not in public
    assert "tool-aes-list" not in public  # made with --private (CKA_PRIVATE true)


def test_read_public_key_der(tool, rsa_id, ec_id, tmp_path):
    rsa_pub = read_public(tool, rsa_id, tmp_path)
    ec_pub = read_public(tool, ec_id, tmp_path)
    assert rsa_pub.public_numbers().e == 65537
    assert ec_pub.key_size == 256


def test_tool_self_test(tool, rsa_id, ec_id):
    proc = tool("--test", login=True)
    out = proc.stdout + proc.stderr
    assert "No errors" in out, out
    assert "RSA-PKCS: OK" in out and "SHA256: OK" in out


def test_wrong_pin(tool):
    proc = tool("--login", "--pin", "wrong-pin", "-O", check=False)
    assert proc.returncode != 0
    assert "CKR_PIN_INCORRECT" in proc.stdout + proc.stderr
