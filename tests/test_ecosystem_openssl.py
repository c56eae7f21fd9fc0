"""libfxpkcs11.so under OpenSSL's pkcs11 engine (libengine-pkcs11-openssl), driven for real.

examples/openssl/run.sh is the one-command example: key pairs generated in the vHSM with
pkcs11-tool, `openssl req -new -x509` and `openssl req -new` with the key addressed by PKCS #11
URI, `openssl dgst -sign`, `openssl pkeyutl -decrypt` (PKCS #1 v1.5, OAEP SHA-1 and SHA-256),
`openssl s_server` with its key in the vHSM against `openssl s_client`, and a code signature of
a file's hash. The script checks each step itself; these tests run it against a fresh embedded
vHSM and against `vhsm serve`, then check what it produced with `cryptography`.

The helpers here (run_example, served_config) are shared by the other test_ecosystem_* files.
Every consumer is required (CI installs scripts/apt-deps.sh): a missing one fails the test.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from net_support import ServerProcess, free_port
from support import LIB, ROOT, build_library, child_env

EXAMPLES = os.path.join(ROOT, "examples")
SETUP = os.path.join(EXAMPLES, "python", "setup_vhsm.py")
VPY = os.path.join(ROOT, ".venv", "bin", "python")
ENGINE = "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so"


def require(*tools: str, files: tuple[str, ...] = ()) -> None:
    """Fail (not skip) when a consumer is missing: CI installs scripts/apt-deps.sh."""
    missing = [t for t in tools if shutil.which(t) is None] + [f for f in files if not os.path.exists(f)]
    if missing:
        pytest.fail(f"not installed: {', '.join(missing)} (bash scripts/apt-deps.sh installs them)")


def run_example(name: str, work: str, cfg: str | None = None, *, timeout: float = 150,
                **env: str) -> subprocess.CompletedProcess:
    """examples/NAME/run.sh [cfg] from cwd "/" in a plain-shell environment, work files in `work`."""
    build_library()
    e = child_env("unused", FX_WORK=str(work), **env)
    e.pop("FXPKCS11_CFG")
    argv = ["bash", os.path.join(EXAMPLES, name, "run.sh")] + ([cfg] if cfg else [])
    proc = subprocess.run(argv, cwd="/", env=e, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        logs = ""
        for root, _dirs, files in os.walk(str(work)):
            for f in files:
                if f.endswith(".log"):
                    with open(os.path.join(root, f), errors="replace") as fh:
                        logs += f"--- {f}\n{fh.read()[-3000:]}\n"
        raise AssertionError(f"{name}/run.sh {cfg or ''} failed ({proc.returncode}):\nstdout:\n{proc.stdout[-6000:]}\n"
                             f"stderr:\n{proc.stderr[-4000:]}\n{logs}")
    return proc


def served_config(base: str) -> tuple[str, ServerProcess]:
    """The documented network setup: setup_vhsm.py --network, then `vhsm serve` on that state."""
    build_library()
    port = free_port()
    cfg = subprocess.run([VPY, SETUP, "--network", f"127.0.0.1:{port}", base], check=True, capture_output=True,
                         text=True, timeout=60).stdout.strip()
    server = ServerProcess(os.path.join(base, "state"), base, name="serve", port=port)
    server.start()
    return cfg, server


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    cfg, server = served_config(str(tmp_path_factory.mktemp("served")))
    yield cfg, server
    server.stop()


@pytest.fixture(scope="module")
def openssl_run(tmp_path_factory):
    """examples/openssl/run.sh once against a fresh embedded vHSM; its work directory."""
    require("openssl", "pkcs11-tool", files=(ENGINE,))
    work = str(tmp_path_factory.mktemp("openssl"))
    proc = run_example("openssl", work)
    return work, proc.stdout


def load(work: str, name: str) -> bytes:
    with open(os.path.join(work, name), "rb") as f:
        return f.read()


def public_keys(work: str) -> dict[str, object]:
    """The public keys pkcs11-tool --read-object exported (DER), read by cryptography."""
    return {k: serialization.load_der_public_key(load(work, f"{k}.pub.der")) for k in ("rsa", "ec")}


def test_self_signed_certificates(openssl_run):
    work, out = openssl_run
    pubs = public_keys(work)
    assert isinstance(pubs["rsa"], rsa.RSAPublicKey) and pubs["rsa"].key_size == 2048
    assert isinstance(pubs["ec"], ec.EllipticCurvePublicKey) and pubs["ec"].curve.name == "secp256r1"
    for k in ("rsa", "ec"):
        cert = x509.load_pem_x509_certificate(load(work, f"{k}.crt"))
        assert cert.subject == cert.issuer
        assert cert.subject.rfc4514_string() == f"CN={k}.fxpkcs11.example"
        assert cert.public_key() == pubs[k]  # the certificate is for the key in the vHSM
        cert.verify_directly_issued_by(cert)  # and the vHSM key signed it
    assert out.count("holds the vHSM public key") == 2


def test_certificate_signing_requests(openssl_run):
    work, _ = openssl_run
    pubs = public_keys(work)
    for k in ("rsa", "ec"):
        csr = x509.load_pem_x509_csr(load(work, f"{k}.csr"))
        assert csr.is_signature_valid
        assert csr.public_key() == pubs[k]


def test_dgst_sign_verifies_with_the_exported_key(openssl_run):
    work, out = openssl_run
    pubs, data = public_keys(work), load(work, "data.bin")
    pubs["rsa"].verify(load(work, "data.rsa.sig"), data, padding.PKCS1v15(), hashes.SHA256())
    pubs["ec"].verify(load(work, "data.ec.sig"), data, ec.ECDSA(hashes.SHA256()))
    # a changed message does not verify
    with pytest.raises(Exception):
        pubs["rsa"].verify(load(work, "data.rsa.sig"), data + b"x", padding.PKCS1v15(), hashes.SHA256())


def test_pkeyutl_decrypt_pkcs1_and_oaep(openssl_run):
    work, out = openssl_run
    secret = load(work, "secret.txt")
    for name in ("secret.pkcs1.out", "secret.oaep-sha1.out", "secret.oaep-sha256.out"):
        assert load(work, name) == secret, name
    # the ciphertexts really were made with the vHSM key's public half, with the paddings named
    assert len(load(work, "secret.oaep-sha256")) == 256
    assert "OAEP sha256: secret for the vHSM" in out


def test_tls_server_key_in_the_vhsm(openssl_run):
    work, out = openssl_run
    assert "rsa: New, TLSv1.3" in out and "server answered 'asr revo olleh'" in out
    assert "ec: New, TLSv1.2, Cipher is ECDHE-ECDSA" in out and "server answered 'ce revo olleh'" in out
    for k in ("rsa", "ec"):
        client = load(work, f"client.{k}.out").decode(errors="replace")
        assert "Verify return code: 0 (ok)" in client
        # the certificate the server presented is the one made with the vHSM key
        cert = x509.load_pem_x509_certificate(load(work, f"{k}.crt"))
        presented = client.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
        assert x509.load_pem_x509_certificate(
            f"-----BEGIN CERTIFICATE-----{presented}-----END CERTIFICATE-----\n".encode()) == cert


def test_code_signing_of_a_file_hash(openssl_run):
    work, _ = openssl_run
    pubs, artifact = public_keys(work), load(work, "artifact.bin")
    pubs["rsa"].verify(load(work, "artifact.rsa.sig"), artifact, padding.PKCS1v15(), hashes.SHA256())
    pubs["ec"].verify(load(work, "artifact.ec.sig"), artifact, ec.ECDSA(hashes.SHA256()))


def test_openssl_example_against_vhsm_serve(served, tmp_path):
    require("openssl", "pkcs11-tool", files=(ENGINE,))
    cfg, server = served
    out = run_example("openssl", str(tmp_path), cfg).stdout
    assert "ec: New, TLSv1.2" in out and "OAEP sha256" in out
    assert "connected (ProductionLink, client certificate)" in server.log_text()
    # the example removed its keys from the served device again
    assert "ossl-rsa" not in subprocess.run(
        ["pkcs11-tool", "--module", LIB, "--login", "--pin", "safest", "-O"], cwd="/", env=child_env(cfg),
        capture_output=True, text=True, timeout=60).stdout


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_host_openssl_errors_do_not_break_the_network_link(served):
    """The library shares its host's OpenSSL and per-thread error queue. OpenSSL's pkcs11
    engine leaves an error there for each CKR it handles (CKR_ATTRIBUTE_TYPE_INVALID while
    loading an EC key); the next call over `vhsm serve` then failed with CKR_DEVICE_ERROR
    ("connection lost: Attribute type invalid"), so `openssl req -new` with an EC key failed
    now and then. A host error queued before each call must not matter."""
    from integration_fixtures import run_child

    cfg, _server = served
    r = run_child(cfg, """
        import ctypes, ctypes.util
        crypto = ctypes.CDLL(ctypes.util.find_library("crypto"))
        crypto.BIO_new_file.restype = ctypes.c_void_p
        crypto.ERR_peek_error.restype = ctypes.c_ulong
        def host_error():
            assert not crypto.BIO_new_file(b"/nonexistent/file", b"r")   # queues a system error
            assert crypto.ERR_peek_error() != 0
        token = pkcs11.lib(LIB).get_token(token_label="Futurex")
        done = 0
        for _ in range(20):
            host_error()
            with token.open(user_pin=PIN) as s:
                host_error()
                assert len(s.generate_random(256)) == 32
                host_error()
                assert len(list(s.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY}))) >= 0
                done += 1
        out(done=done)
    """)
    assert r["done"] == 20
